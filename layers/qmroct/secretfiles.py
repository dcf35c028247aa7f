"""Files that hold secrets or identifiers: created readable by their owner only.

What qmroct keeps this way (also listed in docs/ARCHITECTURE.md, "Secrets"):

- ``$QMROCT_HOME/gateway/`` (0700): ``pseudonyms.sqlite3`` (maps pseudonyms back to patients),
  its ``.key`` (the site secret), ``state.sqlite3`` and ``spool/`` (DICOM received, not yet
  de-identified);
- ``$QMROCT_HOME/secrets.json`` and ``stack.json`` (the embedded store's signing secret);
- the local store's ``.qmroct/buckets/*.json`` (notification targets carry the OpenWhisk key);
- ``notify-<id>.env`` from ``qmroct notify`` (the webhook's auth token).

Every one is created with its final mode (no window in which it is readable by others), and an
existing one found looser is tightened when it is opened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """Make ``path`` (and its parents) exist; ``path`` itself is 0700."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(folder, DIR_MODE)
    return folder


def private_file(path: str | Path) -> Path:
    """Make ``path`` exist as an owner-only file (0600) without touching its content."""
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.close(fd)
    except FileExistsError:
        _tighten(target, FILE_MODE)
    return target


def write_private(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` atomically with ``data``, owner-only from its first byte."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
    return target


def _tighten(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) & ~mode:
        os.chmod(path, mode)

"""What an action container may see of this machine: bubblewrap around the proxy process.

A real OpenWhisk action runs in a container that sees its image and its own files, never the
controller's credentials. Embedded, the proxy runs on the host, so it is started under
bubblewrap (Debian's ``bubblewrap``, ``bwrap``): the root file system read-only, ``/tmp`` and
every hidden folder (the stack's home: ``whisk.json``, ``stack.json``, ``secrets.json``, the
ledger, the store) replaced by empty tmpfs, and only the container's own folder bound back
writable. Files an action is given by a bound parameter (the SQLite ledger of the
orchestration actions, ``sqlite:///...``) are bound back too, as production binds them the
PostgreSQL credentials. The network stays shared: actions fetch scans by presigned URL.

``QMROCT_SANDBOX``: ``auto`` (default: bubblewrap when it works here), ``bwrap`` (required) or
``none``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from qmroct.errors import ConfigError

SQLITE_PREFIX = "sqlite:///"


@functools.cache
def _working_bwrap() -> str | None:
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/tmp", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if probe.returncode == 0 else None


def sandbox_command(mode: str | None = None) -> str | None:
    """The bwrap binary to run containers under, or None to run them bare."""
    mode = (mode or os.environ.get("QMROCT_SANDBOX") or "auto").lower()
    if mode == "none":
        return None
    found = _working_bwrap()
    if mode == "bwrap" and found is None:
        raise ConfigError(
            "QMROCT_SANDBOX=bwrap: bubblewrap is missing or cannot create namespaces here "
            "(Debian: apt-get install bubblewrap)"
        )
    if mode not in ("auto", "bwrap"):
        raise ConfigError(f"QMROCT_SANDBOX={mode!r}: expected auto, bwrap or none")
    return found


def granted_files(bound: dict[str, object]) -> list[Path]:
    """Files a bound parameter hands the action: a SQLite database with its WAL and
    shared-memory files (they exist while the runtime keeps the database open)."""
    out: list[Path] = []
    for value in bound.values():
        if isinstance(value, str) and value.startswith(SQLITE_PREFIX):
            db = Path(value.removeprefix(SQLITE_PREFIX))
            out += [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")]
    return out


def wrap(
    bwrap: str,
    argv: list[str],
    workdir: Path,
    hidden: list[Path],
    granted: list[Path],
    needed: list[Path] = (),  # type: ignore[assignment]
) -> list[str]:
    """``argv`` under bubblewrap: the host read-only, ``hidden`` and /tmp empty (the
    ``needed`` folders, the interpreter and the proxy, stay visible even under /tmp),
    ``workdir`` and the ``granted`` files (those that exist) writable."""
    cmd = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--ro-bind", "/proc", "/proc"]
    cmd += ["--tmpfs", "/tmp"]
    for folder in needed:
        if Path(folder).is_relative_to("/tmp"):
            cmd += ["--ro-bind", str(folder), str(folder)]
    for folder in hidden:
        cmd += ["--tmpfs", str(folder)]
    cmd += ["--bind", str(workdir), str(workdir)]
    for f in granted:
        cmd += ["--bind-try", str(f), str(f)]
    cmd += ["--chdir", str(workdir), "--"]
    return cmd + argv

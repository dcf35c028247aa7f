"""Watch a clinic folder and upload each file once it is complete.

A file is complete when its size and modification time were the same at two polls at least
``settle_s`` apart and no other process holds a lock on it. Names that writers use while a file
is still coming (``*.part``, ``*.tmp``, ``*.crdownload``, ``*.partial``, ``~`` and dot files)
wait until they are renamed. Each (path, size, mtime) is handled once; a failed upload is tried
again at a later poll. The files themselves are only read.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qmroct.gateway.models import UploadOutcome
from qmroct.gateway.state import GatewayState
from qmroct.gateway.upload import Uploader

PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".filepart", ".download", "~")


def is_locked(path: Path) -> bool:
    """True when another process holds a flock or POSIX lock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            return True
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        except OSError:
            return True
        return False
    finally:
        os.close(fd)


class InboxWatcher:
    def __init__(
        self,
        root: str | Path,
        uploader: Uploader,
        state: GatewayState,
        *,
        settle_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.uploader = uploader
        self.state = state
        self.settle_s = settle_s
        self._clock = clock
        self._seen: dict[Path, tuple[int, int, float]] = {}  # path -> size, mtime, since

    def _candidates(self) -> list[Path]:
        return sorted(
            p
            for p in self.root.rglob("*")
            if p.is_file()
            and not p.name.startswith(".")
            and not p.name.lower().endswith(PARTIAL_SUFFIXES)
        )

    def poll(self) -> list[UploadOutcome]:
        """One pass over the folder: upload every file that is complete and not yet handled."""
        now = self._clock()
        outcomes: list[UploadOutcome] = []
        present = set()
        for path in self._candidates():
            present.add(path)
            try:
                st = path.stat()
            except OSError:
                continue  # vanished between listing and stat
            if self.state.inbox_seen(str(path), st.st_size, st.st_mtime_ns):
                continue
            size, mtime, since = self._seen.get(path, (-1, -1, now))
            if (size, mtime) != (st.st_size, st.st_mtime_ns):
                self._seen[path] = (st.st_size, st.st_mtime_ns, now)
                continue  # new or still growing: wait for it to settle
            if now - since < self.settle_s or is_locked(path):
                continue
            outcome = self.uploader.upload_file(path)
            outcomes.append(outcome)
            if outcome.status != "failed":
                self.state.inbox_record(
                    str(path), st.st_size, st.st_mtime_ns, outcome.status, outcome.reason
                )
                self._seen.pop(path, None)
        for gone in set(self._seen) - present:
            self._seen.pop(gone, None)
        return outcomes

    def run(
        self,
        stop: threading.Event,
        *,
        interval_s: float = 1.0,
        on_outcome: Callable[[UploadOutcome], None] | None = None,
    ) -> None:
        while not stop.is_set():
            for outcome in self.poll():
                if on_outcome is not None:
                    on_outcome(outcome)
            stop.wait(interval_s)

"""The gateway's own small SQLite state, beside the pseudonym table on the gateway machine:
what was uploaded (by content hash), which multipart uploads are open (for resume after a
dropped connection), and which inbox files were already handled.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from qmroct.secretfiles import private_dir, private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT NOT NULL, sha256 TEXT NOT NULL, key TEXT NOT NULL, uploaded_at TEXT NOT NULL,
    PRIMARY KEY (bucket, sha256)
);
CREATE TABLE IF NOT EXISTS multipart (
    bucket TEXT NOT NULL, key TEXT NOT NULL, sha256 TEXT NOT NULL, upload_id TEXT NOT NULL,
    part_size INTEGER NOT NULL, started_at TEXT NOT NULL,
    PRIMARY KEY (bucket, key, sha256)
);
CREATE TABLE IF NOT EXISTS inbox (
    path TEXT NOT NULL PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT, handled_at TEXT NOT NULL
);
"""


def _path_hash(path: str) -> str:
    return "sha256:" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


class GatewayState:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        private_file(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def _one(self, sql: str, args: tuple) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _run(self, sql: str, args: tuple) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # uploads
    def uploaded_key(self, bucket: str, sha256: str) -> str | None:
        row = self._one("SELECT key FROM uploads WHERE bucket = ? AND sha256 = ?", (bucket, sha256))
        return row[0] if row else None

    def record_upload(self, bucket: str, sha256: str, key: str) -> None:
        self._run(
            "INSERT OR REPLACE INTO uploads (bucket, sha256, key, uploaded_at) VALUES (?, ?, ?, ?)",
            (bucket, sha256, key, _now()),
        )

    def forget_upload(self, bucket: str, sha256: str) -> None:
        self._run("DELETE FROM uploads WHERE bucket = ? AND sha256 = ?", (bucket, sha256))

    # multipart
    def open_multipart(self, bucket: str, key: str, sha256: str) -> tuple[str, int] | None:
        row = self._one(
            "SELECT upload_id, part_size FROM multipart WHERE bucket = ? AND key = ? AND sha256 = ?",
            (bucket, key, sha256),
        )
        return (row[0], int(row[1])) if row else None

    def remember_multipart(
        self, bucket: str, key: str, sha256: str, upload_id: str, part_size: int
    ) -> None:
        self._run(
            "INSERT OR REPLACE INTO multipart VALUES (?, ?, ?, ?, ?, ?)",
            (bucket, key, sha256, upload_id, part_size, _now()),
        )

    def close_multipart(self, bucket: str, key: str, sha256: str) -> None:
        self._run(
            "DELETE FROM multipart WHERE bucket = ? AND key = ? AND sha256 = ?",
            (bucket, key, sha256),
        )

    # inbox: a clinic's file names often carry a patient's name or id, so only their hash is kept
    def inbox_seen(self, path: str, size: int, mtime_ns: int) -> bool:
        row = self._one(
            "SELECT 1 FROM inbox WHERE path = ? AND size = ? AND mtime_ns = ? AND status != 'failed'",
            (_path_hash(path), size, mtime_ns),
        )
        return row is not None

    def inbox_record(
        self, path: str, size: int, mtime_ns: int, status: str, reason: str | None
    ) -> None:
        self._run(
            "INSERT OR REPLACE INTO inbox VALUES (?, ?, ?, ?, ?, ?)",
            (_path_hash(path), size, mtime_ns, status, reason, _now()),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

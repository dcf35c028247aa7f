"""Pseudonyms: original identifier -> stable pseudonym, kept in a local SQLite file.

The table never leaves the gateway machine. A pseudonym is a keyed HMAC-SHA256 of the original
(with a per-site secret kept beside the table, mode 0600), so the same patient always gets the
same pseudonym, also after the table is lost, while nobody without the secret can recompute it.
The table remembers which original each pseudonym came from, for re-identification by the site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from qmroct.errors import ConfigError
from qmroct.secretfiles import private_dir, private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pseudonyms (
    kind TEXT NOT NULL,
    original TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, original)
);
CREATE UNIQUE INDEX IF NOT EXISTS pseudonyms_by_value ON pseudonyms (kind, pseudonym);
"""

# Prefixes make a pseudonym's kind visible in keys and in XNAT labels.
PREFIX = {"patient": "sub", "study": "ses", "series": "ser", "scan": "scn", "uid": "uid"}


class PseudonymStore:
    """SQLite-backed pseudonym table for one site. Safe to share between threads."""

    def __init__(self, path: str | Path, *, secret: bytes | None = None) -> None:
        self.path = Path(path)
        # The table maps pseudonyms back to patients: owner-only, in an owner-only folder.
        private_dir(self.path.parent)
        private_file(self.path)
        self._secret = secret if secret is not None else _load_or_create_secret(self.key_path)
        if len(self._secret) < 16:
            raise ConfigError(f"{self.key_path}: site secret is shorter than 16 bytes")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    @property
    def key_path(self) -> Path:
        return self.path.with_name(self.path.name + ".key")

    def digest(self, kind: str, original: str) -> bytes:
        """The keyed HMAC of one original identifier (raw bytes)."""
        msg = f"{kind}\x00{original.strip()}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def pseudonym(self, kind: str, original: str, *, length: int = 12) -> str:
        """The pseudonym of ``original`` (same input, same output), recorded in the table."""
        token = base64.b32encode(self.digest(kind, original)).decode().lower()[:length]
        value = f"{PREFIX.get(kind, kind[:3])}-{token}"
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO pseudonyms (kind, original, pseudonym, created_at)"
                " VALUES (?, ?, ?, ?)",
                (kind, original.strip(), value, datetime.now(UTC).isoformat()),
            )
        return value

    def uid(self, original: str) -> str:
        """A replacement UID under the UUID-derived root 2.25 (PS3.5 B.2), the same per original."""
        number = int.from_bytes(self.digest("uid", original)[:16], "big")
        return f"2.25.{number}"

    def original(self, kind: str, pseudonym: str) -> str | None:
        """Re-identification, for the site only: the original behind a pseudonym, if recorded."""
        with self._lock:
            row = self._db.execute(
                "SELECT original FROM pseudonyms WHERE kind = ? AND pseudonym = ?",
                (kind, pseudonym),
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _load_or_create_secret(path: Path) -> bytes:
    if path.exists():
        private_file(path)  # tightened if an older install left it looser
        return bytes.fromhex(path.read_text().strip())
    secret = secrets.token_bytes(32)
    # Create with 0600 from the start: the secret must never be readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    return secret

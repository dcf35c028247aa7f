"""The XNAT alias token in use per XNAT server (table ``xnat_tokens``).

Only orchestration actions reach the ledger; measure actions never see it.
"""

from __future__ import annotations

from pydantic import BaseModel
from qmroct.storage.db import Database


class StoredToken(BaseModel):
    xnat_url: str
    alias: str
    secret: str
    issued_at: float
    expires_at: float | None = None


class XnatTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, xnat_url: str) -> StoredToken | None:
        row = self.db.query_one(
            "SELECT * FROM xnat_tokens WHERE xnat_url = :u", {"u": xnat_url.rstrip("/")}
        )
        return StoredToken.model_validate(row) if row else None

    def put(self, token: StoredToken) -> None:
        params = token.model_dump() | {"xnat_url": token.xnat_url.rstrip("/")}
        with self.db.transaction():
            self.db.execute("DELETE FROM xnat_tokens WHERE xnat_url = :xnat_url", params)
            self.db.execute(
                "INSERT INTO xnat_tokens (xnat_url, alias, secret, issued_at, expires_at)"
                " VALUES (:xnat_url, :alias, :secret, :issued_at, :expires_at)",
                params,
            )

"""Users, roles, passwords, the login rate limit and CSRF tokens of the web view.

Roles carry the object store's policy names (``infra/minio/policies/``): a ``researcher`` sees
the projects listed on their account, a ``measure-developer`` sees test data only (the projects
named by ``QMROCT_TEST_PROJECTS``), an ``admin`` sees everything. Passwords are hashed with
Argon2id (argon2-cffi, the password-hashing competition's winner, RFC 9106 parameters).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field
from qmroct.errors import QmroctError
from qmroct.storage.db import Database

Role = Literal["researcher", "measure-developer", "admin"]
ROLES: tuple[Role, ...] = ("researcher", "measure-developer", "admin")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
# Verifying against this when the user does not exist costs the same time as a real check, so
# response times do not tell which usernames exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(QmroctError):
    """A user could not be created or changed (the message names the user and the reason)."""


class User(BaseModel):
    username: str
    role: Role
    projects: list[str] = Field(default_factory=list)

    def scope(self, test_projects: list[str]) -> list[str] | None:
        """The projects this user may see; None means all of them."""
        if self.role == "admin":
            return None
        if self.role == "measure-developer":
            return list(test_projects)
        return list(self.projects)

    def may_see(self, project: str, test_projects: list[str]) -> bool:
        allowed = self.scope(test_projects)
        return allowed is None or project in allowed


class Users:
    """The ``web_users`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self, username: str, password: str, role: str, projects: list[str] | None = None
    ) -> User:
        if not _USERNAME.match(username):
            raise UserError(f"user {username[:64]!r}: use letters, digits, '_', '.', '@', '-'")
        if role not in ROLES:
            raise UserError(f"user {username!r}: role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"user {username!r}: the password needs {MIN_PASSWORD} characters")
        user = User(username=username, role=role, projects=sorted(set(projects or [])))  # type: ignore[arg-type]
        self.db.execute(
            "INSERT INTO web_users (username, password_hash, role, projects, created_at)"
            " VALUES (:u, :h, :r, :p, :t) ON CONFLICT (username) DO UPDATE SET"
            " password_hash = excluded.password_hash, role = excluded.role,"
            " projects = excluded.projects, disabled = 0",
            {
                "u": username,
                "h": _hasher.hash(password),
                "r": role,
                "p": json.dumps(user.projects),
                "t": time.time(),
            },
        )
        return user

    def disable(self, username: str) -> bool:
        return (
            self.db.execute(
                "UPDATE web_users SET disabled = 1 WHERE username = :u", {"u": username}
            )
            > 0
        )

    def get(self, username: str) -> User | None:
        row = self.db.query_one(
            "SELECT * FROM web_users WHERE username = :u AND disabled = 0", {"u": username}
        )
        if row is None:
            return None
        return User(
            username=row["username"], role=row["role"], projects=json.loads(row["projects"])
        )

    def list(self) -> list[User]:
        rows = self.db.query("SELECT * FROM web_users WHERE disabled = 0 ORDER BY username")
        return [
            User(username=r["username"], role=r["role"], projects=json.loads(r["projects"]))
            for r in rows
        ]

    def verify(self, username: str, password: str) -> User | None:
        """The user when the password is right; None otherwise (same cost either way)."""
        row = self.db.query_one(
            "SELECT * FROM web_users WHERE username = :u AND disabled = 0", {"u": username}
        )
        stored = row["password_hash"] if row else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _hasher.check_needs_rehash(stored):
            self.db.execute(
                "UPDATE web_users SET password_hash = :h WHERE username = :u",
                {"h": _hasher.hash(password), "u": username},
            )
        return User(
            username=row["username"], role=row["role"], projects=json.loads(row["projects"])
        )


class RateLimiter:
    """Failed logins per key in a sliding window (OWASP's authentication cheat sheet: throttle
    by account and by source). In memory: one web process serves one deployment."""

    def __init__(self, limit: int = 5, window_s: float = 300.0, *, per_address: int = 4) -> None:
        self.limit = limit
        # One address may serve several people (a clinic's NAT): it gets a larger allowance.
        self.address_limit = limit * per_address
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> float:
        """Seconds until a login may be tried again (0 when it may now)."""
        now = time.monotonic()
        with self._lock:
            wait = 0.0
            for k in keys:
                q = self._recent(k, now)
                limit = self.address_limit if k.startswith("addr:") else self.limit
                if len(q) >= limit:
                    wait = max(wait, q[0] + self.window_s - now)
            return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))

"""One small connection layer over SQLite and PostgreSQL, chosen by URL.

``sqlite:///path/to/ledger.sqlite3`` (or ``sqlite:///:memory:``) and ``postgresql://...`` give
the same interface: ``query``/``execute`` with ``:name`` placeholders, and ``transaction()``,
which takes the database's write lock up front so read-then-write sequences are serialised
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction plus ``lock(name)``, an advisory lock).

Migrations live in ``storage/migrations`` as ``NNN_name.sql``; where the dialects must differ a
file ``NNN_name.sqlite.sql`` or ``NNN_name.postgres.sql`` replaces the common one. Applied
versions are recorded in ``schema_version``.

Every time in the database is a float of epoch seconds (UTC): comparisons and arithmetic are then
the same SQL in both dialects.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from qmroct.errors import ConfigError, QmroctError

Dialect = Literal["sqlite", "postgres"]
Params = Mapping[str, Any] | None
Row = dict[str, Any]

_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_MIGRATION = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")


class DatabaseError(QmroctError):
    """A ledger database could not be opened, migrated or queried (``url`` is redacted)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact(url)
        self.reason = reason
        super().__init__(f"{self.url}: {reason}")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def dialect_of(url: str) -> Dialect:
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres"
    raise ConfigError(f"ledger URL {redact(url)!r}: expected sqlite:///path or postgresql://...")


def _split_statements(script: str) -> list[str]:
    # Migrations keep one statement per ';'-terminated block; no procedural bodies.
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    """The migrations for one dialect, in order; a dialect variant replaces the common file."""
    chosen: dict[int, tuple[str, str, bool]] = {}
    folder = resources.files("qmroct.storage") / "migrations"
    for entry in folder.iterdir():
        m = _MIGRATION.match(entry.name)
        if not m:
            continue
        version, name, variant = int(m.group(1)), m.group(2), m.group(3)
        if variant and variant != dialect:
            continue
        specific = variant is not None
        if version in chosen and chosen[version][2] and not specific:
            continue
        chosen[version] = (name, entry.read_text(encoding="utf-8"), specific)
    return [Migration(v, n, sql) for v, (n, sql, _) in sorted(chosen.items())]


class Database:
    """A connection to the ledger database. Safe to share between threads (one lock)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url
        self.dialect: Dialect = dialect_of(url)
        self._lock = threading.RLock()
        self._in_tx = False
        try:
            if self.dialect == "sqlite":
                self._conn: Any = self._open_sqlite(url, timeout_s)
            else:
                self._conn = self._open_postgres(url, timeout_s)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(url, f"cannot open: {exc}") from exc
        except Exception as exc:  # psycopg.Error without importing psycopg for SQLite users
            if type(exc).__module__.startswith("psycopg"):
                raise DatabaseError(url, f"cannot connect: {exc}") from exc
            raise

    @staticmethod
    def _open_sqlite(url: str, timeout_s: float) -> sqlite3.Connection:
        path = url[len("sqlite:///") :]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so a transaction is exactly a block.
        conn = sqlite3.connect(
            path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL skips the fsync of each commit (the WAL is synced at each
            # checkpoint): "WAL mode is always consistent with synchronous=NORMAL", though a
            # power loss may roll back the last commits (sqlite.org/pragma.html#pragma_synchronous).
            # The ledger already survives that: a lost completion re-drives the job, a lost
            # enqueue is found by the scheduler's resync sweep. The fsync was ~9 ms of every
            # claim; without it a claim takes well under one.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        return conn

    @staticmethod
    def _open_postgres(url: str, timeout_s: float) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        return psycopg.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=int(timeout_s)
        )

    def _sql(self, sql: str) -> str:
        if self.dialect == "postgres":
            return _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))
        return sql

    def _run(self, sql: str, params: Params) -> Any:
        try:
            return self._conn.execute(self._sql(sql), dict(params or {}))
        except sqlite3.Error as exc:
            raise DatabaseError(self.url, f"{exc} in: {sql.strip()[:200]}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise DatabaseError(self.url, f"{exc} in: {sql.strip()[:200]}") from exc
            raise

    def query(self, sql: str, params: Params = None) -> list[Row]:
        with self._lock:
            cur = self._run(sql, params)
            return [dict(r) for r in cur.fetchall()]

    def query_one(self, sql: str, params: Params = None) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; return the number of rows it changed."""
        with self._lock:
            return self._run(sql, params).rowcount

    def execute_many(self, sql: str, rows: list[Mapping[str, Any]]) -> None:
        """One statement for many parameter sets (bulk writes of derived tables)."""
        if not rows:
            return
        with self._lock:
            try:
                if self.dialect == "sqlite":
                    self._conn.executemany(self._sql(sql), [dict(r) for r in rows])
                else:
                    with self._conn.cursor() as cur:
                        cur.executemany(self._sql(sql), [dict(r) for r in rows])
            except sqlite3.Error as exc:
                raise DatabaseError(self.url, f"{exc} in: {sql.strip()[:200]}") from exc
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg"):
                    raise DatabaseError(self.url, f"{exc} in: {sql.strip()[:200]}") from exc
                raise

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """PostgreSQL ``COPY table (columns) FROM STDIN``: the bulk load path, far faster than
        one INSERT per row. ``table`` and ``columns`` are identifiers from code, never input."""
        if self.dialect != "postgres":
            raise DatabaseError(self.url, "COPY is PostgreSQL's; SQLite inserts row by row")
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self._lock:
            try:
                with self._conn.cursor() as cur, cur.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg"):
                    raise DatabaseError(self.url, f"{exc} in: {sql[:200]}") from exc
                raise

    def analyze(self, *tables: str) -> None:
        """Refresh the planner's statistics after a bulk load (a claim planned on the stats of
        an empty queue can scan the whole table)."""
        for table in tables:
            self.execute(f"ANALYZE {table}")

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction. Nested calls join the outer one."""
        with self._lock:
            if self._in_tx:
                yield self
                return
            self._in_tx = True
            try:
                if self.dialect == "sqlite":
                    yield from self._sqlite_tx()
                else:
                    with self._conn.transaction():
                        yield self
            finally:
                self._in_tx = False

    def _sqlite_tx(self) -> Iterator[Database]:
        # IMMEDIATE takes the write lock now, so no other writer can slip in between our reads
        # and writes; the busy timeout makes the others wait rather than fail.
        self._run("BEGIN IMMEDIATE", None)
        try:
            yield self
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._run("COMMIT", None)

    def query_locked(self, name: str, sql: str, params: Params = None) -> list[Row]:
        """Run the statement ``sql`` holding the lock ``name`` (see :meth:`lock`); return its rows.

        PostgreSQL: the advisory lock and the statement travel in one simple-query message,
        so the pair costs one round trip, and the server runs them as one implicit
        transaction (or inside the caller's): the lock is held until the statement's writes
        commit (postgresql.org/docs/15/protocol-flow.html, "Multiple Statements in a Simple
        Query"). Being a statement of its own, the lock is granted before the statement takes
        its snapshot, so under READ COMMITTED the statement sees everything the previous
        holder committed (docs/15/transaction-iso.html#XACT-READ-COMMITTED); taken inside the
        statement itself, it would come after the snapshot. Parameters are bound client-side
        (psycopg's ClientCursor quotes them), as a simple query carries no parameters.
        SQLite: a ``BEGIN IMMEDIATE`` transaction around the statement.
        """
        if self.dialect == "sqlite":
            with self.transaction():
                return self.query(sql, params)
        from psycopg import ClientCursor

        text = f"SELECT pg_advisory_xact_lock({_lock_key(name)}); {self._sql(sql)}"
        with self._lock:
            try:
                with ClientCursor(self._conn) as cur:
                    cur.execute(text, dict(params or {}))
                    cur.nextset()
                    return [dict(r) for r in cur.fetchall()]
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg"):
                    raise DatabaseError(self.url, f"{exc} in: {sql.strip()[:200]}") from exc
                raise

    def lock(self, name: str) -> None:
        """Serialise on ``name`` until the current transaction ends.

        PostgreSQL: a transaction-scoped advisory lock. SQLite: the transaction already holds the
        database's single write lock, so there is nothing more to take.
        """
        if not self._in_tx:
            raise DatabaseError(self.url, f"lock({name!r}) outside a transaction")
        if self.dialect == "postgres":
            self._run("SELECT pg_advisory_xact_lock(:k)", {"k": _lock_key(name)})

    def for_update(self, *, skip_locked: bool = False) -> str:
        """The row-locking suffix for a SELECT in this dialect (empty for SQLite)."""
        if self.dialect == "sqlite":
            return ""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"

    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; return the versions applied now."""
        applied_now: list[int] = []
        with self.transaction():
            self.lock("qmroct.migrate")
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            done = {r["version"] for r in self.query("SELECT version FROM schema_version")}
            for mig in migrations(self.dialect):
                if mig.version in done:
                    continue
                for stmt in _split_statements(mig.sql):
                    self.execute(stmt)
                self.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)",
                    {"v": mig.version, "n": mig.name, "t": time.time()},
                )
                applied_now.append(mig.version)
        return applied_now

    def schema_version(self) -> int:
        row = self.query_one("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"]) if row and row["v"] is not None else 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _lock_key(name: str) -> int:
    """The advisory lock key of a lock name."""
    return zlib.crc32(name.encode())


def connect(url: str, *, migrate: bool = True) -> Database:
    """Open the database at ``url`` and bring its schema up to date."""
    db = Database(url)
    if migrate:
        db.migrate()
    return db

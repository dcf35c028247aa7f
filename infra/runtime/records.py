"""Activation records, shaped as OpenWhisk's, and their store under the runtime's home folder.

Each record is one JSON file, ``activations/<start ms>-<activationId>-<name>.json``, written
atomically, so another process (``qmroct activations``) reads them without the runtime; an
SQLite index beside them (``index.sqlite3``) answers lists and counts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, INTERNAL_ERROR = 0, 1, 2, 3
STATUS_TEXT = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application error",
    DEVELOPER_ERROR: "action developer error",
    INTERNAL_ERROR: "whisk internal error",
}


def new_activation_id() -> str:
    return uuid.uuid4().hex


class KeyValue(BaseModel):
    key: str
    value: Any = None


class ActivationResponse(BaseModel):
    """``statusCode``: 0 success, 1 application error, 2 developer error, 3 internal error."""

    status: str
    statusCode: int
    success: bool
    result: Any = None

    @classmethod
    def of(cls, code: int, result: Any) -> ActivationResponse:
        return cls(status=STATUS_TEXT[code], statusCode=code, success=code == 0, result=result)

    @classmethod
    def error(cls, code: int, message: str) -> ActivationResponse:
        return cls.of(code, {"error": message})


class ActivationRecord(BaseModel):
    activationId: str
    name: str
    namespace: str
    subject: str = ""
    version: str
    publish: bool = False
    start: int
    end: int
    duration: int
    cause: str | None = None
    response: ActivationResponse
    logs: list[str] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)

    def annotation(self, key: str, default: Any = None) -> Any:
        for a in self.annotations:
            if a.key == key:
                return a.value
        return default

    def summary(self) -> dict[str, Any]:
        """The list entry without ``docs``: the ``activations`` view of
        whisks_design_document_for_activations_db_filters_v2.1.1.json (no response, no logs,
        the status code at the top)."""
        data = self.model_dump(exclude={"logs", "response", "subject"}, exclude_none=True)
        data["statusCode"] = self.response.statusCode
        return data


def filter_name(record: ActivationRecord) -> str:
    """The name the activations list filters on: ``pkg/name`` for a packaged action, else
    ``name`` (the ``pathFilter`` of ansible/files/
    whisks_design_document_for_activations_db_filters_v2.1.1.json)."""
    path = record.annotation("path")
    if isinstance(path, str):
        parts = path.split("/")
        if len(parts) == 3:
            return f"{parts[1]}/{record.name}"
    return record.name


#: Records kept by default; older ones are pruned (OpenWhisk's activation store expires them).
DEFAULT_RETENTION = 50_000
_PRUNE_EVERY = 500


class ActivationIndex:
    """An SQLite index of the record files: id, start, filter name, file. Listing and counting
    read the index, not the folder, so they stay fast with many records."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "index.sqlite3"
        fresh = not self.path.exists()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        self._closed = False
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # The index can be rebuilt from the record files: no fsync per activation.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS activation (id TEXT PRIMARY KEY, start INTEGER NOT"
                " NULL, filter TEXT NOT NULL, file TEXT NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS activation_by_start ON activation (start)")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS activation_by_filter ON activation (filter, start)"
            )
        if fresh:
            self.rebuild(folder)

    def rebuild(self, folder: Path) -> None:
        """Index record files written before the index existed."""
        for f in folder.glob("*.json"):
            try:
                self.add(ActivationRecord.model_validate_json(f.read_text(encoding="utf-8")), f)
            except (OSError, ValueError):
                continue

    def add(self, record: ActivationRecord, file: Path) -> None:
        if self._closed:  # an activation ending while the runtime stops: the file stays
            return
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO activation VALUES (?, ?, ?, ?)",
                (record.activationId, record.start, filter_name(record), file.name),
            )

    def file(self, activation_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT file FROM activation WHERE id = ?", (activation_id,)
            ).fetchone()
        return row[0] if row else None

    def _where(
        self, name: str | None, since: int | None, upto: int | None
    ) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if name is not None:
            clauses.append("filter = ?")
            args.append(name)
        if since is not None:
            clauses.append("start >= ?")
            args.append(since)
        if upto is not None:
            clauses.append("start <= ?")
            args.append(upto)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def files(
        self, name: str | None, since: int | None, upto: int | None, limit: int, skip: int
    ) -> list[str]:
        where, args = self._where(name, since, upto)
        sql = f"SELECT file FROM activation{where} ORDER BY start DESC LIMIT ? OFFSET ?"
        with self._lock:
            return [r[0] for r in self._db.execute(sql, [*args, limit, skip])]

    def count(self, name: str | None, since: int | None, upto: int | None, skip: int) -> int:
        where, args = self._where(name, since, upto)
        with self._lock:
            (n,) = self._db.execute(f"SELECT count(*) FROM activation{where}", args).fetchone()
        return max(n - skip, 0)

    def prune(self, keep: int) -> list[str]:
        """Drop all but the newest ``keep`` entries; the files of the dropped ones."""
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT start FROM activation ORDER BY start DESC LIMIT 1 OFFSET ?", (keep,)
            ).fetchone()
            if row is None:
                return []
            files = [
                r[0] for r in self._db.execute("SELECT file FROM activation WHERE start <= ?", row)
            ]
            self._db.execute("DELETE FROM activation WHERE start <= ?", row)
        return files

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()


class ActivationStore:
    """Activation records as JSON files under ``home/activations``, with an index.

    ``retention`` records are kept (QMROCT_ACTIVATION_RETENTION); every few hundred writes
    the oldest beyond that are deleted.
    """

    def __init__(self, home: Path, retention: int | None = None) -> None:
        self.folder = Path(home) / "activations"
        self.folder.mkdir(parents=True, exist_ok=True)
        env = os.environ.get("QMROCT_ACTIVATION_RETENTION", "")
        self.retention = retention or (int(env) if env.isdigit() else DEFAULT_RETENTION)
        self.index = ActivationIndex(self.folder)
        self._writes = 0

    def put(self, record: ActivationRecord) -> None:
        target = self.folder / f"{record.start:013d}-{record.activationId}-{record.name}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(record.model_dump_json(exclude_none=True), encoding="utf-8")
        os.replace(tmp, target)
        self.index.add(record, target)
        self._writes += 1
        if self._writes % _PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> int:
        """Delete the records beyond the retention; how many went."""
        files = self.index.prune(self.retention)
        for name in files:
            (self.folder / name).unlink(missing_ok=True)
        return len(files)

    def _read(self, name: str) -> ActivationRecord | None:
        try:
            return ActivationRecord.model_validate_json(
                (self.folder / name).read_text(encoding="utf-8")
            )
        except FileNotFoundError:
            return None

    def get(self, activation_id: str) -> ActivationRecord | None:
        if not activation_id.isalnum():
            return None
        name = self.index.file(activation_id)
        return self._read(name) if name else None

    def list(
        self,
        name: str | None = None,
        since: int | None = None,
        limit: int | None = 30,
        skip: int = 0,
        upto: int | None = None,
    ) -> list[ActivationRecord]:
        """Newest first; ``name`` is ``action`` or ``pkg/action`` as the real filter takes it."""
        files = self.index.files(name, since, upto, -1 if limit is None else limit, skip)
        return [r for r in (self._read(f) for f in files) if r is not None]

    def count(
        self,
        name: str | None = None,
        since: int | None = None,
        skip: int = 0,
        upto: int | None = None,
    ) -> int:
        return self.index.count(name, since, upto, skip)

    def close(self) -> None:
        self.index.close()


def read_activations(
    home: Path, name: str | None = None, limit: int | None = 30
) -> list[dict[str, Any]]:
    """Activation records under a runtime home, newest first, as JSON objects (another
    process may read them while the runtime runs). An absent folder gives no records."""
    if not (Path(home) / "activations").is_dir():
        return []
    store = ActivationStore(home)
    try:
        records = store.list(name=name, limit=limit)
    finally:
        store.close()
    return [r.model_dump(exclude_none=True) for r in records]


def bench_records(count: int, folder: Path, *, names: int = 20) -> dict[str, float]:
    """Write ``count`` small records under ``folder`` and time what the API does with them:
    the newest 30, a name-filtered page of 30 halfway down, a count, one record by id (ms)."""
    import time

    store = ActivationStore(folder, retention=count)
    t0 = time.perf_counter()
    ids = []
    base = 1_700_000_000_000
    for i in range(count):
        rid = new_activation_id()
        ids.append(rid)
        store.put(
            ActivationRecord(
                activationId=rid,
                name=f"measure-{i % names}",
                namespace="guest",
                version="0.0.1",
                start=base + i,
                end=base + i + 5,
                duration=5,
                response=ActivationResponse.of(SUCCESS, {"i": i}),
                annotations=[KeyValue(key="path", value=f"guest/qmroct/measure-{i % names}")],
            )
        )
    figures = {"write_per_record_ms": (time.perf_counter() - t0) * 1000 / max(count, 1)}
    timed = {
        "list_newest_30_ms": lambda: store.list(limit=30),
        "list_by_name_page_mid_ms": lambda: store.list(
            name="qmroct/measure-3", skip=count // names // 2
        ),
        "count_by_name_ms": lambda: store.count(name="qmroct/measure-3"),
        "get_by_id_ms": lambda: store.get(ids[count // 2]),
    }
    for key, call in timed.items():
        t0 = time.perf_counter()
        call()
        figures[key] = (time.perf_counter() - t0) * 1000
    store.close()
    return figures

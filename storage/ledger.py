"""The job ledger: the single truth of what has to run, what runs, and what came of it.

OpenWhisk is at-most-once and MinIO events are at-least-once, so nothing downstream is trusted to
remember. Every job has a deterministic key, so a repeated event enqueues nothing new. A claimed
job holds a lease with an expiry and a token; only the holder of the current token can complete,
fail or release it, and an expired lease is re-driven by the scheduler.

States: ``queued`` -> ``leased`` -> ``done``; a failure goes to ``failed`` (retried after an
exponential backoff) and, once out of attempts, to ``dead`` with its last error. A measure job
that dies (a failed run, an expired lease out of attempts, a product that cannot be derived)
always leaves a failed result row saying why. A cancelled job (its version was retired or
superseded before it ran) is ``dead`` with ``last_error`` starting ``cancelled: ``; it failed
nothing, so it leaves no row, and a backfill of its version revives it.

Which value is current: the one from the measure's active version (the highest published one,
see :meth:`Catalog.active_version`); a value of any other version is stored archived. When the
active version changes back (a retirement), :meth:`promote` makes its latest value current
again, so no scan is left without one.

Priority rule (no starvation): a job's effective priority is
``priority - (now - enqueued_at) / aging_s``, lowest first. Uploads enqueue at
``PRIORITY_UPLOAD`` (0) and backfills at ``PRIORITY_BACKFILL`` (100), so with the default
``aging_s`` of 6 s an upload overtakes backfill work enqueued up to 600 s before it, and never
more: a backfill job is served before any upload that arrived more than 600 s after it.

The ledger stores ``claim_rank = enqueued_at + priority * aging_s`` with each job: it orders
jobs exactly as the effective priority does (``now / aging_s`` is common to all), and an index
over the queued jobs serves the claim without sorting the queue (migrations 004 and 022).

The cap: ``claim(cap)`` counts leased jobs and claims at most ``cap - leased`` more inside one
transaction serialised on a lock (PostgreSQL: an advisory lock, rows taken with
``FOR UPDATE SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``), so concurrent schedulers never exceed
it. An expired lease still counts as in flight until ``reclaim_expired`` re-drives it, because
its activation may still be running: keep ``lease_s`` above the action's timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from qmroct.errors import QmroctError
from qmroct.results import MeasureActionResult, ResultStatus, StoredResult
from qmroct.storage.catalog import Catalog, result_from_row
from qmroct.storage.db import Database, Row, connect
from qmroct.storage.records import (
    Claim,
    DerivedProduct,
    Job,
    JobKind,
    JobState,
    LedgerCounts,
    check_hash,
    check_name,
    epoch,
    from_epoch,
    version_key,
)

PRIORITY_UPLOAD = 0
PRIORITY_BACKFILL = 100
#: The ``last_error`` prefix of a cancelled job (see :meth:`Ledger.cancel`).
CANCELLED = "cancelled: "
CAPPED_KINDS: tuple[JobKind, ...] = (JobKind.MEASURE, JobKind.DERIVE)
#: From this many jobs on, PostgreSQL enqueues with COPY (below it, a few INSERTs are cheaper).
BULK_MIN_JOBS = 200


class LedgerError(QmroctError):
    """A ledger operation was refused. ``job_key`` names the job, ``reason`` says why."""

    def __init__(self, job_key: str, reason: str) -> None:
        self.job_key = job_key
        self.reason = reason
        super().__init__(f"job {job_key}: {reason}")


class UnknownJob(LedgerError):
    """No job has this key."""


class StaleLease(LedgerError):
    """The lease token is not the job's current one (expired and re-driven, or never issued)."""


def job_key(kind: JobKind | str, scan_hash: str, measure: str, version: str) -> str:
    """The deterministic key of a job: the same inputs always give the same key.

    ``measure`` is the product name for derive jobs; xnat jobs push one measure's result.
    """
    kind = JobKind(kind)
    check_hash(scan_hash)
    check_name(measure, "measure")
    check_name(version, "version")
    return f"{kind.value}/{measure}/{version}/{scan_hash}"


class Policy(BaseModel):
    """Lease, retry and priority settings of a ledger."""

    lease_s: float = Field(300.0, gt=0, description="lease length; above the action timeout")
    max_attempts: int = Field(3, ge=1)
    backoff_base_s: float = Field(30.0, ge=0, description="first retry delay; doubles each time")
    backoff_max_s: float = Field(3600.0, ge=0)
    aging_s: float = Field(6.0, gt=0, description="seconds of waiting worth one priority level")

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, attempts - 1))


class JobSpec(BaseModel):
    """What to enqueue."""

    kind: JobKind
    scan_hash: str
    measure: str
    version: str
    action: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = PRIORITY_UPLOAD
    needs: list[str] = Field(default_factory=list)
    max_attempts: int | None = None

    @property
    def key(self) -> str:
        return job_key(self.kind, self.scan_hash, self.measure, self.version)


def _job(row: Row, needs: list[str] | None = None) -> Job:
    return Job(
        job_key=row["job_key"],
        kind=JobKind(row["kind"]),
        scan_hash=row["scan_hash"],
        measure=row["measure"],
        version=row["version"],
        action=row["action"],
        params=json.loads(row["params"]),
        priority=row["priority"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        lease_token=row["lease_token"],
        leased_at=row["leased_at"],
        lease_expires=row["lease_expires"],
        activation_id=row["activation_id"],
        not_before=row["not_before"],
        last_error=row["last_error"],
        enqueued_at=row["enqueued_at"],
        needs=needs or [],
    )


def _in(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``IN (:p0, :p1, ...)`` and its parameters: both drivers take only scalar parameters."""
    names = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{n}" for n in names) + ")", names


def claim_sql(kinds_clause: str, dialect: str) -> str:
    """The claim, one statement: lease the first runnable jobs of ``kinds_clause``
    (``IN (...)``) in claim order, at most ``:most`` and no more than ``:cap`` minus the jobs
    of those kinds already leased, and return them (in no particular order).

    Runnable: queued, past ``not_before`` (``:now``), and every product it needs exists.
    The claim-order index (``jobs_queued_order``, migration 022) holds the queued jobs in
    exactly this order, so they are read from its head without a sort. ``kind || ''`` keeps
    PostgreSQL's planner off the (state, kind) index, which would make it sort the whole queue.
    SQLite's planner has no statistics unless someone runs ANALYZE, and without them it takes
    that index and sorts (``USE TEMP B-TREE FOR ORDER BY``, 30 ms a claim at 50k queued):
    ``INDEXED BY`` names the index, and makes the statement fail loudly rather than scan
    should the index ever be missing (sqlite.org/lang_indexedby.html).

    The inner ``LIMIT :most`` is a constant, so the planner plans for a few rows from the
    index head; the cap's room (``:cap`` minus the leased count) is applied outside it, and
    PostgreSQL's LockRows locks a row only when the outer LIMIT pulls it. A row another
    claimer holds is skipped (``FOR UPDATE SKIP LOCKED``); the UPDATE finds the chosen rows
    by primary key: ``= ANY(ARRAY(...))`` evaluates the subselect once, where ``IN`` could be
    planned as a join over the whole table. The caller must hold the claim lock, taken before
    this statement's snapshot (see :meth:`Database.query_locked`), or two claimers could both
    count the same free slots. A lease token is 32 random hex digits, drawn per row.
    """
    busy = f"SELECT COUNT(*) FROM jobs WHERE state = 'leased' AND kind IN {kinds_clause}"
    # Each claimed job's needs come back with it: the scheduler needs them to hand the
    # products' URLs to the activation, and reading them again costs two queries a job.
    # Product names cannot hold a comma (check_name).
    needs = (
        "(SELECT group_concat(product, ',') FROM (SELECT n.product FROM job_needs n"
        " WHERE n.job_key = jobs.job_key ORDER BY n.product))"
        if dialect == "sqlite"
        else "(SELECT string_agg(n.product, ',' ORDER BY n.product) FROM job_needs n"
        " WHERE n.job_key = jobs.job_key)"
    )
    if dialect == "sqlite":
        token, room = "lower(hex(randomblob(16)))", f"MAX(0, :cap - ({busy}))"
        indexed, lock, keys = " INDEXED BY jobs_queued_order", "", "IN ({})"
    else:
        token, room = "replace(gen_random_uuid()::text, '-', '')", f"GREATEST(0, :cap - ({busy}))"
        indexed, lock, keys = "", " FOR UPDATE SKIP LOCKED", "= ANY(ARRAY({}))"
    chosen = (
        f"SELECT j.job_key FROM jobs j{indexed} WHERE j.state = 'queued' AND j.not_before <= :now"
        f" AND j.kind || '' IN {kinds_clause}"
        " AND NOT EXISTS (SELECT 1 FROM job_needs n WHERE n.job_key = j.job_key"
        "   AND NOT EXISTS (SELECT 1 FROM derived d"
        "     WHERE d.name = n.product AND d.scan_hash = j.scan_hash))"
        f" ORDER BY j.claim_rank, j.enqueued_at, j.job_key LIMIT :most{lock}"
    )
    return (
        f"UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_token = {token},"
        " leased_at = :now, lease_expires = :exp, activation_id = NULL, updated_at = :now"
        " WHERE job_key "
        + keys.format(f"SELECT q.job_key FROM ({chosen}) q LIMIT {room}")
        + f" RETURNING *, {needs} AS needs_list"
    )


class Ledger:
    """Jobs, leases and results over one database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        db: Database,
        *,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.policy = policy or Policy()
        self.clock = clock
        self.catalog = Catalog(db)

    @classmethod
    def open(
        cls, url: str, *, policy: Policy | None = None, clock: Callable[[], float] | None = None
    ) -> Ledger:
        """Open the ledger at ``url`` (sqlite:///... or postgresql://...), migrating it."""
        return cls(connect(url), policy=policy, clock=clock or time.time)

    def close(self) -> None:
        self.db.close()

    # ---- enqueue ----
    def enqueue(
        self,
        kind: JobKind | str,
        scan_hash: str,
        measure: str,
        version: str,
        *,
        action: str = "",
        params: dict[str, Any] | None = None,
        priority: int = PRIORITY_UPLOAD,
        needs: Iterable[str] = (),
        max_attempts: int | None = None,
        rearm: bool = False,
    ) -> bool:
        """Add a job; a no-op returning False when its key exists.

        ``rearm`` puts a finished (done or dead) job back in the queue with fresh attempts, for
        work that must run again under the same key (an XNAT push after a re-run).
        """
        spec = JobSpec(
            kind=JobKind(kind),
            scan_hash=scan_hash,
            measure=measure,
            version=version,
            action=action,
            params=params or {},
            priority=priority,
            needs=list(needs),
            max_attempts=max_attempts,
        )
        with self.db.transaction():
            added = self._insert(spec) > 0
            if not added and rearm:
                now = self.clock()
                self.db.execute(
                    "UPDATE jobs SET state = 'queued', attempts = 0, lease_token = NULL,"
                    " lease_expires = NULL, activation_id = NULL, not_before = :now,"
                    " last_error = NULL, enqueued_at = :now, updated_at = :now,"
                    " claim_rank = :now + priority * :aging"
                    " WHERE job_key = :k AND state IN ('done', 'dead')",
                    {"k": spec.key, "now": now, "aging": self.policy.aging_s},
                )
            return added

    def enqueue_many(self, specs: Iterable[JobSpec], *, revive_cancelled: bool = False) -> int:
        """Add many jobs in one transaction; return how many were new.

        ``revive_cancelled`` also queues again (with fresh attempts) the jobs of these keys that
        were cancelled, and counts them: a version active again must cover every scan.

        On PostgreSQL a large batch (a backfill) goes in with COPY, and the planner's
        statistics are refreshed after it, so the next claim is planned on the real queue.
        """
        specs = list(specs)
        if self.db.dialect == "postgres" and len(specs) >= BULK_MIN_JOBS:
            with self.db.transaction():
                added = self._copy_insert(specs, revive_cancelled=revive_cancelled)
            self.db.analyze("jobs", "job_needs")
            return added
        with self.db.transaction():
            n = 0
            for spec in specs:
                added = self._insert(spec)
                if not added and revive_cancelled:
                    now = self.clock()
                    added = self.db.execute(
                        "UPDATE jobs SET state = 'queued', attempts = 0, lease_token = NULL,"
                        " lease_expires = NULL, activation_id = NULL, not_before = :now,"
                        " last_error = NULL, priority = :prio, enqueued_at = :now,"
                        " claim_rank = :now + :prio * :aging,"
                        " updated_at = :now WHERE job_key = :k AND state = 'dead'"
                        " AND last_error LIKE :cancelled",
                        {"k": spec.key, "now": now, "prio": spec.priority,
                         "aging": self.policy.aging_s, "cancelled": CANCELLED + "%"},
                    )  # fmt: skip
                n += added
            return n

    def _copy_insert(self, specs: list[JobSpec], *, revive_cancelled: bool = False) -> int:
        """COPY the batch into temporary tables, then move the new jobs (and their needs) over
        in one statement; a key already in the ledger is skipped, as ``_insert`` skips it."""
        now = self.clock()
        cols = (
            "job_key, kind, scan_hash, measure, version, action, params, priority, state,"
            " attempts, max_attempts, not_before, enqueued_at, updated_at, claim_rank"
        )
        self.db.execute(
            "CREATE TEMPORARY TABLE jobs_in ON COMMIT DROP AS SELECT " + cols + " FROM jobs"
            " WITH NO DATA"
        )
        self.db.execute(
            "CREATE TEMPORARY TABLE needs_in (job_key TEXT NOT NULL, product TEXT NOT NULL)"
            " ON COMMIT DROP"
        )
        seen: set[str] = set()
        rows, needs = [], []
        params_json: dict[int, str] = {}  # a backfill's jobs share one params dict
        for spec in specs:
            key = spec.key
            if key in seen:
                continue
            seen.add(key)
            for product in sorted(set(spec.needs)):
                check_name(product, "product")
                needs.append((key, product))
            pj = params_json.get(id(spec.params))
            if pj is None:
                pj = params_json[id(spec.params)] = json.dumps(spec.params, sort_keys=True)
            rows.append(
                (
                    key,
                    spec.kind.value,
                    spec.scan_hash,
                    spec.measure,
                    spec.version,
                    spec.action,
                    pj,
                    spec.priority,
                    "queued",
                    0,
                    spec.max_attempts or self.policy.max_attempts,
                    now,
                    now,
                    now,
                    now + spec.priority * self.policy.aging_s,
                )
            )
        self.db.copy_rows("jobs_in", [c.strip() for c in cols.split(",")], rows)
        self.db.copy_rows("needs_in", ["job_key", "product"], needs)
        row = self.db.query_one(
            "WITH added AS (INSERT INTO jobs (" + cols + ") SELECT " + cols + " FROM jobs_in"
            "   ON CONFLICT (job_key) DO NOTHING RETURNING job_key),"
            " linked AS (INSERT INTO job_needs (job_key, product)"
            "   SELECT n.job_key, n.product FROM needs_in n JOIN added a ON a.job_key = n.job_key"
            "   RETURNING 1)"
            " SELECT (SELECT COUNT(*) FROM added) AS n"
        )
        added = int(row["n"]) if row else 0
        if revive_cancelled:
            # The same revival as the row-by-row path, for the whole batch in one statement.
            added += self.db.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, lease_token = NULL,"
                " lease_expires = NULL, activation_id = NULL, not_before = :now,"
                " last_error = NULL, priority = i.priority, enqueued_at = :now,"
                " claim_rank = i.claim_rank, updated_at = :now FROM jobs_in i"
                " WHERE jobs.job_key = i.job_key AND jobs.state = 'dead'"
                " AND jobs.last_error LIKE :cancelled",
                {"now": now, "cancelled": CANCELLED + "%"},
            )
        # Dropped now, not at commit: a publication enqueues several batches in one transaction.
        self.db.execute("DROP TABLE jobs_in, needs_in")
        return added

    def _insert(self, spec: JobSpec) -> int:
        now = self.clock()
        for product in spec.needs:
            check_name(product, "product")
        n = self.db.execute(
            "INSERT INTO jobs (job_key, kind, scan_hash, measure, version, action, params,"
            " priority, state, attempts, max_attempts, not_before, enqueued_at, updated_at,"
            " claim_rank)"
            " VALUES (:k, :kind, :h, :m, :v, :a, :p, :prio, 'queued', 0, :max, :now, :now, :now,"
            " :rank)"
            " ON CONFLICT (job_key) DO NOTHING",
            {
                "k": spec.key,
                "kind": spec.kind.value,
                "h": spec.scan_hash,
                "m": spec.measure,
                "v": spec.version,
                "a": spec.action,
                "p": json.dumps(spec.params, sort_keys=True),
                "prio": spec.priority,
                "max": spec.max_attempts or self.policy.max_attempts,
                "now": now,
                "rank": now + spec.priority * self.policy.aging_s,
            },
        )
        if n > 0:
            for product in sorted(set(spec.needs)):
                self.db.execute(
                    "INSERT INTO job_needs (job_key, product) VALUES (:k, :p)",
                    {"k": spec.key, "p": product},
                )
        return n

    # ---- reading ----
    def job(self, key: str) -> Job | None:
        row = self.db.query_one("SELECT * FROM jobs WHERE job_key = :k", {"k": key})
        if row is None:
            return None
        needs = [
            r["product"]
            for r in self.db.query(
                "SELECT product FROM job_needs WHERE job_key = :k ORDER BY product", {"k": key}
            )
        ]
        return _job(row, needs)

    def jobs(
        self,
        *,
        state: JobState | None = None,
        kind: JobKind | None = None,
        scan_hash: str | None = None,
        limit: int = 1000,
    ) -> list[Job]:
        sql, params = "SELECT * FROM jobs WHERE 1 = 1", {"n": limit}
        if state is not None:
            sql += " AND state = :s"
            params["s"] = JobState(state).value  # "dead" from a command line works too
        if kind is not None:
            sql += " AND kind = :kind"
            params["kind"] = JobKind(kind).value
        if scan_hash is not None:
            sql += " AND scan_hash = :h"
            params["h"] = scan_hash
        sql += " ORDER BY enqueued_at, job_key LIMIT :n"
        return [_job(r) for r in self.db.query(sql, params)]

    def in_flight(self, kinds: Sequence[JobKind] = CAPPED_KINDS) -> int:
        clause, params = _in("kind", [k.value for k in kinds])
        row = self.db.query_one(
            f"SELECT COUNT(*) AS n FROM jobs WHERE state = 'leased' AND kind IN {clause}", params
        )
        return int(row["n"]) if row else 0

    def counts(self) -> LedgerCounts:
        """Jobs by kind and state (queued, leased = in flight, failed, dead, done)."""
        out: dict[str, dict[str, int]] = {k.value: {s.value: 0 for s in JobState} for k in JobKind}
        for r in self.db.query("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state"):
            out[r["kind"]][r["state"]] = int(r["n"])
        return LedgerCounts(by_kind=out)

    def results(
        self, scan_hash: str, measure: str | None = None, *, history: bool = False
    ) -> list[StoredResult]:
        return self.catalog.results(scan_hash, measure, history=history)

    # ---- claiming ----
    def claim(
        self,
        cap: int,
        *,
        kinds: Sequence[JobKind] = CAPPED_KINDS,
        limit: int | None = None,
        lease_s: float | None = None,
    ) -> list[Claim]:
        """Lease up to ``cap - in_flight`` runnable jobs of ``kinds`` (and at most ``limit``).

        Runnable: queued, past its ``not_before``, and every product it needs exists. The count
        and the claim happen under one lock, so concurrent claimers never exceed ``cap``.
        """
        if cap < 0:
            raise ValueError(f"cap must be >= 0, got {cap}")
        most = cap if limit is None else min(cap, limit)
        if most <= 0:
            return []
        clause, kparams = _in("kind", [JobKind(k).value for k in kinds])
        now = self.clock()
        expires = now + (lease_s if lease_s is not None else self.policy.lease_s)
        rows = self.db.query_locked(
            "qmroct.ledger.claim",
            claim_sql(clause, self.db.dialect),
            {**kparams, "now": now, "exp": expires, "cap": cap, "most": most},
        )
        rows.sort(key=lambda r: (r["claim_rank"], r["enqueued_at"], r["job_key"]))
        return [
            Claim(
                job=_job(r, r["needs_list"].split(",") if r["needs_list"] else []),
                lease_token=r["lease_token"],
                lease_expires=r["lease_expires"],
            )
            for r in rows
        ]

    def _leased(self, key: str, token: str, row: Row | None = None) -> Row:
        """The job row, locked, if ``token`` is its current lease; else StaleLease.

        ``row``: the row already read and locked in this transaction (saves reading it again).
        """
        if row is None:
            row = self.db.query_one(
                "SELECT * FROM jobs WHERE job_key = :k" + self.db.for_update(), {"k": key}
            )
        if row is None:
            raise UnknownJob(key, "no such job")
        if row["lease_token"] != token:
            raise StaleLease(key, f"lease token is not current (job is {row['state']})")
        if row["state"] != JobState.LEASED.value:
            raise StaleLease(key, f"job is {row['state']}, not leased")
        return row

    def set_activation(self, key: str, token: str, activation_id: str) -> None:
        """Remember which activation runs a leased job, to reconcile with activation records."""
        # One statement, the lease checked in its WHERE: it runs for every job started, and
        # changes no indexed column, so PostgreSQL can update the row in place (HOT, no new
        # index entries: postgresql.org/docs/15/storage-hot.html).
        changed = self.db.execute(
            "UPDATE jobs SET activation_id = :a, updated_at = :now"
            " WHERE job_key = :k AND lease_token = :t AND state = 'leased'",
            {"a": activation_id, "now": self.clock(), "k": key, "t": token},
        )
        if not changed:
            self._leased(key, token)  # raises UnknownJob or StaleLease, saying why
            raise StaleLease(key, "the lease changed while the activation was set")

    def release(self, key: str, token: str, *, delay_s: float = 0.0, reason: str = "") -> None:
        """Put a leased job back without counting the attempt (back-pressure, e.g. a 429)."""
        with self.db.transaction():
            self._leased(key, token)
            now = self.clock()
            self.db.execute(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_token = NULL,"
                " lease_expires = NULL, activation_id = NULL, not_before = :nb,"
                " last_error = COALESCE(:why, last_error), updated_at = :now WHERE job_key = :k",
                {"nb": now + delay_s, "why": reason or None, "now": now, "k": key},
            )

    # ---- outcomes ----
    def fail(
        self,
        key: str,
        token: str,
        error: str,
        *,
        retry: bool = True,
        result: MeasureActionResult | None = None,
    ) -> JobState:
        """Record a failed attempt: ``failed`` with backoff while attempts remain, else ``dead``.

        When the job dies and ``result`` is given, the failure is stored as its result row, so
        the scan shows the measure as failed with its reason.
        """
        with self.db.transaction():
            row = self._leased(key, token)
            now = self.clock()
            if retry and row["attempts"] < row["max_attempts"]:
                self.db.execute(
                    "UPDATE jobs SET state = 'failed', lease_expires = NULL, not_before = :nb,"
                    " last_error = :e, updated_at = :now WHERE job_key = :k",
                    {
                        "nb": now + self.policy.backoff(row["attempts"]),
                        "e": error,
                        "now": now,
                        "k": key,
                    },
                )
                return JobState.FAILED
            self.db.execute(
                "UPDATE jobs SET state = 'dead', lease_expires = NULL, last_error = :e,"
                " updated_at = :now WHERE job_key = :k",
                {"e": error, "now": now, "k": key},
            )
            if result is not None:
                self._check_result(row, result)
                self._store_result(result, token, None, now)
            else:
                self._store_failure(row, error, now, token)
            return JobState.DEAD

    def complete(
        self,
        key: str,
        token: str,
        result: MeasureActionResult | None = None,
        *,
        activation_id: str | None = None,
    ) -> StoredResult | None:
        """Finish a leased job, storing its result (for measure jobs) under the archive rule.

        The archive rule: the scan's current value for the measure is archived (superseded by
        this version, or by a re-run of the same version), unless it comes from a newer version;
        then this result is stored already archived and the newer value stays current.

        Repeating a completion with the same token is a no-op that returns the stored result.
        """
        with self.db.transaction():
            row = self.db.query_one(
                "SELECT * FROM jobs WHERE job_key = :k" + self.db.for_update(), {"k": key}
            )
            if row and row["state"] == JobState.DONE.value and row["lease_token"] == token:
                prior = self.db.query_one(
                    "SELECT * FROM results WHERE job_key = :k AND lease_token = :t",
                    {"k": key, "t": token},
                )
                return result_from_row(prior) if prior else None
            row = self._leased(key, token, row)
            now = self.clock()
            stored = None
            if result is not None:
                self._check_result(row, result)
                stored = self._store_result(result, token, activation_id, now)
            self.db.execute(
                "UPDATE jobs SET state = 'done', lease_expires = NULL, last_error = NULL,"
                " activation_id = COALESCE(:a, activation_id), updated_at = :now"
                " WHERE job_key = :k",
                {"a": activation_id, "now": now, "k": key},
            )
            return stored

    def complete_derived(
        self, key: str, token: str, *, bucket: str, object_key: str
    ) -> DerivedProduct:
        """Finish a derive job: record its product, which makes waiting jobs claimable."""
        with self.db.transaction():
            row = self._leased(key, token)
            if row["kind"] != JobKind.DERIVE.value:
                raise LedgerError(key, f"complete_derived on a {row['kind']} job")
            now = self.clock()
            product = DerivedProduct(
                name=row["measure"],
                scan_hash=row["scan_hash"],
                bucket=bucket,
                key=object_key,
                created_at=from_epoch(now),
                job_key=key,
            )
            self.catalog.add_derived(product)
            self.db.execute(
                "UPDATE jobs SET state = 'done', lease_expires = NULL, last_error = NULL,"
                " updated_at = :now WHERE job_key = :k",
                {"now": now, "k": key},
            )
            return self.catalog.derived(product.name, product.scan_hash) or product

    @staticmethod
    def _check_result(row: Row, result: MeasureActionResult) -> None:
        expected = (row["job_key"], row["scan_hash"], row["measure"], row["version"])
        got = (result.job_key, result.scan_hash, result.measure, result.version)
        if got != expected:
            raise LedgerError(row["job_key"], f"result is for {got}, not this job {expected}")

    def _store_result(
        self, result: MeasureActionResult, token: str, activation_id: str | None, now: float
    ) -> StoredResult:
        # Serialise writers of one (scan, measure): the current row is read, then replaced.
        # The lock and the read go in one message (one round trip on PostgreSQL).
        current = self.db.query_locked(
            f"qmroct.result/{result.scan_hash}/{result.measure}",
            "SELECT id, version FROM results WHERE scan_hash = :h AND measure = :m"
            " AND is_current = 1" + self.db.for_update(),
            {"h": result.scan_hash, "m": result.measure},
        )
        cur = current[0] if current else None
        active = self.catalog.active_version(result.measure)
        inactive = active is not None and active.version != result.version
        newer_current = cur is not None and version_key(cur["version"]) > version_key(
            result.version
        )
        if inactive:
            # A late result of a retired or superseded version: kept, never current.
            newer_current = True
        elif active is not None:
            # The active version's value is current, whatever version the current one has
            # (a higher one that was retired meanwhile, say).
            newer_current = False
        if cur is not None and not newer_current:
            reason = (
                "re-run of the same version"
                if cur["version"] == result.version
                else f"superseded by version {result.version}"
            )
            self.db.execute(
                "UPDATE results SET is_current = 0, superseded_at = :now, superseded_by = :v,"
                " superseded_reason = :r WHERE id = :id",
                {"now": now, "v": result.version, "r": reason, "id": cur["id"]},
            )
        archived = {
            "cur": 0 if newer_current else 1,
            "sat": now if newer_current else None,
            "sby": (active.version if inactive and active else cur["version"] if cur else None)
            if newer_current
            else None,
            "sr": (
                f"version {result.version} is not the active one ({active.version})"
                if inactive and active
                else f"arrived after the newer version {cur['version']} was current"
                if newer_current and cur
                else None
            ),
        }
        row = self.db.query_one(
            "INSERT INTO results (job_key, scan_hash, measure, version, status, result_values,"
            " verdicts, notes, error, picture_stored, dicom_stored, started_at, ended_at, cpu_s,"
            " max_rss_mb, params, code_digest, lease_token, activation_id, is_current,"
            " recorded_at, superseded_at, superseded_by, superseded_reason)"
            " VALUES (:k, :h, :m, :v, :st, :vals, :verd, :notes, :err, :pic, :dcm, :t0, :t1,"
            " :cpu, :rss, :params, :dig, :tok, :act, :cur, :now, :sat, :sby, :sr) RETURNING *",
            {
                "k": result.job_key,
                "h": result.scan_hash,
                "m": result.measure,
                "v": result.version,
                "st": result.status.value,
                "vals": json.dumps(result.values, sort_keys=True),
                "verd": json.dumps([v.model_dump(mode="json") for v in result.verdicts]),
                "notes": json.dumps(result.notes),
                "err": result.failure,
                "pic": int(result.picture_stored),
                "dcm": int(result.dicom_stored),
                "t0": epoch(result.started_at),
                "t1": epoch(result.ended_at),
                "cpu": result.cpu_s,
                "rss": result.max_rss_mb,
                "params": json.dumps(result.params, sort_keys=True),
                "dig": result.code_digest,
                "tok": token,
                "act": activation_id,
                "now": now,
                **archived,
            },
        )
        if row is None:
            raise LedgerError(result.job_key, "the result row was not returned after INSERT")
        return result_from_row(row)

    # ---- housekeeping (the scheduler tick) ----
    def reclaim_expired(self, *, every_lease: str = "") -> list[str]:
        """Re-drive every job whose lease expired: back to the queue, or dead when out of
        attempts (each lease counted one). Returns the keys re-queued.

        ``every_lease`` (a reason) reclaims every lease, expired or not: for a runtime that
        just started and so knows none of the leased activations can still be running."""
        requeued: list[str] = []
        with self.db.transaction():
            now = self.clock()
            expired = "" if every_lease else " AND lease_expires < :now"
            rows = self.db.query(
                "SELECT * FROM jobs WHERE state = 'leased'"
                + expired
                + self.db.for_update(skip_locked=True),
                {"now": now},
            )
            for r in rows:
                lost = every_lease or "lease expired"
                lost = f"{lost} (activation {r['activation_id'] or 'unknown'})"
                if r["attempts"] >= r["max_attempts"]:
                    error = f"{lost}; out of attempts"
                    self.db.execute(
                        "UPDATE jobs SET state = 'dead', lease_expires = NULL, last_error = :e,"
                        " updated_at = :now WHERE job_key = :k",
                        {"e": error, "now": now, "k": r["job_key"]},
                    )
                    self._store_failure(r, error, now, r["lease_token"] or "")
                    continue
                self.db.execute(
                    "UPDATE jobs SET state = 'queued', lease_token = NULL, lease_expires = NULL,"
                    " activation_id = NULL, not_before = :now, last_error = :e,"
                    " updated_at = :now WHERE job_key = :k",
                    {"e": lost, "now": now, "k": r["job_key"]},
                )
                requeued.append(r["job_key"])
        return requeued

    def retry_due(self) -> int:
        """Queue again every failed job whose backoff has passed."""
        return self.db.execute(
            "UPDATE jobs SET state = 'queued', lease_token = NULL, updated_at = :now"
            " WHERE state = 'failed' AND not_before <= :now",
            {"now": self.clock()},
        )

    def cancel(self, measure: str, version: str, reason: str) -> int:
        """Stop the waiting jobs of one measure version (queued or failed -> dead, with
        ``last_error`` = ``cancelled: <reason>``; a backfill of the version revives them)."""
        return self.db.execute(
            "UPDATE jobs SET state = 'dead', last_error = :r, updated_at = :now"
            " WHERE kind = 'measure' AND measure = :m AND version = :v"
            " AND state IN ('queued', 'failed')",
            {"r": CANCELLED + reason, "now": self.clock(), "m": measure, "v": version},
        )

    def promote(self, measure: str, version: str) -> int:
        """Make the latest value of ``version`` current wherever another version's value is
        current (or none is): what a version that became active again already computed counts
        at once. Returns how many scans changed."""
        with self.db.transaction():
            now = self.clock()
            rows = self.db.query(
                "SELECT r.scan_hash, MAX(r.id) AS id FROM results r"
                " WHERE r.measure = :m AND r.version = :v AND NOT EXISTS (SELECT 1 FROM results c"
                "   WHERE c.scan_hash = r.scan_hash AND c.measure = r.measure"
                "   AND c.is_current = 1 AND c.version = :v)"
                " GROUP BY r.scan_hash",
                {"m": measure, "v": version},
            )
            for r in rows:
                self.db.lock(f"qmroct.result/{r['scan_hash']}/{measure}")
                self.db.execute(
                    "UPDATE results SET is_current = 0, superseded_at = :now, superseded_by = :v,"
                    " superseded_reason = :why WHERE scan_hash = :h AND measure = :m"
                    " AND is_current = 1",
                    {"now": now, "v": version, "h": r["scan_hash"], "m": measure,
                     "why": f"version {version} is the active one again"},
                )  # fmt: skip
                self.db.execute(
                    "UPDATE results SET is_current = 1, superseded_at = NULL,"
                    " superseded_by = NULL, superseded_reason = NULL WHERE id = :id",
                    {"id": r["id"]},
                )
            return len(rows)

    def fail_unsatisfiable(self) -> int:
        """Dead-letter waiting jobs whose required product can no longer be derived."""
        with self.db.transaction():
            rows = self.db.query(
                "SELECT j.job_key, j.kind, j.scan_hash, j.measure, j.version, j.params,"
                " n.product, d.last_error FROM jobs j"
                " JOIN job_needs n ON n.job_key = j.job_key"
                " JOIN jobs d ON d.kind = 'derive' AND d.measure = n.product"
                "   AND d.scan_hash = j.scan_hash AND d.state = 'dead'"
                " WHERE j.state IN ('queued', 'failed')"
            )
            now = self.clock()
            seen: set[str] = set()
            for r in rows:
                if r["job_key"] in seen:
                    continue  # one row per job, whichever of its products failed
                seen.add(r["job_key"])
                error = f"required product {r['product']} could not be derived: {r['last_error']}"
                self.db.execute(
                    "UPDATE jobs SET state = 'dead', last_error = :e, updated_at = :now"
                    " WHERE job_key = :k AND state IN ('queued', 'failed')",
                    {"e": error, "now": now, "k": r["job_key"]},
                )
                self._store_failure(r, error, now, "")
            return len(seen)

    def _store_failure(self, row: Row, error: str, now: float, token: str) -> None:
        """The failed result row of a measure job that died without one: the scan must show
        the measure as failed, and why, like any other failure."""
        if row["kind"] != JobKind.MEASURE.value:
            return
        when = datetime.fromtimestamp(now, UTC)
        failed = MeasureActionResult(
            job_key=row["job_key"],
            lease_token=token,
            scan_hash=row["scan_hash"],
            measure=row["measure"],
            version=row["version"],
            status=ResultStatus.FAILED,
            failure=error,
            params=json.loads(row["params"]) if row["params"] else {},
            started_at=when,
            ended_at=when,
        )
        self._store_result(failed, token, None, now)

    def leased(self, kinds: Sequence[JobKind] = CAPPED_KINDS) -> list[Job]:
        """The jobs in flight, oldest lease first."""
        clause, params = _in("kind", [k.value for k in kinds])
        rows = self.db.query(
            f"SELECT * FROM jobs WHERE state = 'leased' AND kind IN {clause}"
            " ORDER BY leased_at, job_key",
            params,
        )
        return [_job(r) for r in rows]

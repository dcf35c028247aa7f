"""The ledger's own figures: bulk enqueue rate and claim latency with a deep queue.

A backfill of a new measure version over every stored scan puts one job per scan in the queue at
once; the scheduler then claims a few jobs per tick until it drains. Both must stay fast however
deep the queue is: the enqueue is one COPY on PostgreSQL, and the claim reads the claim-order
index instead of sorting the queue. ``qmroct bench claim`` prints these figures for a ledger URL.

On a shared machine a claim's wall time is mostly the time its process (and, on PostgreSQL, the
server's backend) sat runnable waiting for a CPU. The kernel counts that wait per thread
(``/proc/<pid>/task/<tid>/schedstat``, second field, in ns: Documentation/scheduler/
sched-stats.rst), so each claim is also reported without it (``claim_ms_*`` minus the waits:
``busy_ms_*``), and by the CPU it used (this thread's and the backend's), beside the machine's
load average. The backend's counters are read only when the server runs on this machine.
"""

from __future__ import annotations

import gc
import hashlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from qmroct.results import MeasureActionResult, ResultStatus
from qmroct.storage.ledger import PRIORITY_BACKFILL, PRIORITY_UPLOAD, JobSpec, Ledger
from qmroct.storage.records import Claim, JobKind, MeasureState, MeasureVersion, ScanRecord


class ClaimFigures(BaseModel):
    dialect: str
    queued: int
    enqueue_s: float
    enqueue_rows_per_s: float
    samples: int
    mode: str
    claim_ms_p50: float
    claim_ms_p99: float
    claim_ms_max: float
    busy_ms_p50: float | None = None
    busy_ms_p99: float | None = None
    busy_ms_max: float | None = None
    cpu_ms_p50: float | None = None
    cpu_ms_p99: float | None = None
    gc_during_claims: int = 0
    load_avg: tuple[float, float, float] | None = None


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank rule; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _scan_hash(i: int, salt: str) -> str:
    return hashlib.sha256(f"{salt}-{i}".encode()).hexdigest()


def _schedstat(path: Path | None) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of a thread; None when unreadable."""
    if path is None:
        return None
    try:
        on_cpu, waited = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return int(on_cpu), int(waited)


def _backend_stat(ledger: Ledger) -> Path | None:
    """The schedstat file of this connection's PostgreSQL backend, if it runs here."""
    if ledger.db.dialect != "postgres":
        return None
    row = ledger.db.query_one("SELECT pg_backend_pid() AS pid")
    path = Path(f"/proc/{row['pid']}/schedstat") if row else None
    return path if path is not None and _schedstat(path) is not None else None


def _stats(values: list[float]) -> tuple[float, float, float]:
    return (
        round(statistics.median(values), 3),
        round(percentile(values, 0.99), 3),
        round(max(values), 3),
    )


def run_claim_bench(
    ledger: Ledger,
    *,
    queued: int = 200_000,
    samples: int = 2000,
    cap: int = 4,
    measure: str = "bench",
    mode: str = "complete",
    progress: Callable[[str], None] | None = None,
) -> ClaimFigures:
    """Enqueue ``queued`` backfill jobs in one batch, then time ``samples`` claims.

    Each claim takes one job. ``mode="complete"`` finishes it, as a drain does: the jobs done
    leave dead index entries ahead in claim order until the database cleans them up.
    ``mode="release"`` puts it back for an hour, as a throttled invoke would: the next claim
    walks past every job released so far, a queue no kinder than a real drain. One upload job
    in every thousand makes the claim order mix priorities.
    """
    if mode not in ("complete", "release"):
        raise ValueError(f"mode must be complete or release, not {mode!r}")
    say = progress or (lambda _m: None)
    salt = f"{time.time_ns()}"
    specs = [
        JobSpec(
            kind=JobKind.MEASURE,
            scan_hash=_scan_hash(i, salt),
            measure=measure,
            version="1.0.0",
            priority=PRIORITY_UPLOAD if i % 1000 == 0 else PRIORITY_BACKFILL,
        )
        for i in range(queued)
    ]
    say(f"enqueueing {queued} jobs")
    t0 = time.perf_counter()
    added = ledger.enqueue_many(specs)
    enqueue_s = time.perf_counter() - t0
    # The specs are the bench's, not the scheduler's: a scheduler holds no 200k objects for
    # the collector to walk during a claim.
    del specs
    gc.collect()
    collections = [0]

    def count_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            collections[0] += 1

    say(f"timing {samples} claims ({mode})")
    me = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
    backend = _backend_stat(ledger)
    wall: list[float] = []
    busy: list[float] = []
    cpu: list[float] = []
    gc.callbacks.append(count_gc)
    try:
        for i in range(samples):
            s0, b0, c0 = _schedstat(me), _schedstat(backend), time.thread_time_ns()
            t = time.perf_counter()
            claims = ledger.claim(cap=cap, limit=1)
            dt = (time.perf_counter() - t) * 1000
            c1, s1, b1 = time.thread_time_ns(), _schedstat(me), _schedstat(backend)
            wall.append(dt)
            if s0 and s1:
                waited = s1[1] - s0[1] + (b1[1] - b0[1] if b0 and b1 else 0)
                busy.append(max(0.0, dt - waited / 1e6))
                used = c1 - c0 + (b1[0] - b0[0] if b0 and b1 else 0)
                cpu.append(used / 1e6)
            for c in claims:
                if mode == "complete":
                    ledger.complete(c.job.job_key, c.lease_token)
                else:
                    ledger.release(c.job.job_key, c.lease_token, delay_s=3600, reason="bench")
            if (i + 1) % 500 == 0:
                say(f"  {i + 1}/{samples} claims")
    finally:
        gc.callbacks.remove(count_gc)
    p50, p99, top = _stats(wall)
    b = _stats(busy) if busy else (None, None, None)
    return ClaimFigures(
        dialect=ledger.db.dialect,
        queued=added,
        enqueue_s=round(enqueue_s, 3),
        enqueue_rows_per_s=round(added / max(enqueue_s, 1e-9), 1),
        samples=samples,
        mode=mode,
        claim_ms_p50=p50,
        claim_ms_p99=p99,
        claim_ms_max=top,
        busy_ms_p50=b[0],
        busy_ms_p99=b[1],
        busy_ms_max=b[2],
        cpu_ms_p50=_stats(cpu)[0] if cpu else None,
        cpu_ms_p99=_stats(cpu)[1] if cpu else None,
        gc_during_claims=collections[0],
        load_avg=tuple(round(x, 2) for x in os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )


class DrainFigures(BaseModel):
    dialect: str
    scans: int
    jobs: int
    tick_every: int
    client_ms_per_job_by_tenth: list[float]
    backend_ms_per_job_by_tenth: list[float] | None = None
    client_ms_per_job: dict[str, float]
    backend_ms_per_job: dict[str, float] | None = None
    last_over_first: dict[str, float]
    load_avg: tuple[float, float, float] | None = None


def _tenths(values: list[float]) -> list[float]:
    n = len(values)
    return [
        round(statistics.fmean(values[i * n // 10 : (i + 1) * n // 10]), 3)
        for i in range(10)
        if (i + 1) * n // 10 > i * n // 10
    ]


def run_drain_bench(
    ledger: Ledger,
    *,
    scans: int = 2000,
    cap: int = 4,
    tick_every: int = 4,
    progress: Callable[[str], None] | None = None,
) -> DrainFigures:
    """Drain a backfill of ``scans`` scans through the ledger alone, as the pipeline does.

    Each scan gets a derive job and a measure job that needs its product, enqueued in one
    batch. The loop makes the pipeline's ledger calls: record-result reads the job and
    completes it (the measure job with a result row, the derive job with its product), then
    claims the freed slots; for each claimed job the scheduler reads the scan, the products
    it needs and the measure version, and sets its activation id; every ``tick_every`` jobs
    a tick re-drives, retries, dead-letters and lists the leased jobs. The CPU of this thread
    and of the PostgreSQL backend (when local) is charged to the job recorded, and printed
    per job for each tenth of the drain and per kind. A cost that grows with the jobs drained
    (dead tuples, an index that grows) shows as a last tenth above the first within a kind;
    the kinds are compared separately because every derive job is claimed before the first
    measure job (same rank, and ``derive/`` sorts first).
    """
    say = progress or (lambda _m: None)
    salt = f"{time.time_ns()}"
    hashes = [_scan_hash(i, salt) for i in range(scans)]
    now = datetime.now(UTC)
    say(f"cataloguing {scans} scans and enqueueing {2 * scans} jobs")
    for h in hashes:
        ledger.catalog.add_scan(
            ScanRecord(scan_hash=h, bucket="bench", key=f"{h}.dcm", size=1, stored_at=now)
        )
    product, measure = "bench-context", "bench-measure"
    ledger.catalog.put_measure(
        MeasureVersion(name=measure, version="1.0.0", action="run-bench", requires=[product],
                       state=MeasureState.PUBLISHED, published_at=now)
    )  # fmt: skip
    specs = []
    for h in hashes:
        specs.append(JobSpec(kind=JobKind.DERIVE, scan_hash=h, measure=product, version="1",
                             priority=PRIORITY_BACKFILL))  # fmt: skip
        specs.append(JobSpec(kind=JobKind.MEASURE, scan_hash=h, measure=measure,
                             version="1.0.0", priority=PRIORITY_BACKFILL, needs=[product]))  # fmt: skip
    ledger.enqueue_many(specs)
    del specs
    backend = _backend_stat(ledger)

    def cpu() -> tuple[int, int]:
        b = _schedstat(backend)
        return time.thread_time_ns(), b[0] if b else 0

    inflight: list[Claim] = []

    def fill() -> None:
        for c in ledger.claim(cap=cap):
            ledger.catalog.scan(c.job.scan_hash)
            for need in c.job.needs:
                ledger.catalog.derived(need, c.job.scan_hash)
            if c.job.kind is JobKind.MEASURE:
                ledger.catalog.measure(c.job.measure, c.job.version)
            ledger.set_activation(c.job.job_key, c.lease_token, f"bench-{c.job.job_key[-12:]}")
            inflight.append(c)

    cost: dict[str, list[tuple[float, float]]] = {"derive": [], "measure": []}
    order: list[tuple[float, float]] = []
    say(f"draining {2 * scans} jobs")
    fill()
    done = 0
    while inflight:
        c = inflight.pop(0)
        c0 = cpu()
        job = ledger.job(c.job.job_key)
        if job is not None and job.kind is JobKind.DERIVE:
            ledger.complete_derived(job.job_key, c.lease_token, bucket="bench",
                                    object_key=f"{job.scan_hash}.ctx")  # fmt: skip
        elif job is not None:
            t = datetime.now(UTC)
            ledger.complete(
                job.job_key,
                c.lease_token,
                MeasureActionResult(
                    job_key=job.job_key,
                    lease_token=c.lease_token,
                    scan_hash=job.scan_hash,
                    measure=measure,
                    version="1.0.0",
                    status=ResultStatus.OK,
                    values={"bench": float(done)},
                    started_at=t,
                    ended_at=t,
                ),
                activation_id=f"bench-{job.job_key[-12:]}",
            )
        fill()
        done += 1
        if done % tick_every == 0:
            ledger.reclaim_expired()
            ledger.retry_due()
            ledger.fail_unsatisfiable()
            ledger.leased()
        c1 = cpu()
        used = ((c1[0] - c0[0]) / 1e6, (c1[1] - c0[1]) / 1e6)
        cost[c.job.kind.value].append(used)
        order.append(used)
        if done % 1000 == 0:
            say(f"  {done}/{2 * scans} jobs")
    local = backend is not None

    def ratio(values: list[float]) -> float:
        t = _tenths(values)
        return round(t[-1] / t[0], 3) if t and t[0] > 0 else 0.0

    both = {k: [a + b for a, b in v] for k, v in cost.items()}
    return DrainFigures(
        dialect=ledger.db.dialect,
        scans=scans,
        jobs=len(order),
        tick_every=tick_every,
        client_ms_per_job_by_tenth=_tenths([a for a, _ in order]),
        backend_ms_per_job_by_tenth=_tenths([b for _, b in order]) if local else None,
        client_ms_per_job={
            k: round(statistics.fmean(a for a, _ in v), 3) for k, v in cost.items() if v
        },
        backend_ms_per_job=(
            {k: round(statistics.fmean(b for _, b in v), 3) for k, v in cost.items() if v}
            if local
            else None
        ),
        last_over_first={k: ratio(v) for k, v in both.items() if v},
        load_avg=tuple(round(x, 2) for x in os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )

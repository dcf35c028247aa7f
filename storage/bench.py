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
from pathlib import Path

from pydantic import BaseModel
from qmroct.storage.ledger import PRIORITY_BACKFILL, PRIORITY_UPLOAD, JobSpec, Ledger
from qmroct.storage.records import JobKind


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

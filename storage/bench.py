"""The ledger's own figures: bulk enqueue rate and claim latency with a deep queue.

A backfill of a new measure version over every stored scan puts one job per scan in the queue at
once; the scheduler then claims a few jobs per tick until it drains. Both must stay fast however
deep the queue is: the enqueue is one COPY on PostgreSQL, and the claim reads the claim-order
index instead of sorting the queue. ``qmroct bench claim`` prints these figures for a ledger URL.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable

from pydantic import BaseModel
from qmroct.storage.ledger import PRIORITY_BACKFILL, PRIORITY_UPLOAD, JobSpec, Ledger
from qmroct.storage.records import JobKind


class ClaimFigures(BaseModel):
    dialect: str
    queued: int
    enqueue_s: float
    enqueue_rows_per_s: float
    samples: int
    claim_ms_p50: float
    claim_ms_p99: float
    claim_ms_max: float


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank rule; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _scan_hash(i: int, salt: str) -> str:
    return hashlib.sha256(f"{salt}-{i}".encode()).hexdigest()


def run_claim_bench(
    ledger: Ledger,
    *,
    queued: int = 200_000,
    samples: int = 200,
    cap: int = 4,
    measure: str = "bench",
    progress: Callable[[str], None] | None = None,
) -> ClaimFigures:
    """Enqueue ``queued`` backfill jobs in one batch, then time ``samples`` claims.

    Each claim takes one job and releases it for an hour, as a throttled invoke would, so the
    next claim walks past it: the queue stays ``queued`` deep and released jobs accumulate
    ahead in claim order, which is no kinder than a real drain. One upload job in every
    thousand makes the claim order mix priorities.
    """
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
    say(f"timing {samples} claims")
    lat: list[float] = []
    for _ in range(samples):
        t = time.perf_counter()
        claims = ledger.claim(cap=cap, limit=1)
        lat.append((time.perf_counter() - t) * 1000)
        for c in claims:
            ledger.release(c.job.job_key, c.lease_token, delay_s=3600, reason="bench")
    return ClaimFigures(
        dialect=ledger.db.dialect,
        queued=added,
        enqueue_s=round(enqueue_s, 3),
        enqueue_rows_per_s=round(added / max(enqueue_s, 1e-9), 1),
        samples=samples,
        claim_ms_p50=round(statistics.median(lat), 3),
        claim_ms_p99=round(percentile(lat, 0.99), 3),
        claim_ms_max=round(max(lat), 3),
    )

"""The backfill benchmark: publish a new measure version over stored scans and measure how the
pipeline drains it.

Figures:
- ``wall_s``: from the publication to the last job finished (done or dead);
- ``scans_per_s``: scans / wall_s;
- ``max_inflight``: the most ``measure-<measure>`` activations overlapping in time, from the
  activation records' start and end (a sweep over the intervals), to compare with the cap.
  Whole ``run-<measure>`` sequences can briefly exceed it: record-result frees the slot and
  wakes the scheduler before it returns, so a sequence's last milliseconds may overlap the
  next start;
- ``lost``: jobs of the version not finished when the wait ended;
- ``duplicated``: result rows beyond one per scan for the version (each job must store once);
- ``failed``: jobs of the version that ended dead;
- ``overhead_ms_p50``: median sequence duration minus median measure-action duration, i.e.
  what record-result and the sequence add per job.

The function takes the stack's pieces, so the same code measures the embedded stack and a real
deployment.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from qmroct.objectstore.base import ObjectStore
from qmroct.orchestration.context import Invoker
from qmroct.orchestration.invoking import field
from qmroct.orchestration.publication import publish_measure
from qmroct.storage.ledger import Ledger
from qmroct.storage.records import JobKind


class BackfillFigures(BaseModel):
    scans: int
    cap: int
    wall_s: float
    scans_per_s: float
    max_inflight: int
    lost: int
    duplicated: int
    failed: int
    overhead_ms_p50: float | None


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    events = sorted(
        [(s, 1) for s, e in intervals] + [(e, -1) for s, e in intervals],
        key=lambda ev: (ev[0], ev[1]),
    )
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def _intervals(records: Iterable[Any]) -> list[tuple[float, float]]:
    out = []
    for r in records:
        start, end = field(r, "start"), field(r, "end")
        if start is not None and end is not None:
            out.append((float(start), float(end)))
    return out


def _durations(records: Iterable[Any]) -> list[float]:
    return [e - s for s, e in _intervals(records)]


def backfill_figures(
    ledger: Ledger,
    ow: Invoker,
    *,
    measure: str,
    version: str,
    scans: int,
    cap: int,
    started: float,
    ended: float,
) -> BackfillFigures:
    """Compute the figures of a finished (or timed-out) backfill from the ledger and records."""
    jobs = [
        j
        for j in ledger.jobs(kind=JobKind.MEASURE, limit=10 * scans + 1000)
        if j.measure == measure and j.version == version
    ]
    states = [j.state.value for j in jobs]
    rows = ledger.db.query(
        "SELECT scan_hash, COUNT(*) AS n FROM results WHERE measure = :m AND version = :v"
        " GROUP BY scan_hash",
        {"m": measure, "v": version},
    )
    since = int(started * 1000) - 1000
    limit = 4 * scans + 100
    seq = list(ow.activations(name=f"run-{measure}", since=since, limit=limit) or [])
    act = list(ow.activations(name=f"measure-{measure}", since=since, limit=limit) or [])
    seq_d, act_d = _durations(seq), _durations(act)
    overhead = (
        round(statistics.median(seq_d) - statistics.median(act_d), 1) if seq_d and act_d else None
    )
    wall = max(ended - started, 1e-9)
    return BackfillFigures(
        scans=scans,
        cap=cap,
        wall_s=round(wall, 3),
        scans_per_s=round(scans / wall, 3),
        max_inflight=max_overlap(_intervals(act or seq)),
        lost=sum(s not in ("done", "dead") for s in states) + max(0, scans - len(jobs)),
        duplicated=sum(int(r["n"]) - 1 for r in rows),
        failed=states.count("dead"),
        overhead_ms_p50=overhead,
    )


def run_backfill_bench(
    ledger: Ledger,
    store: ObjectStore,
    ow: Invoker,
    *,
    measure: str,
    version: str,
    scans: int,
    cap: int,
    timeout_s: float = 900.0,
    poll_s: float = 0.25,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillFigures:
    """Publish ``measure`` ``version`` over the ``scans`` already stored and wait for it.

    The stack must be running (events flowing to on-measure-published, the scheduler bound to
    ``max_inflight = cap``) with ``scans`` scans catalogued.
    """
    started = clock()
    publish_measure(store, measure, version)
    deadline = started + timeout_s
    while clock() < deadline:
        jobs = [
            j
            for j in ledger.jobs(kind=JobKind.MEASURE, limit=10 * scans + 1000)
            if j.measure == measure and j.version == version
        ]
        if len(jobs) >= scans and all(j.state.value in ("done", "dead") for j in jobs):
            break
        sleep(poll_s)
    return backfill_figures(
        ledger,
        ow,
        measure=measure,
        version=version,
        scans=scans,
        cap=cap,
        started=started,
        ended=clock(),
    )

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
- ``overhead_ms_p50`` / ``overhead_ms_p99``: per job, the ``run-<measure>`` sequence's duration
  minus its measure activation's (the sequence record lists its components' activation ids):
  what record-result and the sequence add per job;
- ``claim_ms_p50`` / ``claim_ms_p99``: the ledger claims made while draining, as the scheduler
  and record-result report them in their results;
- ``scheduler_ticks_per_scan``: scheduler activations during the drain per scan;
- ``scheduling_cpu_ms_per_scan``: CPU of the scheduler's and record-result's containers during
  the drain per scan (record-result claims and starts the next job), when the caller can read
  it (the embedded stack can); flat from 50 to thousands of scans means no per-tick cost grows
  with the backlog or the activation history;
- ``steady_scans_per_s`` / ``steady_cpu_ms_per_scan``: the same from the moment a tenth of the
  jobs had finished to the end, so the first containers' cold starts (a fixed cost, which
  flatters large runs) are left out;
- ``load_avg``: the machine's load average (1, 5, 15 min) when the drain ended: wall-clock
  figures on a shared machine say as much about the neighbours as about the pipeline.

The function takes the stack's pieces, so the same code measures the embedded stack and a real
deployment.
"""

from __future__ import annotations

import os
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
    ledger: str = ""
    wall_s: float
    scans_per_s: float
    max_inflight: int
    lost: int
    duplicated: int
    failed: int
    overhead_ms_p50: float | None
    overhead_ms_p99: float | None = None
    claim_ms_p50: float | None = None
    claim_ms_p99: float | None = None
    scheduler_ticks_per_scan: float | None = None
    scheduling_cpu_ms_per_scan: float | None = None
    steady_scans_per_s: float | None = None
    steady_cpu_ms_per_scan: float | None = None
    load_avg: tuple[float, float, float] | None = None


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


def all_activations(ow: Invoker, name: str, since: int, page: int = 200) -> list[Any]:
    """Every record of ``name`` since ``since`` (ms), paging past the API's 200 per answer."""
    out: list[Any] = []
    while True:
        kw: dict[str, Any] = {"name": name, "since": since, "limit": page}
        if out:
            kw["skip"] = len(out)
        got = list(ow.activations(**kw) or [])
        out += got
        if len(got) < page:
            return out


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))], 3)


def _per_job_overhead(seq: list[Any], act: list[Any]) -> list[float]:
    """Sequence duration minus its measure component's, per sequence record."""
    by_id = {str(field(r, "activationId", "activation_id")): r for r in act}
    out = []
    for r in seq:
        logs = field(r, "logs", default=[]) or []
        comp = by_id.get(str(logs[0])) if logs else None
        if comp is None:
            continue
        d_seq = float(field(r, "end")) - float(field(r, "start"))
        d_act = float(field(comp, "end")) - float(field(comp, "start"))
        out.append(d_seq - d_act)
    return out


def _claim_ms(records: Iterable[Any]) -> list[float]:
    out = []
    for r in records:
        result = field(field(r, "response", default={}) or {}, "result", default={}) or {}
        ms = field(result, "claim_ms")
        if isinstance(ms, int | float) and field(result, "claimed", "started", default=1):
            out.append(float(ms))
    return out


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
    package: str = "",
    scheduling_cpu_s: float | None = None,
) -> BackfillFigures:
    """Compute the figures of a finished (or timed-out) backfill from the ledger and records
    (listed by ``package/action`` when ``package`` is given, as the API filters packaged
    actions)."""
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
    prefix = f"{package}/" if package else ""
    seq = all_activations(ow, f"{prefix}run-{measure}", since)
    act = all_activations(ow, f"{prefix}measure-{measure}", since)
    ticks = all_activations(ow, f"{prefix}scheduler", since)
    records = all_activations(ow, f"{prefix}record-result", since)
    seq_d, act_d = _durations(seq), _durations(act)
    overhead = (
        round(statistics.median(seq_d) - statistics.median(act_d), 1) if seq_d and act_d else None
    )
    per_job = _per_job_overhead(seq, act)
    claims = _claim_ms(ticks) + _claim_ms(records)
    wall = max(ended - started, 1e-9)
    return BackfillFigures(
        scans=scans,
        cap=cap,
        ledger=ledger.db.dialect,
        wall_s=round(wall, 3),
        scans_per_s=round(scans / wall, 3),
        max_inflight=max_overlap(_intervals(act or seq)),
        lost=sum(s not in ("done", "dead") for s in states) + max(0, scans - len(jobs)),
        duplicated=sum(int(r["n"]) - 1 for r in rows),
        failed=states.count("dead"),
        overhead_ms_p50=_quantile(per_job, 0.5) if per_job else overhead,
        overhead_ms_p99=_quantile(per_job, 0.99),
        claim_ms_p50=_quantile(claims, 0.5),
        claim_ms_p99=_quantile(claims, 0.99),
        scheduler_ticks_per_scan=round(len(ticks) / max(scans, 1), 3),
        scheduling_cpu_ms_per_scan=(
            round(scheduling_cpu_s * 1000 / max(scans, 1), 2)
            if scheduling_cpu_s is not None
            else None
        ),
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
    package: str = "",
    scheduling_cpu: Callable[[], float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> BackfillFigures:
    """Publish ``measure`` ``version`` over the ``scans`` already stored and wait for it.

    The stack must be running (events flowing to on-measure-published, the scheduler bound to
    ``max_inflight = cap``) with ``scans`` scans catalogued. ``progress`` is told how many
    jobs have finished at every poll.
    """
    started = clock()
    cpu0 = scheduling_cpu() if scheduling_cpu else None
    tenth: tuple[float, int, float | None] | None = None  # (time, finished, cpu)
    publish_measure(store, measure, version)
    deadline = started + timeout_s
    while clock() < deadline:
        # Counts, not rows: polling must not cost more as the backlog grows.
        by_state = {
            r["state"]: int(r["n"])
            for r in ledger.db.query(
                "SELECT state, COUNT(*) AS n FROM jobs WHERE kind = 'measure' AND measure = :m"
                " AND version = :v GROUP BY state",
                {"m": measure, "v": version},
            )
        }
        finished = by_state.get("done", 0) + by_state.get("dead", 0)
        if progress is not None:
            progress(finished)
        if tenth is None and finished >= max(1, scans // 10):
            tenth = (clock(), finished, scheduling_cpu() if scheduling_cpu else None)
        if finished >= scans and finished == sum(by_state.values()):
            break
        sleep(poll_s)
    ended = clock()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpu_end = scheduling_cpu() if scheduling_cpu else None
    cpu = cpu_end - cpu0 if cpu_end is not None and cpu0 is not None else None
    steady: dict[str, Any] = {"load_avg": tuple(round(x, 2) for x in load) if load else None}
    if tenth is not None and scans > tenth[1]:
        t10, n10, cpu10 = tenth
        steady["steady_scans_per_s"] = round((scans - n10) / max(ended - t10, 1e-9), 3)
        if cpu_end is not None and cpu10 is not None:
            steady["steady_cpu_ms_per_scan"] = round((cpu_end - cpu10) * 1000 / (scans - n10), 2)
    return backfill_figures(
        ledger,
        ow,
        measure=measure,
        version=version,
        scans=scans,
        cap=cap,
        started=started,
        ended=ended,
        package=package,
        scheduling_cpu_s=cpu,
    ).model_copy(update=steady)

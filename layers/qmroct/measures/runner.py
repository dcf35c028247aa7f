"""Run the whole suite (or some measures) on one scan in process: the code path of
``qmroct measure run``, ``qmroct validate`` and ``qmroct bench measures``. The actions run the
same ``Measure.compute``, one measure per activation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from qmroct.measures.base import get_measure, registry
from qmroct.measures.context import ScanContext
from qmroct.measures.suite import SUITE_ORDER, OscarIbSummary, oscar_ib_summary
from qmroct.oct.model import Scan
from qmroct.oct.segmentation import Segmentation
from qmroct.results import MeasureOutput


@dataclass
class SuiteRun:
    context: ScanContext
    outputs: list[MeasureOutput]
    summary: OscarIbSummary
    cpu_s: dict[str, float] = field(default_factory=dict)


def measure_names(only: list[str] | None = None) -> list[str]:
    """The suite's measures in table order (plus any other registered one), or ``only``."""
    known = registry()
    names = [n for n in SUITE_ORDER if n in known] + sorted(set(known) - set(SUITE_ORDER))
    if not only:
        return names
    for n in only:
        get_measure(n)  # raises KeyError naming the known measures
    return list(only)


def run_suite(
    scan: Scan,
    *,
    only: list[str] | None = None,
    params: dict[str, dict] | None = None,
    segmentation: Segmentation | None = None,
    png: bool = True,
) -> SuiteRun:
    """Segment once (unless given), then compute each measure; CPU seconds per measure.
    ``png=False`` leaves each picture as pixels (``picture_rgb``) without encoding it."""
    t0 = time.process_time()
    ctx = ScanContext.build(scan, {"segmentation": segmentation} if segmentation else None)
    cpu = {"context": time.process_time() - t0}
    outputs = []
    for name in measure_names(only):
        m = get_measure(name)
        t = time.process_time()
        outputs.append(
            m.compute(scan, m.parse_params((params or {}).get(name)), {"context": ctx, "png": png})
        )
        cpu[name] = time.process_time() - t
    return SuiteRun(ctx, outputs, oscar_ib_summary(outputs), cpu)

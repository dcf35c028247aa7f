"""``qmroct bench measures``: where the suite's CPU goes on one scan, measure by measure.

A plain process pool and the pipeline both pay these figures for every scan: reading the file,
segmenting it, the context (display image), the per-scan state the measures share (retina and
vitreous masks, linear reflectivity, optic disc, usable B-scans), then each measure, whose
figure includes encoding its picture as PNG (shown apart as ``png``). Two columns per measure:

- ``suite``: as :func:`~qmroct.measures.runner.run_suite` computes it (``qmroct measure run``,
  the pool of ``qmroct bench compare``), with the context and its shared state already built;
- ``alone``: from a freshly loaded stored context (:meth:`ScanContext.from_bytes`), as one
  measure action computes it in the pipeline: the shared state the context does not store is
  rebuilt there. Loading the context is shown apart (``load stored context``, with its size):
  every measure action pays it once.

Every figure is the best of ``repeats`` runs, in CPU seconds (``time.process_time``), so a
busy machine inflates it less than wall time; the load average is printed with it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from qmroct import pictures
from qmroct.measures.base import get_measure
from qmroct.measures.context import ScanContext
from qmroct.measures.runner import measure_names
from qmroct.oct.model import Scan

#: The context's cached per-scan state that several measures read.
SHARED_STATE = (
    "retina",
    "vitreous",
    "linear_and_name",
    "retina_fraction",
    "retina_cnr",
    "usable",
    "usable_segmentation",
    "disc",
    "centre_index",
)


class MeasureCost(BaseModel):
    suite_cpu_s: float
    png_cpu_s: float
    alone_cpu_s: float


class SuiteCosts(BaseModel):
    source: str
    volume: list[int]
    megabytes: float
    repeats: int
    read_cpu_s: float | None
    segmentation_cpu_s: float
    context_cpu_s: float
    shared_cpu_s: float
    stored_cpu_s: float = 0.0
    stored_megabytes: float = 0.0
    load_cpu_s: float = 0.0
    measures: dict[str, MeasureCost]
    pictures_png_cpu_s: float
    measures_cpu_s: float
    scan_cpu_s: float
    alone_cpu_s: float
    # The figures run_suite itself reports (context, then each measure), for continuity.
    cpu_s: dict[str, float]
    suite_cpu_s: float
    load_avg: tuple[float, float, float]

    def lines(self) -> list[str]:
        read = f"{self.read_cpu_s:7.3f}" if self.read_cpu_s is not None else "      -"
        out = [
            f"{self.source}: {'x'.join(map(str, self.volume))} ({self.megabytes} MB); "
            f"best of {self.repeats}, CPU seconds; load average "
            + " ".join(f"{x:.2f}" for x in self.load_avg),
            f"  {'read file':24} {read}",
            f"  {'segment()':24} {self.segmentation_cpu_s:7.3f}",
            f"  {'context (display image)':24} {self.context_cpu_s:7.3f}",
            f"  {'shared state':24} {self.shared_cpu_s:7.3f}  (masks, linear, disc, usable)",
            f"  {'store context':24} {self.stored_cpu_s:7.3f}  ({self.stored_megabytes} MB)",
            f"  {'load stored context':24} {self.load_cpu_s:7.3f}  (in each measure action)",
            f"  {'measure':24} {'suite':>7} {'png':>7} {'alone':>7}",
        ]
        for name, c in self.measures.items():
            out.append(
                f"    {name:22} {c.suite_cpu_s:7.3f} {c.png_cpu_s:7.3f} {c.alone_cpu_s:7.3f}"
            )
        out += [
            f"  {'measures':24} {self.measures_cpu_s:7.3f} {self.pictures_png_cpu_s:7.3f} "
            f"{self.alone_cpu_s:7.3f}",
            f"  {'per scan (pool path)':24} {self.scan_cpu_s:7.3f}  (read + segment + context + "
            "shared + measures)",
            "  suite: measures sharing one context (run_suite, the pool); alone: each from a "
            "freshly loaded stored context (one action, the pipeline); png: its picture's "
            "encoding, inside both",
        ]
        return out


class _Clock:
    """CPU seconds since the last call."""

    def __init__(self) -> None:
        self.t = time.process_time()

    def lap(self) -> float:
        now = time.process_time()
        dt, self.t = now - self.t, now
        return dt


def _one_run(data: bytes, name: str, names: list[str]) -> tuple[Scan, dict[str, float]]:
    """One pass: the figures of every step, CPU seconds."""
    from qmroct.oct.readers import read_scan
    from qmroct.oct.segmentation import segment

    f: dict[str, float] = {}
    clock = _Clock()
    scan = read_scan(data, name=name)
    f["read"] = clock.lap()
    seg = segment(scan)
    f["segment"] = clock.lap()
    ctx = ScanContext.build(scan, {"segmentation": seg})
    f["context"] = clock.lap()
    for attr in SHARED_STATE:
        getattr(ctx, attr)
    f["shared"] = clock.lap()
    clock.lap()
    stored = ctx.to_bytes()
    f["store"] = clock.lap()
    ScanContext.from_bytes(stored, bscans=lambda: scan.bscans)
    f["load"] = clock.lap()
    f["stored_mb"] = len(stored) / 1e6
    for n in names:
        m = get_measure(n)
        params = m.parse_params(None)
        clock.lap()
        out = m.compute(scan, params, {"context": ctx})
        f[n] = clock.lap()
        if out.picture_rgb is not None:
            pictures.to_png(out.picture_rgb)
        f[f"png:{n}"] = clock.lap() if out.picture_rgb is not None else 0.0
        fresh = ScanContext.from_bytes(stored, bscans=lambda: scan.bscans)
        clock.lap()
        m.compute(fresh.scan, params, {"context": fresh})
        f[f"alone:{n}"] = clock.lap()
    return scan, f


def suite_costs(
    file: Path | None = None,
    *,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> SuiteCosts:
    """The CPU breakdown on ``file``, or on the paper-size phantom volume (25 x 496 x 512,
    seed 0) written as Heyex .vol and read back, as the pool and the pipeline read it."""
    say = progress or (lambda _m: None)
    if file is None:
        from qmroct.oct.phantom import make_phantom, write_phantom

        say("making the paper-size phantom volume")
        scan, truth, _ = make_phantom("volume", size="paper", seed=0)
        with tempfile.TemporaryDirectory(prefix="qmroct-bench-") as tmp:
            path = write_phantom(scan, truth, Path(tmp), formats=("vol",))[0]
            data, name = path.read_bytes(), path.name
        source = "paper-size phantom volume read from .vol"
    else:
        data, name = file.read_bytes(), file.name
        source = str(file)
    names = measure_names()
    best: dict[str, float] = {}
    scan: Scan | None = None
    for r in range(repeats):
        say(f"run {r + 1}/{repeats}")
        scan, figures = _one_run(data, name, names)
        for k, v in figures.items():
            best[k] = min(best.get(k, float("inf")), v)
    assert scan is not None
    measures = {
        n: MeasureCost(
            suite_cpu_s=round(best[n], 4),
            png_cpu_s=round(best[f"png:{n}"], 4),
            alone_cpu_s=round(best[f"alone:{n}"], 4),
        )
        for n in names
    }
    total = sum(best[n] for n in names)
    context = best["context"] + best["shared"]
    return SuiteCosts(
        source=source,
        volume=list(scan.shape),
        megabytes=round(scan.bscans.nbytes / 1e6, 1),
        repeats=repeats,
        read_cpu_s=round(best["read"], 4),
        segmentation_cpu_s=round(best["segment"], 4),
        context_cpu_s=round(best["context"], 4),
        shared_cpu_s=round(best["shared"], 4),
        stored_cpu_s=round(best["store"], 4),
        stored_megabytes=round(best["stored_mb"], 1),
        load_cpu_s=round(best["load"], 4),
        measures=measures,
        pictures_png_cpu_s=round(sum(best[f"png:{n}"] for n in names), 4),
        measures_cpu_s=round(total, 4),
        scan_cpu_s=round(best["read"] + best["segment"] + context + total, 4),
        alone_cpu_s=round(sum(best[f"alone:{n}"] for n in names), 4),
        cpu_s={"context": round(context, 4), **{n: round(best[n], 4) for n in names}},
        suite_cpu_s=round(context + total, 4),
        load_avg=os.getloadavg(),
    )

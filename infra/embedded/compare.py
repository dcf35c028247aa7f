"""``qmroct bench compare``: the pipeline against a plain process pool on the same files.

The pool is what the pipeline has to beat for its keep: ``multiprocessing.Pool`` with as many
workers as the pipeline's cap, each reading one file, segmenting it once and calling every
measure's ``compute`` (pictures included, as the actions make them). The pipeline is the paper
benchmark: gateway upload, events, scheduler, one activation per measure and scan, results
recorded. Both run in one invocation on the same cores, one after the other, and both are
charged the CPU of every process they start: the pool's read from this process's tree
(:mod:`qmroct.embedded.cputime`), the pipeline's from its breakdown
(:mod:`qmroct.embedded.breakdown`), which also keeps what containers destroyed during the run
used and says where the CPU went.

``overhead_ratio`` = pipeline CPU / pool CPU: what the deployment units, the object store and
the ledger cost on top of the measures themselves.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel
from qmroct.embedded.bench import PAPER_SCANS, PaperFigures, run_paper_bench, write_paper_files
from qmroct.embedded.cputime import tree_cpu_s


class PoolFigures(BaseModel):
    processes: int
    wall_s: float
    cpu_s: float
    outputs: int


class CompareFigures(BaseModel):
    scans: int
    megabytes: float
    measures: int
    processes: int
    pool_wall_s: float
    pool_cpu_s: float
    pipeline_wall_s: float
    pipeline_cpu_s: float
    overhead_ratio: float
    wall_ratio: float
    failed: int
    load_avg: tuple[float, float, float]
    load_avg_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pool: PoolFigures
    pipeline: PaperFigures

    def lines(self) -> list[str]:
        return [
            f"workload        {self.scans} volumes, {self.megabytes:.0f} MB, {self.measures}"
            f" measures, {self.processes} processes / cap {self.processes}",
            f"process pool    wall {self.pool_wall_s:7.1f} s   cpu {self.pool_cpu_s:7.1f} s",
            f"pipeline        wall {self.pipeline_wall_s:7.1f} s   cpu {self.pipeline_cpu_s:7.1f} s",
            f"overhead_ratio  {self.overhead_ratio:.2f}  (pipeline CPU / pool CPU; wall ratio"
            f" {self.wall_ratio:.2f})",
            f"overhead        {self.pipeline_cpu_s - self.pool_cpu_s:.1f} s of CPU beyond the pool's",
            f"load average    {self.load_avg[0]:.2f} {self.load_avg[1]:.2f} {self.load_avg[2]:.2f}"
            f" (1, 5, 15 min, at the end; {self.load_avg_start[0]:.2f} at the start)",
            f"failed          {self.failed}",
            *(self.pipeline.breakdown.lines() if self.pipeline.breakdown else []),
        ]


def _pool_one(path: str) -> int:
    """One file through every measure, in a pool worker: how many outputs."""
    from qmroct.measures.runner import run_suite
    from qmroct.oct.readers import read_scan

    scan = read_scan(Path(path).read_bytes(), name=Path(path).name)
    return len(run_suite(scan).outputs)


def run_pool(files: list[Path], processes: int) -> PoolFigures:
    """Every measure on every file in a ``multiprocessing.Pool`` of fresh (spawned) workers."""
    ctx = multiprocessing.get_context("spawn")
    t0, c0 = time.monotonic(), tree_cpu_s()
    with ctx.Pool(processes=processes) as pool:
        done = pool.map(_pool_one, [str(p) for p in files], chunksize=1)
        pool.close()
        pool.join()
    wall, cpu = time.monotonic() - t0, tree_cpu_s() - c0
    return PoolFigures(
        processes=processes,
        wall_s=round(wall, 2),
        cpu_s=round(cpu, 2),
        outputs=sum(done),
    )


def run_compare(
    *,
    processes: int = 2,
    scans: int = PAPER_SCANS,
    progress: Callable[[str], None] | None = None,
) -> CompareFigures:
    """The pool, then the pipeline, on the paper workload's files; the home is deleted after."""
    say = progress or (lambda _m: None)
    load0 = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="qmroct-compare-"))
    try:
        say(f"making {scans} paper-size phantom volumes")
        files = write_paper_files(home / "inbox", scans)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        say(f"process pool of {processes} on {megabytes:.0f} MB")
        pool = run_pool(files, processes)
        say(f"pipeline with cap {processes}")
        paper = run_paper_bench(cap=processes, home=home / "stack", files=files, progress=say)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return CompareFigures(
        scans=scans,
        megabytes=round(megabytes, 1),
        measures=paper.measures,
        processes=processes,
        pool_wall_s=pool.wall_s,
        pool_cpu_s=pool.cpu_s,
        pipeline_wall_s=paper.end_to_end_s,
        pipeline_cpu_s=paper.cpu_s,
        overhead_ratio=round(paper.cpu_s / max(pool.cpu_s, 1e-9), 3),
        wall_ratio=round(paper.end_to_end_s / max(pool.wall_s, 1e-9), 3),
        failed=paper.failed,
        load_avg=tuple(round(x, 2) for x in os.getloadavg()),
        load_avg_start=tuple(round(x, 2) for x in load0),
        pool=pool,
        pipeline=paper,
    )

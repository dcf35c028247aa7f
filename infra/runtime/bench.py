"""Runtime overhead benchmark: warm and cold activations, next to the action's own compute.

The action measures its own compute time with ``perf_counter`` and returns it; the overhead is
what the caller waited beyond that. Warm runs reuse one container; cold runs bump the action
version first (as ``wsk action update`` does), which forces a new container and /init.
"""

from __future__ import annotations

import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from pydantic import BaseModel
from qmroct.clients.openwhisk import OpenWhiskClient
from qmroct.runtime.entities import ActionPut
from qmroct.runtime.whisk import EmbeddedWhisk

WARM_TARGET_MS = 20.0
COLD_TARGET_MS = 1000.0
VM_START_S = 76.0
DOCKER_START_S = 7.0
# A three-action Python sequence on OpenWhisk (openwhisk-wskdeploy#1143).
PUBLISHED_SEQUENCE_MS = 2800.0

_ACTION = """
import time
import numpy as np

def main(args):
    t0 = time.perf_counter()
    rng = np.random.default_rng(int(args.get("seed", 0)))
    bscan = rng.random((496, 512))
    snr = float(bscan.mean() / bscan.std())
    return {"snr": snr, "compute_ms": (time.perf_counter() - t0) * 1000}
"""

_MANIFEST = """
project:
  name: bench
  packages:
    bench:
      actions:
        compute:
          function: functions/compute
          runtime: python:3.11
          limits: {timeout: 60000, memorySize: 256, logSize: 1}
      sequences:
        trio: {actions: "compute, compute, compute"}
"""


class BenchFigures(BaseModel):
    runs: int
    cold_runs: int
    warm_total_ms: float
    warm_compute_ms: float
    warm_overhead_ms: float
    warm_rest_total_ms: float
    warm_rest_overhead_ms: float
    cold_total_ms: float
    cold_init_ms: float
    cold_overhead_ms: float
    sequence3_total_ms: float
    warm_target_ms: float = WARM_TARGET_MS
    cold_target_ms: float = COLD_TARGET_MS
    vm_start_s: float = VM_START_S
    docker_start_s: float = DOCKER_START_S

    @property
    def vm_ratio(self) -> float:
        return VM_START_S * 1000 / self.cold_total_ms

    @property
    def docker_ratio(self) -> float:
        return DOCKER_START_S * 1000 / self.cold_total_ms

    def lines(self) -> list[str]:
        def mark(ok: bool) -> str:
            return "meets" if ok else "MISSES"

        return [
            f"runtime benchmark: median of {self.runs} warm and {self.cold_runs} cold activations",
            f"  action compute (numpy, one 496x512 B-scan): {self.warm_compute_ms:8.2f} ms",
            f"  warm, in process: total {self.warm_total_ms:8.2f} ms, overhead "
            f"{self.warm_overhead_ms:6.2f} ms ({mark(self.warm_overhead_ms < WARM_TARGET_MS)} "
            f"target < {WARM_TARGET_MS:.0f} ms)",
            f"  warm, REST blocking invoke: total {self.warm_rest_total_ms:8.2f} ms, overhead "
            f"{self.warm_rest_overhead_ms:6.2f} ms",
            f"  cold start: total {self.cold_total_ms:8.1f} ms (/init {self.cold_init_ms:.1f} ms), "
            f"overhead {self.cold_overhead_ms:.1f} ms "
            f"({mark(self.cold_total_ms < COLD_TARGET_MS)} target < {COLD_TARGET_MS:.0f} ms)",
            f"  warm 3-action sequence: {self.sequence3_total_ms:8.2f} ms "
            f"(published OpenWhisk figure: {PUBLISHED_SEQUENCE_MS / 1000:.1f} s)",
            f"  vs {VM_START_S:.0f} s per VM start: {self.vm_ratio:,.0f}x faster; "
            f"vs ~{DOCKER_START_S:.0f} s per Docker start: {self.docker_ratio:,.0f}x faster",
        ]


def run_bench(runs: int = 50, cold_runs: int | None = None) -> BenchFigures:
    cold_runs = cold_runs or max(3, min(runs // 5, 10))
    with tempfile.TemporaryDirectory(prefix="qmroct-bench-") as tmp:
        root = Path(tmp)
        folder = root / "functions" / "compute"
        folder.mkdir(parents=True)
        (folder / "__main__.py").write_text(textwrap.dedent(_ACTION), encoding="utf-8")
        (root / "manifest.yaml").write_text(_MANIFEST, encoding="utf-8")
        with EmbeddedWhisk(root / "manifest.yaml", root / "home", {}) as whisk:
            whisk.invoke("compute")  # warm the container
            warm, compute = [], []
            for i in range(runs):
                t0 = time.perf_counter()
                record = whisk.invoke("compute", {"seed": i})
                warm.append((time.perf_counter() - t0) * 1000)
                compute.append(record.response.result["compute_ms"])
            client = OpenWhiskClient(whisk.api_host, whisk.auth)
            rest, rest_compute = [], []
            for i in range(runs):
                t0 = time.perf_counter()
                result = client.invoke("bench/compute", {"seed": i}, blocking=True, result=True)
                rest.append((time.perf_counter() - t0) * 1000)
                rest_compute.append(result["compute_ms"])
            sequence = []
            for i in range(runs):
                t0 = time.perf_counter()
                whisk.invoke("trio", {"seed": i})
                sequence.append((time.perf_counter() - t0) * 1000)
            cold, init, cold_compute = [], [], []
            for i in range(cold_runs):
                whisk.controller.put_action("bench/compute", ActionPut())
                t0 = time.perf_counter()
                record = whisk.invoke("compute", {"seed": i})
                cold.append((time.perf_counter() - t0) * 1000)
                init.append(float(record.annotation("initTime", 0)))
                cold_compute.append(record.response.result["compute_ms"])
    med = statistics.median
    return BenchFigures(
        runs=runs,
        cold_runs=cold_runs,
        warm_total_ms=med(warm),
        warm_compute_ms=med(compute),
        warm_overhead_ms=med(w - c for w, c in zip(warm, compute, strict=True)),
        warm_rest_total_ms=med(rest),
        warm_rest_overhead_ms=med(r - c for r, c in zip(rest, rest_compute, strict=True)),
        cold_total_ms=med(cold),
        cold_init_ms=med(init),
        cold_overhead_ms=med(c - k for c, k in zip(cold, cold_compute, strict=True)),
        sequence3_total_ms=med(sequence),
    )

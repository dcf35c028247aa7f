"""What one activation used: CPU time, peak resident memory, bytes read and written.

A real invoker reads these from the container's cgroup; here the container is a process tree
(the proxy, a sandbox wrapper if any, and whatever the action starts), read from /proc before
and after /run:

- CPU: user+system time of every process in the tree, with the time of children they have
  already reaped (``/proc/<pid>/stat`` fields utime, stime, cutime, cstime).
- Peak memory: ``VmHWM`` of each process (``/proc/<pid>/status``), reset before the run by
  writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux 4.0+, proc(5)), summed over the tree: an
  upper bound when the processes peak at different moments.
- Bytes: ``rchar`` and ``wchar`` of ``/proc/<pid>/io``: what the tree passed to read and write
  system calls (files, pipes, logs). The kernel does not count socket traffic sent with send
  and received with recv there, so a scan fetched by presigned URL is not in these figures;
  the monitor's and the object store's figures carry the network side.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Snapshot(BaseModel):
    cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    pids: list[int] = []


class Usage(BaseModel):
    """One activation's use, as its record's annotations carry it."""

    cpu_ms: int
    peak_memory_bytes: int
    read_bytes: int
    write_bytes: int

    def annotations(self) -> dict[str, int]:
        # camelCase beside OpenWhisk's own waitTime and initTime.
        return {
            "cpuTime": self.cpu_ms,
            "peakMemory": self.peak_memory_bytes,
            "bytesRead": self.read_bytes,
            "bytesWritten": self.write_bytes,
        }


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants, from ``/proc/<pid>/task/<tid>/children`` (proc(5),
    Linux 3.5+): a few reads per process of the tree, where listing every process on the
    machine to find the children (what psutil does) costs milliseconds per activation."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue  # gone
        out.append(p)
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
    return out


_tree = tree_pids


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and the children they have reaped."""
    return sum(_cpu_s(p) for p in tree_pids(pid))


def _io(pid: int) -> tuple[int, int]:
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0, 0
    vals = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return int(vals.get("rchar", 0)), int(vals.get("wchar", 0))


def _hwm_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def before_run(pid: int) -> Snapshot:
    """Reset the tree's peak-memory marks and read its counters."""
    pids = _tree(pid)
    cpu = 0.0
    rd = wr = 0
    for p in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")
        cpu += _cpu_s(p)
        r, w = _io(p)
        rd, wr = rd + r, wr + w
    return Snapshot(cpu_s=cpu, read_bytes=rd, write_bytes=wr, pids=pids)


def after_run(pid: int, before: Snapshot) -> Usage:
    """The tree's use since :func:`before_run`. Processes that started during the run count
    in full; the counters of those that ended and were reaped are in their parent's."""
    pids = _tree(pid)
    cpu = 0.0
    rd = wr = peak = 0
    for p in pids:
        cpu += _cpu_s(p)
        r, w = _io(p)
        rd, wr = rd + r, wr + w
        peak += _hwm_bytes(p)
    return Usage(
        cpu_ms=max(0, round((cpu - before.cpu_s) * 1000)),
        peak_memory_bytes=peak,
        read_bytes=max(0, rd - before.read_bytes),
        write_bytes=max(0, wr - before.write_bytes),
    )


class UsageRollup(BaseModel):
    """The activations of one action and version, summed up."""

    action: str
    version: str
    activations: int
    cold: int
    cpu_ms_p50: float
    cpu_ms_total: int
    peak_memory_mb_p50: float
    peak_memory_mb_max: float
    wait_ms_p50: float
    init_ms_p50: float | None
    run_ms_p50: float
    run_ms_p95: float
    bytes_read_total: int
    bytes_written_total: int


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    if n == 0:
        return 0.0
    return ys[n // 2] if n % 2 else (ys[n // 2 - 1] + ys[n // 2]) / 2


def rollup(records: list[Any]) -> list[UsageRollup]:
    """Per action and version: counts, CPU, peak memory, wait, init and run times, bytes.

    A measure action's version is the measure version in its own result (``version``); other
    actions are grouped by their OpenWhisk entity version. Records without resource
    annotations (from before they were kept) count in ``activations`` only.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        result = r.response.result if isinstance(r.response.result, dict) else {}
        version = str(result.get("version") or r.version)
        groups.setdefault((r.name, version), []).append(r)
    out = []
    for (name, version), recs in sorted(groups.items()):

        def vals(key: str, rs: list[Any] = recs) -> list[float]:
            return [float(v) for r in rs if isinstance(v := r.annotation(key), int | float)]

        cpu, peak, run = vals("cpuTime"), vals("peakMemory"), vals("runTime")
        init = vals("initTime")
        ordered = sorted(run)
        p95 = (
            ordered[max(0, min(len(ordered) - 1, -(-95 * len(ordered) // 100) - 1))] if run else 0.0
        )
        out.append(
            UsageRollup(
                action=name,
                version=version,
                activations=len(recs),
                cold=len(init),
                cpu_ms_p50=_median(cpu),
                cpu_ms_total=int(sum(cpu)),
                peak_memory_mb_p50=round(_median(peak) / 2**20, 1),
                peak_memory_mb_max=round(max(peak, default=0.0) / 2**20, 1),
                wait_ms_p50=_median(vals("waitTime")),
                init_ms_p50=_median(init) if init else None,
                run_ms_p50=_median(run),
                run_ms_p95=p95,
                bytes_read_total=int(sum(vals("bytesRead"))),
                bytes_written_total=int(sum(vals("bytesWritten"))),
            )
        )
    return out


def rollup_lines(rows: list[UsageRollup]) -> list[str]:
    head = (
        f"{'action':28s} {'version':10s} {'n':>5s} {'cold':>4s} {'cpu ms p50':>10s} "
        f"{'cpu s total':>11s} {'peak MB p50':>11s} {'max':>6s} {'wait p50':>8s} "
        f"{'init p50':>8s} {'run p50':>8s} {'run p95':>8s}"
    )
    lines = [head]
    for u in rows:
        init = f"{u.init_ms_p50:.0f}" if u.init_ms_p50 is not None else "-"
        lines.append(
            f"{u.action[:28]:28s} {u.version[:10]:10s} {u.activations:5d} {u.cold:4d} "
            f"{u.cpu_ms_p50:10.0f} {u.cpu_ms_total / 1000:11.1f} {u.peak_memory_mb_p50:11.0f} "
            f"{u.peak_memory_mb_max:6.0f} {u.wait_ms_p50:8.0f} {init:>8s} {u.run_ms_p50:8.0f} "
            f"{u.run_ms_p95:8.0f}"
        )
    return lines

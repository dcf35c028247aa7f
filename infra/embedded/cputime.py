"""CPU seconds used by this process and everything it started, for the benchmarks.

Wall time on a shared 2-core machine says more about the neighbours than about qmroct, so the
benchmarks also report CPU. ``getrusage(RUSAGE_CHILDREN)`` only counts children that have
ended and been waited for; the embedded runtime's containers live on, so their CPU is read from
``/proc/<pid>/stat`` while they run (proc(5): fields 14-17 are utime, stime, cutime, cstime in
clock ticks). A child reaped between two readings moves from the live sum to the rusage sum, so
the total stays consistent.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return raw[raw.rfind(")") + 2 :].split()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one running process; 0 once it is gone."""
    f = _stat_fields(str(pid))
    return sum(int(x) for x in f[11:13]) / _TICK if f and len(f) >= 13 else 0.0


def live_descendants_cpu_s(root: int | None = None) -> float:
    """CPU seconds of the running descendants of ``root`` (and of their reaped children)."""
    root = os.getpid() if root is None else root
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    parent: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        f = _stat_fields(entry.name)
        if f is None or len(f) < 15:
            continue
        # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
        pid = int(entry.name)
        parent[pid] = int(f[1])
        times[pid] = sum(int(x) for x in f[11:15]) / _TICK
    total = 0.0
    for pid, t in times.items():
        p = parent.get(pid)
        while p is not None and p > 1:
            if p == root:
                total += t
                break
            p = parent.get(p)
    return total


def tree_cpu_s() -> float:
    """User plus system CPU seconds of this process, its ended children and its live ones."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime + live_descendants_cpu_s()


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each live thread of this process, by thread id."""
    out: dict[int, float] = {}
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        f = _stat_fields(f"self/task/{task.name}")
        if f and len(f) >= 13:
            out[int(task.name)] = sum(int(x) for x in f[11:13]) / _TICK
    return out


def own_cpu_s() -> tuple[float, float]:
    """(this process's CPU, its ended and reaped children's CPU), in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, ended.ru_utime + ended.ru_stime

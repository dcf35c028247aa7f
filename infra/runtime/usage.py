"""What one activation used: CPU time, peak resident memory, bytes read and written.

A real invoker reads these from the container's cgroup; here the container is a process tree
(the proxy, a sandbox wrapper if any, and whatever the action starts), read from /proc before
and after /run:

- CPU: user+system time of every process in the tree, with the time of children they have
  already reaped (``/proc/<pid>/stat`` fields utime, stime, cutime, cstime).
- Peak memory: ``VmHWM`` of each process (``/proc/<pid>/status``), reset before the run by
  writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux 4.0+, proc(5)), summed over the tree: an
  upper bound when the processes peak at different moments.
- Bytes: ``rchar`` and ``wchar`` of ``/proc/<pid>/io``: every read and write system call,
  files and sockets alike, so a scan fetched by presigned URL counts as read.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil
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


def _tree(pid: int) -> list[int]:
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS


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

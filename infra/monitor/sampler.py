"""Which processes make up each component of a running stack, and what they use.

A component is a set of processes with one label: ``stack`` (the `qmroct up` process: REST
API, object store, event queue and alarms run as its threads), ``action:<name>`` (the warm
containers of one action, the scheduler among them), ``postgresql`` (every server process of
the ledger's cluster), ``web`` (a separate `qmroct web` process). Processes are found again at
every tick, so containers that start and stop between ticks are counted from the tick they are
seen; a process's CPU is counted from its first sample, so a new container never shows the
CPU it used before it was seen as a spike.

CPU is per-process user+system time from the kernel (psutil reads /proc/<pid>/stat), so a
component at 100 % uses one core. Memory is the sum of resident set sizes (shared pages of
forked processes count once per process, as ``docker stats`` counts per container). I/O is
the bytes each process asked the kernel to read and write (/proc/<pid>/io ``rchar`` and
``wchar``): files, pipes, and sockets written with write or read with read (the object
store's sendfile and recv traffic is not counted by the kernel there).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
from pydantic import BaseModel, Field

# The container proxy names its action on its command line (``--action NAME``); older
# containers without it are still counted, as ``action:unknown``.
_ACTION_FLAG = "--action"


class Component(BaseModel):
    """A label and the processes it had at one tick."""

    name: str
    pids: list[int] = Field(default_factory=list)


class ComponentSample(BaseModel):
    """One component at one tick. Rates are over the interval since the previous tick."""

    t: float = Field(description="UNIX time of the sample, seconds")
    component: str
    processes: int
    cpu_percent: float = Field(description="CPU time per wall time, 100 = one core")
    cpu_seconds_total: float = Field(description="CPU seconds since the monitor started")
    rss_bytes: int
    read_bytes_per_s: float
    write_bytes_per_s: float
    read_bytes_total: int
    write_bytes_total: int


def _stack_pid(home: Path) -> int | None:
    info = home / "stack.json"
    try:
        pid = int(json.loads(info.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if psutil.pid_exists(pid) else None


def _label_for(proc: psutil.Process) -> str | None:
    """A label for one process, or None if it belongs to no component."""
    try:
        cmd = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if name in ("postgres", "postmaster"):
        return "postgresql"
    if name == "bwrap":  # a container's sandbox launcher (runtime/sandbox.py): count the proxy
        return None
    joined = " ".join(cmd)
    # The proxy script is an argument of its own (``python -P .../runtime/proxy.py ...``).
    if any(Path(a).name == "proxy.py" for a in cmd):
        if _ACTION_FLAG in cmd:
            i = cmd.index(_ACTION_FLAG)
            if i + 1 < len(cmd):
                return f"action:{cmd[i + 1]}"
        return "action:unknown"
    if "qmroct" in joined and " web" in joined:
        return "web"
    return None


def _stack_roots() -> list[int]:
    """Processes that run an embedded stack: the parents of container proxies (``qmroct up``,
    ``qmroct bench paper``, a test), found without knowing their home folder."""
    roots: set[int] = set()
    for proc in psutil.process_iter():
        label = _label_for(proc)
        if label is None or not label.startswith("action:"):
            continue
        try:
            parent = proc.parent()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        # Containers may sit under a sandbox wrapper: climb past what is not Python.
        while parent is not None and "python" not in parent.name().lower():
            parent = parent.parent()
        if parent is not None:
            roots.add(parent.pid)
    return sorted(roots)


def discover(home: Path | None = None, extra: dict[str, int] | None = None) -> list[Component]:
    """The components present now.

    ``extra`` (label to pid) names what to watch: each pid and its descendants, containers
    under their action's label. Without it: the stack whose ``stack.json`` is in ``home`` (or,
    without a home, every process that runs containers) and its descendants, plus every
    PostgreSQL process on the machine and a separate ``qmroct web``. The monitor's own process
    is never counted.
    """
    groups: dict[str, set[int]] = defaultdict(set)
    seen: set[int] = {os.getpid()}

    def add_tree(label: str, pid: int) -> None:
        try:
            children = psutil.Process(pid).children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return
        for proc in [psutil.Process(pid), *children]:
            if proc.pid in seen:
                continue
            own = _label_for(proc) if proc.pid != pid else None
            groups[own or label].add(proc.pid)
            seen.add(proc.pid)

    for label, pid in (extra or {}).items():
        add_tree(label, pid)
    if extra:
        return [Component(name=k, pids=sorted(v)) for k, v in sorted(groups.items())]
    roots = _stack_roots() if home is None else [p for p in [_stack_pid(home)] if p is not None]
    for pid in roots:
        add_tree("stack", pid)
    for proc in psutil.process_iter():
        if proc.pid not in seen and _label_for(proc) in ("postgresql", "web"):
            groups[str(_label_for(proc))].add(proc.pid)
    return [Component(name=k, pids=sorted(v)) for k, v in sorted(groups.items())]


class _ProcState(BaseModel):
    cpu: float
    read: int
    write: int


class Sampler:
    """Samples components; call :meth:`sample` once per tick.

    ``find`` returns the components of this tick (by default :func:`discover` on ``home``).
    """

    def __init__(
        self,
        home: Path | None = None,
        extra: dict[str, int] | None = None,
        find: Callable[[], list[Component]] | None = None,
    ) -> None:
        self._find = find or (lambda: discover(home, extra))
        self._prev: dict[int, _ProcState] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self._last_t: float | None = None

    def _proc(self, pid: int) -> psutil.Process:
        # One Process object per pid keeps psutil's create-time check against pid reuse.
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
        return proc

    def sample(self) -> list[ComponentSample]:
        now = time.time()
        dt = (now - self._last_t) if self._last_t is not None else 0.0
        self._last_t = now
        out: list[ComponentSample] = []
        current: dict[int, _ProcState] = {}
        for comp in self._find():
            cpu_d = read_d = write_d = 0.0
            rss = 0
            alive = 0
            for pid in comp.pids:
                try:
                    proc = self._proc(pid)
                    with proc.oneshot():
                        times = proc.cpu_times()
                        mem = proc.memory_info()
                        try:
                            io = proc.io_counters()
                            rd, wr = io.read_chars, io.write_chars
                        except (psutil.AccessDenied, AttributeError):
                            rd = wr = 0
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    self._procs.pop(pid, None)
                    continue
                state = _ProcState(cpu=times.user + times.system, read=rd, write=wr)
                current[pid] = state
                alive += 1
                rss += mem.rss
                prev = self._prev.get(pid)
                if prev is not None:
                    cpu_d += max(0.0, state.cpu - prev.cpu)
                    read_d += max(0, state.read - prev.read)
                    write_d += max(0, state.write - prev.write)
            totals = self._totals[comp.name]
            totals[0] += cpu_d
            totals[1] += read_d
            totals[2] += write_d
            out.append(
                ComponentSample(
                    t=round(now, 3),
                    component=comp.name,
                    processes=alive,
                    cpu_percent=round(100.0 * cpu_d / dt, 1) if dt > 0 else 0.0,
                    cpu_seconds_total=round(totals[0], 3),
                    rss_bytes=rss,
                    read_bytes_per_s=round(read_d / dt, 1) if dt > 0 else 0.0,
                    write_bytes_per_s=round(write_d / dt, 1) if dt > 0 else 0.0,
                    read_bytes_total=int(totals[1]),
                    write_bytes_total=int(totals[2]),
                )
            )
        self._prev = current
        for pid in list(self._procs):
            if pid not in current:
                del self._procs[pid]
        return out


def run(
    sampler: Sampler,
    sinks: Iterable[Callable[[list[ComponentSample]], None]],
    interval_s: float = 1.0,
    duration_s: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Sample every ``interval_s`` on a fixed schedule (no drift) until ``duration_s`` passed
    or ``stop()`` says so; each tick's samples go to every sink. Returns the number of ticks."""
    sinks = list(sinks)
    start = time.monotonic()
    ticks = 0
    while True:
        samples = sampler.sample()
        ticks += 1
        for sink in sinks:
            sink(samples)
        if stop is not None and stop():
            return ticks
        next_at = start + ticks * interval_s
        if duration_s is not None and next_at - start > duration_s:
            return ticks
        time.sleep(max(0.0, next_at - time.monotonic()))

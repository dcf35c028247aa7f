"""Where a benchmark's CPU goes: per action (start-up and /init apart from /run) and per part of
the stack's own process.

A :class:`CpuSampler` runs beside a timed benchmark. It reads:

- each container's CPU (its process tree, from /proc; a container killed during the run, e.g.
  evicted, keeps what it had used when killed): a container started during the run counts
  from zero, one already warm from its CPU at the start. The invoker's containers are listed
  every ``interval_s``; one started and destroyed between two listings is missed;
- the activation records of the run: their ``cpuTime`` (the /run of each activation, as the
  invoker measures it), ``initTime`` and cold starts. A container's CPU beyond its activations'
  ``cpuTime`` is its start-up: the interpreter, the imports at /init, the warm-up, and whatever
  it did between runs;
- the stack process's threads by name (controller activation threads, log readers, event
  delivery, alarms), and the CPU counters of its HTTP servers' request threads (object store,
  REST API) and of the gateway's upload threads, which live too short to be sampled.

What the stack process used beyond the named parts is ``other``; the parts add up to the
total. The total is the pipeline's CPU: unlike the CPU of this process's tree, it keeps what
containers destroyed during the run had used (a sandboxed action process dies unreaped by
this one, and a tree reading loses it), and it leaves out the sampler's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pydantic import BaseModel
from qmroct.embedded.cputime import own_cpu_s, thread_cpu_s


class Box(Protocol):
    """What the sampler needs of a container (qmroct.runtime.container.Container)."""

    id: str
    key: str

    def cpu_s(self) -> float: ...


#: The live containers.
ContainerList = Callable[[], Iterable[Box]]


class ActionCpu(BaseModel):
    """One action's containers over the run."""

    action: str
    containers: int
    activations: int
    cold_starts: int
    cpu_s: float
    run_cpu_s: float  # the sum of its activations' cpuTime
    init_cpu_s: float  # cpu_s - run_cpu_s: process start, /init, warm-up, between runs
    init_wall_s: float  # the sum of its activations' initTime


class CpuBreakdown(BaseModel):
    total_cpu_s: float
    actions: list[ActionCpu]
    # The stack's own process, part by part (the gateway's upload threads included).
    stack: dict[str, float]
    # Processes that ended during the run (a container destroyed, a helper), reaped by this one.
    ended_s: float

    # The sampler's own CPU (in this process, left out of the total).
    sampler_s: float = 0.0

    @property
    def actions_cpu_s(self) -> float:
        return round(sum(a.cpu_s for a in self.actions), 2)

    @property
    def stack_cpu_s(self) -> float:
        return round(sum(self.stack.values()), 2)

    def _compute(self) -> list[ActionCpu]:
        return [a for a in self.actions if a.action.startswith(("measure-", "derive-"))]

    @property
    def runs_cpu_s(self) -> float:
        """The measure and derive activations' runs: the work a process pool does too."""
        return round(sum(a.run_cpu_s for a in self._compute()), 2)

    @property
    def startups_cpu_s(self) -> float:
        """The measure and derive containers' start-ups."""
        return round(sum(a.init_cpu_s for a in self._compute()), 2)

    @property
    def orchestration_cpu_s(self) -> float:
        """Every other action (events, scheduler, record-result, XNAT)."""
        compute = {a.action for a in self._compute()}
        return round(sum(a.cpu_s for a in self.actions if a.action not in compute), 2)

    def lines(self) -> list[str]:
        out = [
            f"where it went  measure and derive runs {self.runs_cpu_s:.1f} s; their containers'"
            f" start-ups {self.startups_cpu_s:.1f} s; orchestration actions"
            f" {self.orchestration_cpu_s:.1f} s; stack process {self.stack_cpu_s:.1f} s",
            f"cpu breakdown {self.total_cpu_s:.1f} s: actions {self.actions_cpu_s:.1f} s, "
            f"stack process {self.stack_cpu_s:.1f} s, ended processes {self.ended_s:.1f} s "
            f"(the sampler's own {self.sampler_s:.1f} s left out)",
            f"  {'action':<24}{'cpu s':>8}{'init s':>8}{'run s':>8}{'acts':>6}{'cold':>6}"
            f"{'init wall s':>12}",
        ]
        for a in sorted(self.actions, key=lambda x: -x.cpu_s):
            out.append(
                f"  {a.action:<24}{a.cpu_s:8.1f}{a.init_cpu_s:8.1f}{a.run_cpu_s:8.1f}"
                f"{a.activations:6d}{a.cold_starts:6d}{a.init_wall_s:12.1f}"
            )
        out.append(f"  {'stack process':<24}{'cpu s':>8}")
        for name, cpu in sorted(self.stack.items(), key=lambda kv: -kv[1]):
            out.append(f"  {name:<24}{cpu:8.1f}")
        return out


def _thread_part(name: str) -> str | None:
    """The stack part a thread of this process belongs to; None when counted otherwise."""
    if "process_request_thread" in name or name.startswith("upload"):
        return None  # the servers' and the uploader's own counters hold these
    if name.startswith("activation"):
        return "activation threads"
    if "(_pump)" in name:
        return "container log readers"
    if name.startswith("webhook-"):
        return "event delivery"
    if name in ("alarm", "reaper"):
        return "alarms, reaper"
    if name == "MainThread":
        return "bench main thread"
    if name == "cpu-sampler":
        return None  # measured apart, left out of the total
    return "other threads"


class CpuSampler:
    """Start before the timed part, :meth:`stop` after it; see the module docstring."""

    def __init__(
        self,
        containers: ContainerList,
        counters: dict[str, Callable[[], float]],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._containers = containers
        self._counters = counters
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._base: dict[str, float] = {}
        self._seen: dict[str, Box] = {}
        self._thread_base: dict[int, float] = {}
        self._counter_base: dict[str, float] = {}
        self._own0 = (0.0, 0.0)
        self._sampler_s = 0.0
        self.started_ms = 0

    def start(self) -> CpuSampler:
        self.started_ms = int(time.time() * 1000)
        self._own0 = own_cpu_s()
        self._counter_base = {k: f() for k, f in self._counters.items()}
        self._thread_base = thread_cpu_s()
        for box in self._containers():
            self._base[box.id] = box.cpu_s()
            self._seen[box.id] = box
        self._thread.start()
        return self

    def _list(self) -> None:
        with self._lock:
            for box in self._containers():
                self._seen.setdefault(box.id, box)

    def _loop(self) -> None:
        t0 = time.thread_time()
        while not self._stop.wait(self._interval_s):
            self._list()
        self._sampler_s = time.thread_time() - t0

    def stop(
        self, records: Iterable[Any], *, extra: dict[str, float] | None = None
    ) -> CpuBreakdown:
        """The breakdown; ``records`` are the run's activation records (any with a
        ``cpuTime`` annotation count), ``extra`` in-process parts measured by the caller."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._list()
        own1 = own_cpu_s()
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
        per_action: dict[str, dict[str, Any]] = {}
        with self._lock:
            for cid, box in self._seen.items():
                action = box.key.split("@")[0].rsplit("/", 1)[-1]
                a = per_action.setdefault(action, {"cpu": 0.0, "containers": 0})
                a["cpu"] += box.cpu_s() - self._base.get(cid, 0.0)
                a["containers"] += 1
        # Threads by name at the end: the long-lived ones (activation pool, log readers of
        # live containers, event delivery, alarms); the rest falls into "other".
        stack: dict[str, float] = {}
        for tid, cpu in thread_cpu_s().items():
            part = _thread_part(names.get(tid, "?"))
            if part is not None:
                stack[part] = stack.get(part, 0.0) + cpu - self._thread_base.get(tid, 0.0)
        for name, f in self._counters.items():
            stack[name] = f() - self._counter_base[name]
        stack.update(extra or {})
        own = own1[0] - self._own0[0] - self._sampler_s
        stack["other (ended threads)"] = own - sum(stack.values())
        runs: dict[str, dict[str, float]] = {}
        for r in records:
            cpu_ms = r.annotation("cpuTime")
            if cpu_ms is None:
                continue
            s = runs.setdefault(r.name, {"n": 0, "cpu": 0.0, "cold": 0, "init": 0.0})
            s["n"] += 1
            s["cpu"] += cpu_ms / 1000
            init = r.annotation("initTime")
            if init is not None:
                s["cold"] += 1
                s["init"] += init / 1000
        actions = []
        for action in sorted(set(per_action) | set(runs)):
            c = per_action.get(action, {"cpu": 0.0, "containers": 0})
            s = runs.get(action, {"n": 0, "cpu": 0.0, "cold": 0, "init": 0.0})
            actions.append(
                ActionCpu(
                    action=action,
                    containers=int(c["containers"]),
                    activations=int(s["n"]),
                    cold_starts=int(s["cold"]),
                    cpu_s=round(c["cpu"], 2),
                    run_cpu_s=round(s["cpu"], 2),
                    init_cpu_s=round(c["cpu"] - s["cpu"], 2),
                    init_wall_s=round(s["init"], 2),
                )
            )
        ended = own1[1] - self._own0[1]
        return CpuBreakdown(
            total_cpu_s=round(own + ended + sum(a.cpu_s for a in actions), 2),
            actions=actions,
            stack={k: round(v, 2) for k, v in stack.items()},
            ended_s=round(ended, 2),
            sampler_s=round(self._sampler_s, 2),
        )

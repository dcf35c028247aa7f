"""The invoker's container pool: warm reuse, the user-memory cap, and the idle reaper.

Containers are keyed by action and version, so an update forces a cold start. A container
serves one activation at a time (Python's per-container concurrency is 1). When no warm
container is free and the memory cap is reached, idle containers of other actions are evicted
(least recently used first); when everything is busy the request is refused with 429, or, for a
component of an admitted sequence, waits for room.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from qmroct.errors import QmroctError
from qmroct.runtime import messages
from qmroct.runtime.container import Container


class Throttled(QmroctError):
    """No room for another container: every slot under the user-memory cap is busy."""

    def __init__(self, count: int, allowed: int) -> None:
        self.count = count
        self.allowed = allowed
        super().__init__(messages.too_many_concurrent(count, allowed))


class Lease:
    """A claim on one container: warm (``container`` set) or memory reserved for a cold one."""

    def __init__(self, key: str, memory_mb: int, container: Container | None) -> None:
        self.key = key
        self.memory_mb = memory_mb
        self.container = container

    @property
    def cold(self) -> bool:
        return self.container is None


class Invoker:
    def __init__(
        self,
        workdir: Path,
        *,
        user_memory_mb: int = 2048,
        idle_timeout_s: float = 600.0,
        container_env: dict[str, str] | None = None,
        hidden: list[Path] | None = None,
        sandbox: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        # Containers run under bubblewrap (``sandbox``, see sandbox.py) with ``hidden`` empty.
        self.hidden = list(hidden or [])
        self.sandbox = sandbox
        self.user_memory_mb = user_memory_mb
        self.idle_timeout_s = idle_timeout_s
        self.container_env = container_env or {}
        self._cond = threading.Condition()
        self._containers: list[Container] = []
        self._reserved_mb = 0
        self._starting = 0
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()

    # -- accounting -------------------------------------------------------------------------
    def _used_mb(self) -> int:
        return sum(c.memory_mb for c in self._containers) + self._reserved_mb

    def _busy(self) -> int:
        return sum(1 for c in self._containers if c.busy) + self._starting

    def in_flight(self) -> int:
        """Activations holding a container, or starting one."""
        with self._cond:
            return self._busy()

    def containers(self) -> list[Container]:
        with self._cond:
            return list(self._containers)

    def acquire(self, key: str, memory_mb: int, *, wait_s: float | None = None) -> Lease:
        """Claim a warm container of ``key`` or room for a new one.

        Raises Throttled when the cap is reached and nothing idle can be evicted, unless
        ``wait_s`` is given: then it waits up to that long for room.
        """
        deadline = None if wait_s is None else time.monotonic() + wait_s
        evicted: list[Container] = []
        try:
            with self._cond:
                while True:
                    idle = [c for c in self._containers if c.key == key and not c.busy]
                    if idle:
                        c = max(idle, key=lambda x: x.last_used)
                        c.busy = True
                        return Lease(key, memory_mb, c)
                    while self._used_mb() + memory_mb > self.user_memory_mb:
                        victims = [c for c in self._containers if not c.busy]
                        if not victims:
                            break
                        victim = min(victims, key=lambda x: x.last_used)
                        self._containers.remove(victim)
                        evicted.append(victim)
                    if self._used_mb() + memory_mb <= self.user_memory_mb:
                        self._reserved_mb += memory_mb
                        self._starting += 1
                        return Lease(key, memory_mb, None)
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is None or left <= 0:
                        raise Throttled(self._busy(), max(1, self.user_memory_mb // memory_mb))
                    self._cond.wait(left)
        finally:
            for victim in evicted:
                victim.destroy()

    def start(self, lease: Lease, granted: list[Path] | None = None) -> Container:
        """Start the container a cold lease reserved room for (the caller handles errors);
        ``granted`` files stay visible to it inside the sandbox."""
        container = Container(
            lease.key,
            lease.memory_mb,
            self.workdir,
            self.container_env,
            sandbox=self.sandbox,
            hidden=self.hidden,
            granted=granted,
        )
        try:
            container.start()
        except BaseException:
            with self._cond:
                self._reserved_mb -= lease.memory_mb
                self._starting -= 1
                self._cond.notify_all()
            raise
        container.busy = True
        with self._cond:
            self._reserved_mb -= lease.memory_mb
            self._starting -= 1
            self._containers.append(container)
        lease.container = container
        return container

    def release(self, container: Container, *, destroy: bool = False) -> None:
        with self._cond:
            container.busy = False
            container.last_used = time.monotonic()
            if destroy or not container.alive:
                if container in self._containers:
                    self._containers.remove(container)
                destroy = True
            self._cond.notify_all()
        if destroy:
            container.destroy()

    def release_lease(self, lease: Lease) -> None:
        """Give back a lease that will not be used."""
        if lease.container is not None:
            self.release(lease.container)
            return
        with self._cond:
            self._reserved_mb -= lease.memory_mb
            self._starting -= 1
            self._cond.notify_all()

    def retire(self, key_prefix: str) -> None:
        """Destroy idle containers of an action's older versions (busy ones go on release)."""
        with self._cond:
            stale = [c for c in self._containers if c.key.startswith(key_prefix) and not c.busy]
            for c in stale:
                self._containers.remove(c)
            self._cond.notify_all()
        for c in stale:
            c.destroy()

    # -- idle reaping -------------------------------------------------------------------------
    def reap(self) -> int:
        """Destroy containers idle for longer than ``idle_timeout_s``; returns how many."""
        now = time.monotonic()
        with self._cond:
            old = [
                c
                for c in self._containers
                if not c.busy and now - c.last_used > self.idle_timeout_s
            ]
            for c in old:
                self._containers.remove(c)
            self._cond.notify_all()
        for c in old:
            c.destroy()
        return len(old)

    def _reap_loop(self) -> None:
        period = min(max(self.idle_timeout_s / 4, 0.2), 30.0)
        while not self._stop.wait(period):
            self.reap()

    def shutdown(self) -> None:
        self._stop.set()
        with self._cond:
            everything = list(self._containers)
            self._containers.clear()
            self._cond.notify_all()
        for c in everything:
            c.destroy()

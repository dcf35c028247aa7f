"""Network profiles for the replay benchmark, and the ways to impose them.

The kernel's way is ``tc qdisc ... netem delay D J rate R`` (tc-netem(8)) on a veth pair into
a network namespace. Kernels built without the netem scheduler answer "Specified qdisc kind is
unknown" (this project's 2-core CI machines among them), so the benchmark shapes in user space:
every browser connection goes through a TCP relay on loopback that holds each chunk for the
delay plus a jitter draw and serialises it at the profile's rate, keeping the byte order as TCP
would, and counts the bytes each way. :func:`netem_available` tells whether the kernel could do
it; the benchmark's output says what it found and that the relay did the shaping.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import deque

from pydantic import BaseModel, Field


class NetProfile(BaseModel):
    """One-way delay and jitter, and the bottleneck rate, applied in each direction."""

    name: str
    delay_ms: float = Field(ge=0)
    jitter_ms: float = Field(ge=0)
    rate_mbit: float = Field(gt=0)


# Typical figures, not measurements of one site: a switched hospital LAN, a site-to-site VPN
# within a country, and a home broadband WAN link. Override with --profile NAME:D:J:R.
PROFILES: dict[str, NetProfile] = {
    "lan": NetProfile(name="lan", delay_ms=0.0, jitter_ms=0.0, rate_mbit=1000.0),
    "vpn": NetProfile(name="vpn", delay_ms=15.0, jitter_ms=3.0, rate_mbit=50.0),
    "wan": NetProfile(name="wan", delay_ms=40.0, jitter_ms=8.0, rate_mbit=20.0),
}


def parse_profile(text: str) -> NetProfile:
    """``lan`` / ``vpn`` / ``wan``, or ``NAME:DELAY_MS:JITTER_MS:RATE_MBIT``."""
    if text in PROFILES:
        return PROFILES[text]
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"{text!r}: expected lan, vpn, wan or NAME:DELAY_MS:JITTER_MS:RATE_MBIT")
    name, d, j, r = parts
    return NetProfile(name=name, delay_ms=float(d), jitter_ms=float(j), rate_mbit=float(r))


def netem_available() -> tuple[bool, str]:
    """Whether ``tc netem`` works here, tried on a throwaway veth pair; with the reason."""
    if shutil.which("tc") is None or shutil.which("ip") is None:
        return False, "tc or ip (iproute2) is not installed"
    dev = "qmn" + uuid.uuid4().hex[:8]
    try:
        add = subprocess.run(
            ["ip", "link", "add", dev, "type", "veth", "peer", "name", dev + "p"],
            capture_output=True,
            text=True,
        )
        if add.returncode != 0:
            return False, f"cannot create a veth pair: {add.stderr.strip()}"
        q = subprocess.run(
            ["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"],
            capture_output=True,
            text=True,
        )
        if q.returncode != 0:
            return False, f"tc netem: {q.stderr.strip()} (the kernel has no sch_netem)"
        return True, "tc netem on a veth pair into a network namespace"
    finally:
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


class ShapingRelay:
    """A TCP relay on 127.0.0.1 that imposes a profile on everything it carries.

    Each direction of each connection has a reader and a sender thread: the reader stamps
    every chunk with the time it may leave (after the previous chunk has been serialised at
    the profile's rate, plus the delay and a jitter draw, never before the chunk ahead of it),
    and the sender writes it then.
    """

    CHUNK = 16 * 1024

    def __init__(self, target: tuple[str, int], profile: NetProfile, seed: int = 0) -> None:
        self.target = target
        self.profile = profile
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        # Bytes carried so far: "up" from the browser to the server, "down" back.
        self.bytes = {"up": 0, "down": 0}

    def start(self) -> ShapingRelay:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def __enter__(self) -> ShapingRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _jitter_s(self) -> float:
        with self._lock:
            j = self._rng.uniform(-self.profile.jitter_ms, self.profile.jitter_ms)
        return max(0.0, self.profile.delay_ms + j) / 1000.0

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            done = threading.Semaphore(0)
            for src, dst, way in ((client, upstream, "up"), (upstream, client, "down")):
                self._pipe(src, dst, done, way)
            threading.Thread(target=self._reap, args=(client, upstream, done), daemon=True).start()

    @staticmethod
    def _reap(a: socket.socket, b: socket.socket, done: threading.Semaphore) -> None:
        done.acquire()
        done.acquire()
        a.close()
        b.close()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, done: threading.Semaphore, way: str
    ) -> None:
        queue: deque[tuple[float, bytes]] = deque()
        cond = threading.Condition()
        state = {"free_at": 0.0, "last_release": 0.0, "eof": False}
        bytes_per_s = self.profile.rate_mbit * 1e6 / 8

        def read() -> None:
            try:
                while True:
                    data = src.recv(self.CHUNK)
                    if not data:
                        break
                    with self._lock:
                        self.bytes[way] += len(data)
                    now = time.monotonic()
                    free_at = max(state["free_at"], now) + len(data) / bytes_per_s
                    state["free_at"] = free_at
                    release = max(free_at + self._jitter_s(), state["last_release"])
                    state["last_release"] = release
                    with cond:
                        queue.append((release, data))
                        cond.notify()
            except OSError:
                pass
            with cond:
                state["eof"] = True
                cond.notify()

        def send() -> None:
            try:
                while True:
                    with cond:
                        while not queue and not state["eof"]:
                            cond.wait()
                        if not queue:
                            break
                        release, data = queue.popleft()
                    wait = release - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    dst.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            done.release()

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=send, daemon=True).start()

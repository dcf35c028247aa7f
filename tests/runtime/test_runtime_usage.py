"""Per-activation use read from /proc: CPU, peak memory reset between runs, bytes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from qmroct.runtime.usage import after_run, before_run

# Runs commands from stdin: "burn S" (CPU seconds), "hold MB" (touch and free), "write N".
_WORKER = """
import sys, time, os
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "burn":
        t = time.process_time()
        while time.process_time() - t < float(arg):
            pass
    elif cmd == "hold":
        b = bytearray(int(arg) * 2**20)
        for i in range(0, len(b), 4096):
            b[i] = 1
        del b
    elif cmd == "write":
        with open(os.devnull, "wb") as f:
            f.write(b"x" * int(arg))
    print("ok", flush=True)
"""


@pytest.fixture
def worker():
    p = subprocess.Popen(
        [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def do(cmd: str) -> None:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(cmd + "\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "ok"

    yield p.pid, do
    p.kill()
    p.wait()


def test_cpu_and_bytes_of_one_run(worker) -> None:
    pid, do = worker
    snap = before_run(pid)
    do("burn 0.25")
    do("write 3000000")
    use = after_run(pid, snap)
    assert 240 <= use.cpu_ms <= 250 + 200
    assert use.write_bytes >= 3_000_000
    assert set(use.annotations()) == {"cpuTime", "peakMemory", "bytesRead", "bytesWritten"}


def test_peak_memory_is_per_run(worker) -> None:
    pid, do = worker
    snap = before_run(pid)
    do("hold 200")
    big = after_run(pid, snap)
    assert big.peak_memory_bytes >= 200 * 2**20
    # The next run allocates little: its peak must not carry the previous run's 200 MB.
    snap = before_run(pid)
    do("burn 0.01")
    small = after_run(pid, snap)
    assert small.peak_memory_bytes < big.peak_memory_bytes - 150 * 2**20


def test_a_process_that_is_gone_counts_nothing() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    snap = before_run(p.pid)
    use = after_run(p.pid, snap)
    assert (use.cpu_ms, use.peak_memory_bytes, use.read_bytes, use.write_bytes) == (0, 0, 0, 0)

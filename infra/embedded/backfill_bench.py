"""The stack of ``qmroct bench backfill``: thousands of distinct scans stored and catalogued.

Rendering a phantom costs about a third of a second, so 10,000 of them would take an hour
before the benchmark starts. A few base phantoms are rendered instead, and every bench scan is
derived from one of them: its own gain (within 3 %) and fresh noise in one 32 x 32 patch, its
own synthetic patient and visit. Each is therefore a distinct file with its own content hash,
and each goes the whole real way: written to the inbox, de-identified and uploaded by the
gateway, announced by a MinIO-format event, catalogued by ``on-image-stored``.

Every phase (writing, uploading, cataloguing, and the backfill itself) reports progress: a
live bar on a terminal, plain lines at most every few seconds in a log. The stack's home
(scans, results, activation records: gigabytes at 10,000 scans) is deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import numpy as np
from qmroct.embedded.bench import _uploader
from qmroct.embedded.stack import EmbeddedStack, StackOptions

#: Base phantoms rendered per run; every bench scan is derived from one of them.
BASE_PHANTOMS = 8
#: Seconds between plain progress lines when the output is not a terminal.
LOG_EVERY_S = 5.0


class PhaseProgress:
    """Progress of one phase: ``update(done)`` as it goes, ``finish()`` at the end.

    On a terminal it redraws one line (a bar, the count, the rate, the time left); in a log it
    writes a plain line at most every ``LOG_EVERY_S`` seconds, and one when the phase ends.
    """

    def __init__(
        self,
        phase: str,
        total: int,
        *,
        out: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.phase, self.total = phase, max(total, 0)
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.clock = clock
        self.started = clock()
        self._last_log = -LOG_EVERY_S
        self.done = 0
        self._first: tuple[float, int] | None = None  # the first update: rates count from it

    def _line(self) -> str:
        now = self.clock()
        took = now - self.started
        t0, n0 = self._first or (self.started, 0)
        rate = (self.done - n0) / (now - t0) if now > t0 and self.done > n0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f", {left:.0f} s left" if left == left and self.done < self.total else ""
        return f"{self.phase}: {self.done}/{self.total} ({rate:.1f}/s, {took:.0f} s{eta})"

    def update(self, done: int) -> None:
        self.done = min(done, self.total) if self.total else done
        if self._first is None and self.done > 0:
            # What was already done when the phase began (scans catalogued while uploading)
            # is not part of its rate.
            self._first = (self.clock(), self.done) if self.clock() - self.started < 1 else None
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            self.out.write(f"\r\033[K[{bar}] {self._line()}")
            self.out.flush()
            return
        now = self.clock()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self.out.write(self._line() + "\n")
            self.out.flush()

    def finish(self) -> None:
        self.done = self.total if self.total else self.done
        self.out.write(("\r\033[K" if self.tty else "") + self._line() + "\n")
        self.out.flush()


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks after boot (proc(5), stat field 22); None once
    the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # after the name: field 3 onwards
    return int(fields[19]) if len(fields) > 19 else None


def write_bench_scans(
    out: Path,
    n: int,
    *,
    bases: int = BASE_PHANTOMS,
    seed: int = 100,
    progress: PhaseProgress | None = None,
) -> list[Path]:
    """Write ``n`` distinct small line scans (Heyex .vol) into ``out``, derived from
    ``bases`` rendered phantoms as the module docstring says. Returns their paths."""
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    out.mkdir(parents=True, exist_ok=True)
    base = [make_phantom("line", seed=seed + b, size="small")[0] for b in range(min(bases, n))]
    paths = []
    for i in range(n):
        scan = base[i % len(base)]
        rng = np.random.default_rng([seed, i])
        pixels = scan.bscans * np.float32(rng.uniform(0.97, 1.03))
        _, h, w = pixels.shape
        z, x = int(rng.integers(0, h - 32)), int(rng.integers(0, w - 32))
        patch = pixels[:, z : z + 32, x : x + 32]
        patch += rng.normal(0.0, 0.02, patch.shape).astype(np.float32)
        np.clip(pixels, 0.0, 1.0, out=pixels)
        derived = dataclasses.replace(scan, bscans=pixels)
        p = out / f"bench_{i:06d}.vol"
        p.write_bytes(write_vol(derived, patient_id=f"BENCH{seed}-{i:06d}", visit_id=f"v{i:06d}"))
        paths.append(p)
        if progress is not None:
            progress.update(i + 1)
    return paths


def upload_and_remove(
    stack: EmbeddedStack,
    files: list[Path],
    *,
    project: str = "BENCH",
    workers: int = 2,
    progress: PhaseProgress | None = None,
) -> int:
    """Upload ``files`` through the gateway (de-identify, pseudonym, PUT), deleting each once
    it is stored, so the inbox and the store never both hold every scan. Returns how many
    were uploaded (not duplicates, not refused)."""
    up = _uploader(stack, project)
    done = uploaded = 0

    def one(path: Path) -> bool:
        outcome = up.upload_file(path)
        path.unlink(missing_ok=True)
        return outcome.status == "uploaded"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for ok in pool.map(one, files):
            done += 1
            uploaded += int(ok)
            if progress is not None:
                progress.update(done)
    return uploaded


def catalogued_count(stack: EmbeddedStack) -> int:
    ledger, _, _ = stack.require()
    row = ledger.db.query_one("SELECT COUNT(*) AS n FROM scans")
    return int(row["n"]) if row else 0


def wait_catalogued(
    stack: EmbeddedStack, n: int, timeout_s: float, *, progress: PhaseProgress | None = None
) -> None:
    """Wait until ``n`` scans are catalogued (a COUNT, not a listing: polling stays cheap)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = catalogued_count(stack)
        if progress is not None:
            progress.update(got)
        if got >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{n} scans were not catalogued within {timeout_s:.0f} s")


class BenchStack:
    """What ``qmroct bench backfill`` works with."""

    #: Seconds between two readings of the scheduling containers' CPU.
    SAMPLE_S = 1.0

    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack
        self.ledger, self.store, self.ow = stack.require()
        self.package = stack.whisk.package if stack.whisk else ""
        # The last CPU reading of every scheduling container seen, by (pid, start time).
        self._seen: dict[tuple[int, int], float] = {}
        self._seen_lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="bench-cpu", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.SAMPLE_S):
            self.scheduling_cpu()

    def close(self) -> None:
        self._stop.set()
        self._sampler.join(timeout=10)

    def scheduling_cpu(self) -> float:
        """CPU seconds of the containers that claim and start jobs (scheduler, record-result),
        read from /proc while they run (see :mod:`qmroct.embedded.cputime`). A container's
        process may be the sandbox (bubblewrap) with the action's Python below it, so its
        descendants count too.

        The runtime removes idle containers and starts new ones during a long drain, and a
        process that is gone can no longer be read: summing only the live containers lost
        their CPU, and a run's figure could even come out negative. Every container's last
        reading is kept (a thread reads them every ``SAMPLE_S``), so a removed container
        still counts, short of what it used in its last second. A container is known by its
        pid and its start time (proc(5), stat field 22), as a pid can be reused."""
        from qmroct.embedded.cputime import live_descendants_cpu_s, process_cpu_s

        whisk = self.stack.whisk
        if whisk is None:
            return 0.0
        live: dict[tuple[int, int], float] = {}
        for c in whisk.controller.invoker.containers():
            if not c.pid or c.key.split("@")[0].rsplit("/", 1)[-1] not in (
                "scheduler",
                "record-result",
            ):
                continue
            started = _start_time(c.pid)
            if started is None:
                continue  # already gone
            live[(c.pid, started)] = process_cpu_s(c.pid) + live_descendants_cpu_s(c.pid)
        with self._seen_lock:
            for key, cpu in live.items():
                self._seen[key] = max(cpu, self._seen.get(key, 0.0))
            return sum(self._seen.values())

    def next_version(self, measure: str) -> str:
        """A patch version above every version of ``measure`` the ledger knows."""
        from qmroct.measures.base import registry

        known = [m.version for m in self.ledger.catalog.measures()] if measure else []
        base = registry()[measure].version
        major, minor, patch = (int(x) for x in base.split("+")[0].split(".")[:3])
        taken = set(known)
        patch += 1
        while f"{major}.{minor}.{patch}" in taken:
            patch += 1
        return f"{major}.{minor}.{patch}"


@contextmanager
def bench_stack(
    *,
    scans: int,
    cap: int,
    home: Path | None = None,
    ledger_url: str = "",
    out: TextIO | None = None,
) -> Iterator[BenchStack]:
    """An embedded stack with ``scans`` distinct small line scans stored and catalogued, no
    measure published yet, and the scheduler bound to ``cap``; its ledger at ``ledger_url``
    (an empty database) or in SQLite. Progress of each phase goes to ``out`` (stderr)."""
    owned = home is None
    home = home or Path(tempfile.mkdtemp(prefix="qmroct-bench-"))
    opts = StackOptions(cap=cap, alarm_interval_s=1.0, ledger_url=ledger_url)
    try:
        with EmbeddedStack(home, opts) as stack:
            writing = PhaseProgress("writing", scans, out=out)
            files = write_bench_scans(home / "inbox", scans, progress=writing)
            writing.finish()
            uploading = PhaseProgress("uploading", scans, out=out)
            uploaded = upload_and_remove(stack, files, progress=uploading)
            uploading.finish()
            if uploaded != scans:
                raise RuntimeError(f"the gateway uploaded {uploaded} of {scans} bench scans")
            cat = PhaseProgress("cataloguing", scans, out=out)
            wait_catalogued(stack, scans, timeout_s=120 + scans, progress=cat)
            cat.finish()
            bench = BenchStack(stack)
            try:
                yield bench
            finally:
                bench.close()
    finally:
        # A bench home holds every scan, result and activation record: gigabytes.
        if owned:
            (out or sys.stderr).write(f"removing {home}\n")
            shutil.rmtree(home, ignore_errors=True)

"""Where samples go: a CSV time series, a Prometheus text-format endpoint, a status line."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from qmroct.monitor.sampler import ComponentSample

CSV_FIELDS = list(ComponentSample.model_fields)


class CsvSink:
    """Appends one row per component per tick and flushes, so a crash loses at most a tick
    and the file can be read while the monitor runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh: IO[str] = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=CSV_FIELDS)
        if new:
            self._writer.writeheader()

    def __call__(self, samples: list[ComponentSample]) -> None:
        for s in samples:
            self._writer.writerow(s.model_dump())
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_csv(path: Path) -> list[ComponentSample]:
    """A monitor CSV back as samples (a missing or empty file gives none)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [ComponentSample.model_validate(row) for row in csv.DictReader(fh)]


class PrometheusCollector(Collector):
    """The latest tick as Prometheus metrics, one series per component.

    Names follow Prometheus' conventions (base units, ``_total`` for counters; see
    prometheus.io/docs/practices/naming), so the standard process dashboards' queries apply:
    ``rate(qmroct_component_cpu_seconds_total[1m])`` is cores in use.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: list[ComponentSample] = []

    def __call__(self, samples: list[ComponentSample]) -> None:
        with self._lock:
            self._latest = list(samples)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with self._lock:
            latest = list(self._latest)
        cpu = CounterMetricFamily(
            "qmroct_component_cpu_seconds",
            "CPU seconds (user+system) used by the component's processes since the monitor started",
            labels=["component"],
        )
        rss = GaugeMetricFamily(
            "qmroct_component_resident_memory_bytes",
            "Sum of resident set sizes of the component's processes",
            labels=["component"],
        )
        rd = CounterMetricFamily(
            "qmroct_component_read_bytes",
            "Bytes the component's processes read (files and sockets) since the monitor started",
            labels=["component"],
        )
        wr = CounterMetricFamily(
            "qmroct_component_written_bytes",
            "Bytes the component's processes wrote (files and sockets) since the monitor started",
            labels=["component"],
        )
        procs = GaugeMetricFamily(
            "qmroct_component_processes",
            "Processes of the component at the last tick",
            labels=["component"],
        )
        for s in latest:
            cpu.add_metric([s.component], s.cpu_seconds_total)
            rss.add_metric([s.component], s.rss_bytes)
            rd.add_metric([s.component], s.read_bytes_total)
            wr.add_metric([s.component], s.write_bytes_total)
            procs.add_metric([s.component], s.processes)
        yield from (cpu, rss, rd, wr, procs)


def serve_prometheus(
    collector: PrometheusCollector, port: int, addr: str = "127.0.0.1"
) -> tuple[object, int]:
    """Serve ``/metrics`` for ``collector`` on ``addr:port`` (port 0 picks a free one).
    Returns the server and the bound port."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server, server.server_address[1]


def status_line(samples: list[ComponentSample]) -> str:
    """One line per tick for a log: each component's CPU and memory."""
    parts = [
        f"{s.component} {s.cpu_percent:.0f}% {s.rss_bytes / 2**20:.0f}MB"
        for s in sorted(samples, key=lambda s: s.component)
    ]
    return "  ".join(parts) if parts else "(no component running)"


@contextmanager
def monitor_process(csv_path: Path, pid: int, label: str = "stack") -> Iterator[Path]:
    """Run ``qmroct monitor`` in its own process over ``pid`` (and its descendants, each
    container under its action's label) for the duration of the block, so the sampling's own
    CPU is not counted in what it measures. Yields the CSV path."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qmroct.cli.main",
            "monitor",
            "--quiet",
            "--pid",
            f"{label}={pid}",
            "--csv",
            str(csv_path),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield csv_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

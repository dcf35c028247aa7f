"""The 1 Hz monitor: components found by their processes, CPU and memory counted from the
kernel, the CSV series, the Prometheus endpoint read by Prometheus' own parser, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from qmroct.cli.main import cli
from qmroct.monitor.exporters import CsvSink, PrometheusCollector, read_csv, serve_prometheus
from qmroct.monitor.report import Span, summarise, write_report
from qmroct.monitor.sampler import Component, ComponentSample, Sampler, discover

# Burns CPU until the process itself has used CPU_S of CPU time, holds MB of memory, then waits.
_BURNER = """
import sys, time
cpu_s, mb = float(sys.argv[1]), int(sys.argv[2])
block = bytearray(mb * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
if "--gate" in sys.argv:
    print("ready", flush=True)
    sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < cpu_s:
    pass
print("done", flush=True)
time.sleep(60)
"""


@pytest.fixture
def burner():
    procs: list[subprocess.Popen[str]] = []

    def start(cpu_s: float, mb: int, *extra: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-c", _BURNER, str(cpu_s), str(mb), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_sampler_counts_cpu_and_memory_of_a_component(burner) -> None:
    proc = burner(0.3, 64, "--gate")
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    sampler = Sampler(find=lambda: [Component(name="worker", pids=[proc.pid])])
    first = sampler.sample()[0]
    assert first.processes == 1 and first.cpu_percent == 0.0  # no rate on the first tick
    assert first.cpu_seconds_total == 0.0
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    second = sampler.sample()[0]
    # Between the two ticks the child burnt 0.3 s of its own CPU time, and little else.
    assert 0.29 <= second.cpu_seconds_total <= 0.3 + 0.2
    assert second.rss_bytes > 64 * 2**20
    assert second.cpu_percent > 0.0


def test_sampler_drops_a_process_that_ended(burner) -> None:
    proc = burner(0.0, 1)
    sampler = Sampler(find=lambda: [Component(name="gone", pids=[proc.pid])])
    assert sampler.sample()[0].processes == 1
    proc.kill()
    proc.wait()
    assert sampler.sample()[0].processes == 0


def test_discover_labels_containers_by_action_and_finds_their_stack() -> None:
    # A stand-in stack process whose child's command line looks like a container proxy of
    # an action of its own.
    # A name no other process on the machine has (other stacks may be running).
    action = f"measure-t{os.getpid()}"
    stack_code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'proxy' + '.py', '--action', '{action}'])\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    stack = subprocess.Popen([sys.executable, "-c", stack_code], stdout=subprocess.PIPE, text=True)
    try:
        assert stack.stdout is not None
        child = int(stack.stdout.readline())
        comps = {c.name: c for c in discover()}
        assert comps[f"action:{action}"].pids == [child]
        assert stack.pid in comps["stack"].pids
        # Naming a process to watch turns the machine-wide search off.
        named = {c.name: c.pids for c in discover(extra={"mine": stack.pid})}
        assert named == {"mine": [stack.pid], f"action:{action}": [child]}
    finally:
        for p in psutil.Process(stack.pid).children(recursive=True):
            p.kill()
        stack.kill()
        stack.wait()


def test_discover_with_home_reads_the_stack_pid(tmp_path: Path, burner) -> None:
    proc = burner(0.0, 1)
    (tmp_path / "stack.json").write_text(json.dumps({"pid": proc.pid}))
    comps = {c.name: c for c in discover(tmp_path)}
    assert comps["stack"].pids == [proc.pid]
    (tmp_path / "stack.json").write_text(json.dumps({"pid": 999_999_999}))
    assert "stack" not in {c.name for c in discover(tmp_path)}


def _sample(t: float, comp: str, cpu: float, rss_mb: int) -> ComponentSample:
    return ComponentSample(
        t=t,
        component=comp,
        processes=1,
        cpu_percent=cpu,
        cpu_seconds_total=t,
        rss_bytes=rss_mb * 2**20,
        read_bytes_per_s=0,
        write_bytes_per_s=0,
        read_bytes_total=0,
        write_bytes_total=0,
    )


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    sink = CsvSink(path)
    rows = [_sample(1.0, "stack", 12.5, 100), _sample(1.0, "action:x", 50.0, 200)]
    sink(rows)
    sink.close()
    again = CsvSink(path)  # appending keeps one header
    again([_sample(2.0, "stack", 20.0, 110)])
    again.close()
    back = read_csv(path)
    assert [s.model_dump() for s in back[:2]] == [r.model_dump() for r in rows]
    assert len(back) == 3 and path.read_text().count("component") == 1


def test_prometheus_endpoint_parses_with_prometheus_parser() -> None:
    collector = PrometheusCollector()
    server, port = serve_prometheus(collector, 0)
    try:
        collector([_sample(5.0, "stack", 30.0, 100), _sample(5.0, "postgresql", 5.0, 40)])
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["qmroct_component_cpu_seconds"].type == "counter"
    cpu = {
        s.labels["component"]: s.value
        for s in fams["qmroct_component_cpu_seconds"].samples
        if s.name.endswith("_total")
    }
    assert cpu == {"stack": 5.0, "postgresql": 5.0}
    rss = {
        s.labels["component"]: s.value
        for s in fams["qmroct_component_resident_memory_bytes"].samples
    }
    assert rss == {"stack": 100 * 2**20, "postgresql": 40 * 2**20}


def test_summary_per_span_and_report(tmp_path: Path) -> None:
    samples = [_sample(float(t), "stack", float(10 * t), 100 + t) for t in range(0, 11)]
    spans = [Span(label="upload", start=1.0, end=4.0, group="phase")]
    report = summarise(samples, spans)
    by = {(u.span, u.component): u for u in report.usage}
    up = by[("upload", "stack")]
    assert (up.samples, up.cpu_avg_percent, up.cpu_peak_percent) == (4, 25.0, 40.0)
    assert up.rss_peak_mb == pytest.approx(104.0)
    whole = by[("all", "stack")]
    assert whole.samples == 10 and whole.cpu_peak_percent == 100.0  # the first tick has no rate
    write_report(samples, spans, tmp_path / "r", title="t")
    assert (tmp_path / "r" / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "r" / "report.html").read_text()
    assert "data:image/png;base64," in page and "upload" in page
    assert json.loads((tmp_path / "r" / "report.json").read_text())["usage"]


def test_cli_monitor_writes_a_series_and_a_report(tmp_path: Path, burner) -> None:
    proc = burner(0.0, 8)
    runner = CliRunner()
    csv_path = tmp_path / "m.csv"
    res = runner.invoke(
        cli,
        [
            "monitor",
            "--home",
            str(tmp_path),
            "--pid",
            f"worker={proc.pid}",
            "--interval",
            "0.2",
            "--duration",
            "0.5",
            "--csv",
            str(csv_path),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = read_csv(csv_path)
    assert {r.component for r in rows} == {"worker"} | (
        {"postgresql"} & {r.component for r in rows}
    )
    assert len([r for r in rows if r.component == "worker"]) >= 3
    out = tmp_path / "rep"
    res = runner.invoke(cli, ["monitor", "report", str(csv_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "worker" in res.output and (out / "report.html").exists()
    bad = runner.invoke(cli, ["monitor", "--pid", "nopid", "--duration", "0"])
    assert bad.exit_code == 2 and "LABEL=PID" in bad.output

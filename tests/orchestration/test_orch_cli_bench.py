from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.orchestration.bench import backfill_figures, max_overlap
from qmroct.results import MeasureActionResult, ResultStatus
from qmroct.storage.ledger import Ledger


def test_max_overlap_counts_concurrent_intervals() -> None:
    assert max_overlap([]) == 0
    assert max_overlap([(0, 10), (5, 15), (9, 20), (15, 30)]) == 3
    assert max_overlap([(0, 5), (5, 10)]) == 1  # back to back is not overlap


def _run(led: Ledger, scan: str, version: str, value: float) -> None:
    led.enqueue("measure", scan, "signal", version)
    (c,) = led.claim(cap=1)
    now = datetime.now(UTC)
    led.complete(
        c.job.job_key,
        c.lease_token,
        MeasureActionResult(
            job_key=c.job.job_key,
            lease_token=c.lease_token,
            scan_hash=scan,
            measure="signal",
            version=version,
            status=ResultStatus.OK,
            values={"snr_db": value},
            started_at=now,
            ended_at=now,
        ),
    )


class Records:
    def __init__(self, recs: dict[str, list[dict]]) -> None:
        self.recs = recs

    def activations(self, *, name=None, since=None, limit=200):
        return self.recs.get(name, [])


def test_backfill_figures_from_ledger_and_records(tmp_path) -> None:
    led = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}")
    scans = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    for s in scans[:2]:
        _run(led, s, "2.0.0", 1.0)
    led.enqueue("measure", scans[2], "signal", "2.0.0")  # never ran: lost
    ow = Records(
        {
            "run-signal": [{"start": 0, "end": 100}, {"start": 50, "end": 160}],
            "measure-signal": [{"start": 10, "end": 80}, {"start": 60, "end": 130}],
        }
    )
    f = backfill_figures(
        led, ow, measure="signal", version="2.0.0", scans=3, cap=2, started=0.0, ended=2.0
    )
    assert (f.lost, f.duplicated, f.failed, f.max_inflight) == (1, 0, 0, 2)
    assert f.scans_per_s == 1.5 and f.overhead_ms_p50 == 35.0
    led.close()


def test_results_command_shows_current_and_history(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    led = Ledger.open(url)
    scan = hashlib.sha256(b"x").hexdigest()
    _run(led, scan, "1.0.0", 1.0)
    _run(led, scan, "1.1.0", 2.0)
    led.close()
    monkeypatch.setenv("QMROCT_LEDGER_URL", url)
    runner = CliRunner()
    out = runner.invoke(cli, ["results", scan, "--json"])
    assert out.exit_code == 0, out.output
    assert [r["version"] for r in json.loads(out.output)] == ["1.1.0"]
    out = runner.invoke(cli, ["results", scan, "--history"])
    assert out.exit_code == 0 and "archived (superseded by version 1.1.0)" in out.output
    out = runner.invoke(cli, ["results", "f" * 64])
    assert out.exit_code != 0 and "no results" in out.output


def test_bench_scans_are_distinct_files_and_progress_suits_terminal_and_log(tmp_path) -> None:
    import io

    from qmroct.embedded.backfill_bench import PhaseProgress, write_bench_scans
    from qmroct.oct.readers import read_scan

    log = io.StringIO()
    paths = write_bench_scans(
        tmp_path, 6, bases=2, progress=PhaseProgress("writing", 6, out=log, tty=False)
    )
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(hashes) == 6  # each its own content hash, though two phantoms were rendered
    # Derived from the same phantom, two scans still differ in their pixels, and both read.
    a, b = read_scan(paths[0]), read_scan(paths[2])
    assert a.bscans.shape == b.bscans.shape and (a.bscans != b.bscans).any()
    # In a log: plain lines, no carriage returns; on a terminal: one line redrawn.
    assert "\r" not in log.getvalue() and log.getvalue().startswith("writing: ")
    tty = io.StringIO()
    bar = PhaseProgress("uploading", 4, out=tty, tty=True)
    for i in range(1, 5):
        bar.update(i)
    bar.finish()
    out = tty.getvalue()
    assert out.count("\r") == 5 and "[" + "#" * 30 + "]" in out
    assert out.rsplit("\r", 1)[1].startswith("\033[Kuploading: 4/4 ") and out.endswith("\n")


def test_scheduling_cpu_keeps_the_cpu_of_containers_that_are_gone() -> None:
    import subprocess
    import sys
    import time
    from types import SimpleNamespace

    from qmroct.embedded.backfill_bench import BenchStack

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", burn + "time.sleep(30)"]) for _ in range(2)]
    containers = [
        SimpleNamespace(pid=p.pid, key=f"guest/qmroct/{name}@0")
        for p, name in zip(procs, ("scheduler", "record-result"), strict=True)
    ]
    # A container of another action is not the scheduler's: never counted.
    other = subprocess.Popen([sys.executable, "-c", burn + "time.sleep(30)"])
    containers.append(SimpleNamespace(pid=other.pid, key="guest/qmroct/measure-signal@0"))
    invoker = SimpleNamespace(containers=lambda: list(containers))
    whisk = SimpleNamespace(package="qmroct", controller=SimpleNamespace(invoker=invoker))
    stack = SimpleNamespace(whisk=whisk, require=lambda: (None, None, None))
    bench = BenchStack(stack)  # type: ignore[arg-type]
    try:
        # Wait until both have burnt their 0.3 s and sleep: a reading taken while one still
        # burns would grow after the kill through the other, and prove nothing.
        deadline = time.monotonic() + 20
        previous, before = -1.0, bench.scheduling_cpu()
        while (before < 0.6 or before != previous) and time.monotonic() < deadline:
            time.sleep(0.3)
            previous, before = before, bench.scheduling_cpu()
        assert 0.6 <= before < 1.0  # both scheduling containers' 0.3 s, not the measure's
        procs[0].kill()
        procs[0].wait()
        del containers[0]  # the runtime removed it
        assert bench.scheduling_cpu() == before  # its CPU still counts
    finally:
        bench.close()
        for p in [*procs, other]:
            p.kill()
            p.wait()

"""bench drain: the ledger-only drain finishes every job and reports each kind's cost."""

from __future__ import annotations

from qmroct.storage.bench import run_drain_bench
from qmroct.storage.ledger import Ledger
from qmroct.storage.records import JobKind


def test_drain_bench_finishes_every_job_with_one_result_each(ledger_url: str) -> None:
    led = Ledger.open(ledger_url)
    try:
        figures = run_drain_bench(led, scans=10, cap=3)
        counts = led.counts()
        measures = led.jobs(kind=JobKind.MEASURE)
        rows = led.db.query("SELECT COUNT(*) AS n FROM results WHERE is_current = 1")
    finally:
        led.close()
    assert figures.jobs == 20 and len(figures.client_ms_per_job_by_tenth) == 10
    assert counts.total("done") == 20 and counts.total("queued") == 0
    assert counts.total("leased") == 0
    assert all(j.activation_id and j.activation_id.startswith("bench-") for j in measures)
    assert rows[0]["n"] == 10  # one current result per scan, none lost or doubled
    assert set(figures.client_ms_per_job) == set(figures.last_over_first) == {"derive", "measure"}
    assert all(v > 0 for v in figures.client_ms_per_job_by_tenth)

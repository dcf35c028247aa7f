"""End to end on the embedded stack: gateway upload, MinIO-format events, triggers, the scheduler,
measure actions in their own processes, record-result, the ledger.

These are the reliability cases of the design: repeated events, crashed workers, restarts,
corrupt scans, bursts under the cap, and a version published during a backfill. In-flight
counts are measured from the runtime's activation records (start/end overlap), never from the
scheduler's own counter.
"""

from __future__ import annotations

import base64
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from qmroct.embedded.stack import EmbeddedStack, StackOptions
from qmroct.events import object_created, render_body
from qmroct.orchestration.bench import max_overlap
from qmroct.storage import buckets
from qmroct.storage.ledger import JobKind, JobState

MEASURE = "signal"


def _phantom_files(out: Path, n: int, *, seed: int = 0, pattern: str = "line") -> list[Path]:
    from qmroct.oct.phantom import make_phantom, write_phantom

    files = []
    for i in range(n):
        scan, truth, _ = make_phantom(pattern, seed=seed + i, size="small")
        files += [
            p
            for p in write_phantom(scan, truth, out / f"{seed + i}", formats=("vol",))
            if p.suffix == ".vol"
        ]
    return files


def _uploader(stack: EmbeddedStack, project: str = "E2E"):
    from qmroct.gateway.pseudonyms import PseudonymStore
    from qmroct.gateway.state import GatewayState
    from qmroct.gateway.upload import Uploader

    _, store, _ = stack.require()
    return Uploader(
        store,
        PseudonymStore(stack.home / "pseudonyms.sqlite3"),
        GatewayState(stack.home / "gateway-state.sqlite3"),
        project=project,
        compress="none",
    )


def _start(
    home: Path, *, cap: int = 4, lease_s: float = 300.0, measures=(MEASURE,)
) -> EmbeddedStack:
    stack = EmbeddedStack(
        home, StackOptions(cap=cap, alarm_interval_s=0.5, lease_s=lease_s, event_retry_s=0.5)
    ).start()
    if measures:
        published = stack.publish_suite(list(measures))
        stack.wait_published(len(published))
    return stack


def _measure_jobs(stack: EmbeddedStack, measure: str = MEASURE):
    ledger, _, _ = stack.require()
    return [j for j in ledger.jobs(kind=JobKind.MEASURE, limit=100_000) if j.measure == measure]


def _intervals(stack: EmbeddedStack, name: str) -> list[tuple[float, float]]:
    assert stack.whisk is not None
    recs = stack.whisk.activations(name=name, limit=100_000)
    return [(float(_get(r, "start")), float(_get(r, "end"))) for r in recs]


def _slot_intervals(stack: EmbeddedStack, sequence: str) -> list[tuple[float, float]]:
    """Each sequence's span up to the start of its last step (record-result).

    The sequence's own end comes after record-result has returned, and so after the slot was
    freed and the scheduler woken: the next start may precede it by a few milliseconds.
    """
    assert stack.whisk is not None
    out = []
    for rec in stack.whisk.activations(name=sequence, limit=100_000):
        last = stack.whisk.activation(rec.logs[-1])
        assert last is not None and last.name == "record-result", rec.logs
        out.append((float(rec.start), float(last.start)))
    return out


def _get(record, key):
    return record[key] if isinstance(record, dict) else getattr(record, key)


@pytest.fixture
def stack(tmp_path):
    s = _start(tmp_path / "home")
    yield s
    s.stop()


def test_upload_runs_the_measure_and_stores_one_result(stack, tmp_path):
    files = _phantom_files(tmp_path / "in", 2)
    summary = _uploader(stack).upload_paths(files)
    assert [o.status for o in summary.outcomes] == ["uploaded", "uploaded"]
    idle = stack.wait_idle(timeout_s=180, expect_jobs=2)
    assert idle.idle and idle.dead == 0
    ledger, _, _ = stack.require()
    for o in summary.outcomes:
        (scan,) = ledger.catalog.find_scans(o.key)
        (res,) = ledger.results(scan.scan_hash)
        assert res.measure == MEASURE and res.status.value == "ok"
        assert res.values["qi"] > 0 and res.picture_stored
        from qmroct.orchestration.publication import describe_measure

        assert res.code_digest == describe_measure(MEASURE)["code_digest"]


def test_same_event_three_times_gives_one_job_and_one_result(stack, tmp_path):
    (f,) = _phantom_files(tmp_path / "in", 1, seed=40)
    (o,) = _uploader(stack).upload_paths([f]).outcomes
    stack.wait_idle(timeout_s=120, expect_jobs=1)
    _, store, _ = stack.require()
    info = store.stat(buckets.INGEST_BUCKET, o.key)
    body = render_body(
        object_created(
            event_name="s3:ObjectCreated:Put",
            bucket=buckets.INGEST_BUCKET,
            key=o.key,
            size=info.size,
            etag=info.etag,
            content_type=info.content_type,
            user_metadata=info.metadata,
            version_id=info.version_id,
            at=datetime.now(UTC),
            sequencer="1868C2D6A8F0A1B2",
            request_id="1868C2D6A8A3B1F0",
            principal="gateway",
            source_host="127.0.0.1",
            user_agent="MinIO (linux; amd64) minio-py/7.2.20",
        )
    )
    assert stack.whisk is not None
    url = f"{stack.whisk.api_host}/api/v1/namespaces/_/triggers/image-stored"
    auth = "Basic " + base64.b64encode(stack.whisk.auth.encode()).decode()
    for _ in range(2):  # the upload delivered it once; MinIO repeats it twice more
        r = requests.post(
            url,
            data=body,
            headers={"Authorization": auth, "Content-Type": "application/json"},
            timeout=10,
        )
        assert r.status_code == 202
    # The fire answers 202 before the rule's activation runs: wait for all three to finish.
    deadline = time.monotonic() + 120
    while len(stack.whisk.activations(name="on-image-stored", limit=100)) < 3:
        assert time.monotonic() < deadline, "the repeated events never reached on-image-stored"
        time.sleep(0.2)
    stack.wait_idle(timeout_s=120, expect_jobs=1)
    assert len(stack.whisk.activations(name="on-image-stored", limit=100)) == 3
    ledger, _, _ = stack.require()
    assert len(_measure_jobs(stack)) == 1
    (scan,) = ledger.catalog.find_scans(o.key)
    assert len(ledger.results(scan.scan_hash, history=True)) == 1


def test_corrupt_scan_fails_with_reason_and_spares_the_others(stack, tmp_path):
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    good = _phantom_files(tmp_path / "in", 2, seed=60)
    scan, _, _ = make_phantom("line", seed=99)
    raw = write_vol(scan, patient_id="PHANTOM99", visit_id="v")
    # A file that passes the gateway's header checks but whose pixels are cut short.
    bad = tmp_path / "in" / "truncated.vol"
    bad.write_bytes(raw[: len(raw) // 2])
    outcomes = _uploader(stack).upload_paths([*good, bad]).outcomes
    assert sorted(o.status for o in outcomes) == ["uploaded"] * 3
    idle = stack.wait_idle(timeout_s=240, expect_jobs=3)
    assert idle.idle
    ledger, _, _ = stack.require()
    by_src = {o.source: o for o in outcomes}
    (bad_scan,) = ledger.catalog.find_scans(by_src[str(bad)].key)
    (bad_job,) = ledger.jobs(kind=JobKind.MEASURE, scan_hash=bad_scan.scan_hash)
    # The shared segmentation is derived first; it fails after its retries, and the measure
    # that needs it is dead-lettered with that reason.
    (derive_job,) = ledger.jobs(kind=JobKind.DERIVE, scan_hash=bad_scan.scan_hash)
    assert derive_job.state is JobState.DEAD and derive_job.attempts == derive_job.max_attempts
    assert bad_job.state is JobState.DEAD
    assert "truncated" in (bad_job.last_error or "")
    (res,) = ledger.results(bad_scan.scan_hash)
    assert res.status.value == "failed" and "truncated" in (res.failure or "")
    for g in good:
        (s,) = ledger.catalog.find_scans(by_src[str(g)].key)
        (r,) = ledger.results(s.scan_hash)
        assert r.status.value == "ok"


def test_worker_killed_mid_activation_is_redriven_and_completes_once(tmp_path):
    # The lease must outlast a cold activation (start-up, derive, measure) on a loaded 2-core
    # machine, or every attempt expires before it can finish; the killed one still expires.
    stack = _start(tmp_path / "home", lease_s=20.0)
    try:
        files = _phantom_files(tmp_path / "in", 1, seed=80, pattern="volume")
        _uploader(stack).upload_paths(files)
        assert stack.whisk is not None
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and time.monotonic() < deadline:
            for c in stack.whisk.controller.invoker.containers():
                if c.busy and "measure-signal" in c.key and c._proc is not None:
                    os.kill(c._proc.pid, signal.SIGKILL)
                    killed = c.key
                    break
            time.sleep(0.01)
        assert killed, "never saw the measure activation in flight"
        idle = stack.wait_idle(timeout_s=180, expect_jobs=1)
        assert idle.idle and idle.dead == 0, [
            (j.kind, j.measure, j.state, j.attempts, j.last_error)
            for j in stack.require()[0].jobs()
        ]
        (job,) = _measure_jobs(stack)
        assert job.state is JobState.DONE and job.attempts >= 2
        ledger, _, _ = stack.require()
        assert len(ledger.results(job.scan_hash, history=True)) == 1
        records = stack.whisk.activations(name="measure-signal", limit=100)
        assert any(not _get(r, "response").success for r in records)
    finally:
        stack.stop()


@pytest.mark.slow
def test_burst_of_200_uploads_never_exceeds_the_cap(tmp_path):
    cap = 4
    stack = _start(tmp_path / "home", cap=cap)
    try:
        files = _phantom_files(tmp_path / "in", 200, seed=1000)
        outcomes = _uploader(stack).upload_paths(files, workers=4).outcomes
        assert all(o.status == "uploaded" for o in outcomes)
        idle = stack.wait_idle(timeout_s=900, expect_jobs=200)
        assert idle.idle and idle.dead == 0
        measured = _measure_jobs(stack)
        assert len(measured) == 200 and all(j.state is JobState.DONE for j in measured)
        # Measured from the activation records. A job holds its slot from its claim until
        # record-result has stored the result, so each sequence holds one at least from its
        # start to the start of its record-result step.
        held = _slot_intervals(stack, f"run-{MEASURE}")
        assert len(held) == 200
        assert max_overlap(held) <= cap
        assert max_overlap(held) == cap  # under a 200-scan burst the cap is reached
        assert max_overlap(_intervals(stack, f"measure-{MEASURE}")) <= cap
    finally:
        stack.stop()


@pytest.mark.slow
def test_restart_during_a_500_job_backfill_resumes_and_completes_each_once(tmp_path):
    from qmroct.orchestration.publication import publish_measure

    home = tmp_path / "home"
    stack = _start(home, cap=4, lease_s=20.0, measures=())
    files = _phantom_files(tmp_path / "in", 500, seed=5000)
    _uploader(stack).upload_paths(files, workers=4)
    ledger, store, _ = stack.require()
    deadline = time.monotonic() + 300
    while sum(1 for _ in ledger.catalog.scans()) < 500 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sum(1 for _ in ledger.catalog.scans()) == 500
    publish_measure(store, MEASURE, "9.0.0")
    while sum(j.state is JobState.DONE for j in _measure_jobs(stack)) < 60:
        time.sleep(0.2)
    stack.stop()  # the whole runtime goes away mid-backfill, containers and all
    stack = _start(home, cap=4, lease_s=20.0, measures=())
    try:
        idle = stack.wait_idle(timeout_s=1200, expect_jobs=500)
        assert idle.idle
        jobs = _measure_jobs(stack)
        assert len(jobs) == 500 and all(j.state is JobState.DONE for j in jobs)
        ledger, _, _ = stack.require()
        for scan in ledger.catalog.scans():
            hist = ledger.results(scan.scan_hash, history=True)
            assert [(r.measure, r.version) for r in hist] == [(MEASURE, "9.0.0")]
    finally:
        stack.stop()


def test_new_version_during_backfill_is_never_overwritten_by_the_old(tmp_path):
    from qmroct.orchestration.publication import publish_measure

    stack = _start(tmp_path / "home", cap=2, measures=())
    try:
        files = _phantom_files(tmp_path / "in", 12, seed=300)
        _uploader(stack).upload_paths(files)
        ledger, store, _ = stack.require()
        while sum(1 for _ in ledger.catalog.scans()) < 12:
            time.sleep(0.2)
        publish_measure(store, MEASURE, "2.0.0")
        while not any(j.state is JobState.DONE for j in _measure_jobs(stack)):
            time.sleep(0.1)
        publish_measure(store, MEASURE, "2.1.0")  # while 2.0.0 is still backfilling
        stack.wait_idle(timeout_s=300)
        for scan in ledger.catalog.scans():
            current = ledger.results(scan.scan_hash)
            assert [(r.measure, r.version) for r in current] == [(MEASURE, "2.1.0")]
            for old in ledger.results(scan.scan_hash, history=True):
                if old.version == "2.0.0":
                    assert not old.current and old.superseded_by == "2.1.0"
    finally:
        stack.stop()

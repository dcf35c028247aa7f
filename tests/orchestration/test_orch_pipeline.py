from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from orch_doubles import MemoryStore, RecordingInvoker, measures_event, stored_event
from qmroct.orchestration.context import BackendParams
from qmroct.orchestration.ingest import on_image_stored
from qmroct.orchestration.models import product_version
from qmroct.orchestration.publication import (
    MeasurePublication,
    apply_publication,
    on_measure_published,
    publish_measure,
)
from qmroct.orchestration.recording import record_result
from qmroct.orchestration.scheduler import RECONCILE_GRACE_S, reconcile, tick
from qmroct.results import MeasureInvocation
from qmroct.storage.ledger import PRIORITY_BACKFILL, PRIORITY_UPLOAD
from qmroct.storage.records import JobKind, JobState


def publish(ctx, name: str, version: str, state: str = "published", **kw) -> None:
    pub = publish_measure(ctx.store, name, version, state=state, describe=False, **kw)
    on_measure_published(ctx, measures_event(f"{name}/{version}.json"))
    assert pub.name == name


def upload(ctx, n: int, **kw) -> str:
    data = f"scan bytes {n}".encode()
    key = f"p1/s{n}/ses1/scan{n}.vol"
    ctx.store.put("oct-ingest", key, data)
    on_image_stored(ctx, stored_event(key, data, **kw))
    return hashlib.sha256(data).hexdigest()


def measure_action(params: dict, value: float = 1.0, status: str = "ok") -> dict:
    """What a measure action returns for one invocation."""
    inv = MeasureInvocation.model_validate(params)
    now = datetime.now(UTC).isoformat()
    return {
        "job_key": inv.job_key,
        "lease_token": inv.lease_token,
        "scan_hash": inv.scan_hash,
        "measure": inv.measure,
        "version": inv.version,
        "status": status,
        "values": {"v": value},
        "failure": "truncated file" if status == "failed" else None,
        "started_at": now,
        "ended_at": now,
    }


def drain(ctx, value: float = 1.0) -> int:
    """Tick and answer every started activation until nothing is left; return activations."""
    started = 0
    while True:
        before = len(ctx.ow.calls)
        report = tick(ctx)
        new = [(n, p) for n, p in ctx.ow.calls[before:] if "/run-" in n]
        assert len(new) <= ctx.max_inflight
        if not new and report.claimed == 0:
            return started
        # record-result starts the next job in the slot it frees: answer those too.
        while new:
            _, params = new.pop(0)
            started += 1
            before = len(ctx.ow.calls)
            record_result(ctx, measure_action(params, value))
            new += [(n, p) for n, p in ctx.ow.calls[before:] if "/run-" in n]
            assert ctx.ledger.in_flight() <= ctx.max_inflight


def test_repeated_upload_events_make_one_scan_one_job_one_result(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    data = b"scan bytes"
    ctx.store.put("oct-ingest", "p/s/ses/a.vol", data)
    event = stored_event("p/s/ses/a.vol", data)
    reports = [on_image_stored(ctx, event) for _ in range(3)]
    assert [r.new_scans for r in reports] == [1, 0, 0]
    assert [r.jobs_enqueued for r in reports] == [1, 0, 0]
    assert drain(ctx) == 1
    h = hashlib.sha256(data).hexdigest()
    assert len(ctx.ledger.results(h, history=True)) == 1
    scan = ctx.ledger.catalog.scan(h)
    assert (scan.project, scan.subject, scan.session, scan.scan, scan.format) == (
        "p",
        "s",
        "ses",
        "a",
        "vol",
    )


def test_hash_is_read_from_the_object_when_metadata_lacks_it(ctx) -> None:
    h = upload(ctx, 1, with_hash=False)
    assert ctx.ledger.catalog.scan(h) is not None


def test_tagging_events_and_other_buckets_are_skipped(ctx) -> None:
    data = b"x"
    ctx.store.put("oct-ingest", "p/s/ses/a.vol", data)
    report = on_image_stored(ctx, stored_event("p/s/ses/a.vol", data, event="PutTagging"))
    assert report.scans == [] and "not an object creation" in report.skipped[0]
    bad = on_image_stored(ctx, stored_event("only/two.vol", data))
    assert bad.scans == [] and bad.skipped


def test_invocations_carry_presigned_urls_for_one_scan_only(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    h = upload(ctx, 1)
    tick(ctx)
    ((name, params),) = ctx.ow.runs()
    assert name == "qmroct/run-signal"
    inv = MeasureInvocation.model_validate(params)
    assert inv.scan_hash == h and inv.scan_url.startswith("http://store/oct-ingest/p1/s1/")
    assert inv.picture_url.startswith(f"http://store/oct-results/{h}/signal/1.0.0/picture.png")
    assert "type=image/png" in inv.picture_url
    assert not any(k in params for k in BackendParams.model_fields)  # no credentials


def test_publication_backfills_at_low_priority_and_archives_on_new_version(ctx) -> None:
    hashes = [upload(ctx, i) for i in range(4)]  # stored before any measure exists
    assert ctx.ledger.counts().total("queued") == 0
    publish(ctx, "signal", "1.0.0")
    jobs = ctx.ledger.jobs(kind=JobKind.MEASURE)
    assert len(jobs) == 4 and {j.priority for j in jobs} == {PRIORITY_BACKFILL}
    assert drain(ctx, 1.0) == 4
    publish(ctx, "signal", "1.1.0")
    assert drain(ctx, 2.0) == 4
    for h in hashes:
        cur, old = ctx.ledger.results(h, "signal", history=True)
        assert (cur.version, cur.values, cur.current) == ("1.1.0", {"v": 2.0}, True)
        assert (old.version, old.superseded_by, old.current) == ("1.0.0", "1.1.0", False)
    # an upload now runs the active version only, at upload priority
    h = upload(ctx, 9)
    (job,) = ctx.ledger.jobs(scan_hash=h)
    assert (job.version, job.priority) == ("1.1.0", PRIORITY_UPLOAD)


def test_repeated_publication_event_is_a_noop(ctx) -> None:
    upload(ctx, 1)
    publish(ctx, "signal", "1.0.0")
    on_measure_published(ctx, measures_event("signal/1.0.0.json"))
    assert len(ctx.ledger.jobs()) == 1


def test_retire_stops_new_jobs_and_keeps_results(ctx) -> None:
    h = upload(ctx, 1)
    publish(ctx, "signal", "1.0.0")
    drain(ctx)
    upload(ctx, 2)  # queued, then the version is retired before it runs
    publish(ctx, "signal", "1.0.0", state="retired")
    assert ctx.ledger.counts().by_kind["measure"]["dead"] == 1
    h3 = upload(ctx, 3)
    assert ctx.ledger.jobs(scan_hash=h3) == []
    assert [r.version for r in ctx.ledger.results(h)] == ["1.0.0"]
    assert ctx.ledger.catalog.measure("signal", "1.0.0").state.value == "retired"


def test_derive_job_runs_first_and_measure_gets_the_product_url(ctx) -> None:
    publish(ctx, "centration", "1.0.0", requires=["segmentation"])
    h = upload(ctx, 1)
    tick(ctx)
    ((name, params),) = ctx.ow.runs()
    assert name == "qmroct/run-derive-segmentation"
    v = product_version("segmentation")
    assert params["output_url"].startswith(f"http://store/oct-derived/{h}/segmentation/{v}/")
    record_result(
        ctx,
        {
            **{k: params[k] for k in ("job_key", "lease_token", "scan_hash", "measure", "version")},
            "status": "ok",
            "output_bucket": params["output_bucket"],
            "output_key": params["output_key"],
        },
    )
    tick(ctx)
    name, params = ctx.ow.runs()[-1]
    assert name == "qmroct/run-centration"
    assert params["inputs"]["segmentation"].startswith(
        f"http://store/oct-derived/{h}/segmentation/"
    )


def test_429_releases_the_job_without_an_attempt(ctx) -> None:
    ctx.ow = RecordingInvoker(budget=1)
    publish(ctx, "signal", "1.0.0")
    for i in range(3):
        upload(ctx, i)
    report = tick(ctx)
    assert (report.claimed, report.invoked, report.throttled) == (3, 1, 2)
    queued = ctx.ledger.jobs(state=JobState.QUEUED)
    assert len(queued) == 2 and all(j.attempts == 0 for j in queued)
    assert ctx.ledger.in_flight() == 1


def test_record_result_refuses_stale_and_pushes_to_xnat(ctx) -> None:
    ctx.xnat_enabled = True
    publish(ctx, "signal", "1.0.0")
    h = upload(ctx, 1)
    tick(ctx)
    ((_, params),) = ctx.ow.runs()
    stale = record_result(ctx, {**measure_action(params), "lease_token": "forged"})
    assert stale.state == "refused"
    before = len(ctx.ow.calls)
    ok = record_result(ctx, measure_action(params))
    assert (ok.state, ok.current, ok.started) == ("done", True, 1)
    (xjob,) = ctx.ledger.jobs(kind=JobKind.XNAT)
    assert xjob.scan_hash == h
    # record-result started the push in the slot it freed, with no scheduler activation.
    assert [c[0] for c in ctx.ow.calls[before:]] == ["qmroct/xnat-callback"]
    name, xparams = ctx.ow.calls[-1]
    assert name == "qmroct/xnat-callback" and set(xparams) == {
        "job_key",
        "lease_token",
        "scan_hash",
    }


def test_failed_measure_is_retried_then_shown_failed(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    h = upload(ctx, 1)
    states = []
    for _ in range(3):
        tick(ctx)
        _, params = ctx.ow.runs()[-1]
        states.append(record_result(ctx, measure_action(params, status="failed")).state)
    assert states == ["failed", "failed", "dead"]
    (res,) = ctx.ledger.results(h)
    assert res.status.value == "failed" and res.failure == "truncated file"


def test_invalid_result_is_a_failed_attempt(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    upload(ctx, 1)
    tick(ctx)
    _, params = ctx.ow.runs()[-1]
    out = record_result(ctx, {"job_key": params["job_key"], "lease_token": params["lease_token"]})
    assert out.state == "failed" and "invalid result" in out.detail


def test_lost_activation_is_redriven_from_its_record(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    upload(ctx, 1)
    tick(ctx)
    (job,) = ctx.ledger.leased()
    ctx.ow.records.append(
        {
            "activationId": job.activation_id,
            "name": "run-signal",
            "namespace": "guest",
            "annotations": [{"key": "path", "value": "guest/qmroct/run-signal"}],
            "start": 1,
            "end": 2,
            "response": {
                "statusCode": 2,
                "result": {"error": "The action exceeded its time limits of 120000 milliseconds."},
            },
        }
    )
    # Right after the claim nothing can have ended long enough ago: no lookup at all.
    assert tick(ctx).lost == 0 and ctx.ow.looked_up == []
    later = time.time() + RECONCILE_GRACE_S + 1
    assert reconcile(ctx, now=later) == 1
    assert ctx.ow.looked_up == [job.activation_id] and ctx.ow.listed == 0
    (again,) = ctx.ledger.jobs()
    assert again.state is JobState.FAILED and "time limits" in again.last_error


def test_running_activation_is_left_alone(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    upload(ctx, 1)
    tick(ctx)
    (job,) = ctx.ledger.leased()
    # No record yet (the activation runs): the lookup answers 404 and the job keeps its lease.
    assert reconcile(ctx, now=time.time() + RECONCILE_GRACE_S + 1) == 0
    assert ctx.ow.looked_up == [job.activation_id]
    (still,) = ctx.ledger.jobs()
    assert still.state is JobState.LEASED


def test_publication_object_must_match_its_key(ctx) -> None:
    body = MeasurePublication(name="signal", version="2.0.0").model_dump_json().encode()
    ctx.store.put("oct-measures", "signal/1.0.0.json", body)
    import pytest
    from qmroct.orchestration.publication import PublicationError

    with pytest.raises(PublicationError, match="not its own key"):
        on_measure_published(ctx, measures_event("signal/1.0.0.json"))


def test_backend_params_take_defaults_for_unset_inputs() -> None:
    p = BackendParams.model_validate(
        {"ledger_url": "sqlite:///x", "max_inflight": "", "xnat_url": ""}
    )
    assert p.max_inflight == 4
    assert (
        BackendParams.model_validate(
            {"ledger_url": "sqlite:///x", "max_inflight": "7"}
        ).max_inflight
        == 7
    )


def test_apply_publication_of_an_older_version_does_not_take_over(ctx) -> None:
    upload(ctx, 1)
    publish(ctx, "signal", "2.0.0")
    rep = apply_publication(ctx.ledger, MeasurePublication(name="signal", version="1.5.0"))
    assert rep.active is False
    assert {j.version for j in ctx.ledger.jobs()} == {"2.0.0"}
    assert isinstance(ctx.store, MemoryStore)


def test_resync_recovers_uploads_and_publications_whose_events_were_dropped(ctx) -> None:
    from qmroct.orchestration import resync

    # OpenWhisk dropped both rule activations: the objects exist, no handler ever ran.
    publish_measure(ctx.store, "snr", "1.0.0", describe=False)
    data = b"scan bytes without an event"
    ctx.store.put("oct-ingest", "p1/s9/ses1/scan9.vol", data)
    assert ctx.ledger.catalog.active_measures() == []
    report = tick(ctx)
    assert report.resynced == 2
    assert [m.name for m in ctx.ledger.catalog.active_measures()] == ["snr"]
    scan_hash = hashlib.sha256(data).hexdigest()
    assert ctx.ledger.catalog.scan(scan_hash) is not None
    assert [j.measure for j in ctx.ledger.jobs(kind=JobKind.MEASURE)] == ["snr"]
    # Idempotent: a late event, or the next sweep, changes nothing.
    on_image_stored(ctx, stored_event("p1/s9/ses1/scan9.vol", data))
    resync._LAST_SWEEP.clear()
    assert tick(ctx).resynced == 0
    assert len(ctx.ledger.jobs(kind=JobKind.MEASURE)) == 1


def test_record_result_fills_the_slot_it_freed_under_the_cap(ctx) -> None:
    publish(ctx, "signal", "1.0.0")
    for i in range(5):
        upload(ctx, i)
    assert tick(ctx).invoked == 3  # the cap
    _, params = ctx.ow.runs()[0]
    before = len(ctx.ow.calls)
    out = record_result(ctx, measure_action(params))
    assert (out.state, out.started) == ("done", 1)
    assert ctx.ledger.in_flight() == 3 and len(ctx.ow.runs()) == 4
    assert [c[0] for c in ctx.ow.calls[before:]] == ["qmroct/run-signal"]


def test_resync_sweeps_stretch_with_the_archive_so_a_tick_stays_cheap(ctx, monkeypatch) -> None:
    from qmroct.orchestration import resync

    for i in range(6):
        ctx.store.put("oct-ingest", f"p1/s{i}/ses1/scan{i}.vol", f"scan {i}".encode())
    monkeypatch.setattr(resync, "SWEEP_OBJECTS_PER_S", 0.1)
    resync._LAST_SWEEP.clear()
    resync._LAST_LISTED.clear()
    assert resync.due(ctx, now=1000.0)
    assert resync.resync(ctx).scans == 6
    # Six objects listed at 0.1 a second: the next sweep waits 60 s, not sweep_s.
    assert resync.interval_s(ctx) == max(ctx.sweep_s, 60.0)
    assert not resync.due(ctx, now=1000.0 + 59.0)
    assert resync.due(ctx, now=1000.0 + 60.5)
    # A small archive sweeps every sweep_s as before.
    monkeypatch.setattr(resync, "SWEEP_OBJECTS_PER_S", 1e6)
    assert resync.interval_s(ctx) == ctx.sweep_s


def test_every_query_of_a_tick_and_of_record_result_uses_an_index(ctx, monkeypatch) -> None:
    """No per-tick or per-job statement scans a table that grows with the archive: each is
    planned (EXPLAIN QUERY PLAN, with SQLite's planner as the stack runs it, no statistics)
    as an index search, or as the claim's ordered read of the queue index."""
    import re

    from qmroct.orchestration import resync

    publish(ctx, "centration", "1.0.0", requires=["segmentation"])
    for i in range(3):
        upload(ctx, i)
    # The resync sweep lists the buckets by design, paced by their size (tested above).
    monkeypatch.setattr(resync, "due", lambda _ctx, now=None: False)
    statements: list[str] = []
    conn = ctx.ledger.db._conn
    conn.set_trace_callback(statements.append)
    try:
        answered, seen = 0, 0
        tick(ctx)
        while seen < len(ctx.ow.calls):
            name, params = ctx.ow.calls[seen]
            seen += 1
            if "/run-derive-" in name:
                record_result(
                    ctx,
                    {
                        **{
                            k: params[k]
                            for k in ("job_key", "lease_token", "scan_hash", "measure", "version")
                        },
                        "status": "ok",
                        "output_bucket": params["output_bucket"],
                        "output_key": params["output_key"],
                    },
                )
                answered += 1
            elif "/run-" in name:
                record_result(ctx, measure_action(params))
                answered += 1
            if seen == len(ctx.ow.calls):
                tick(ctx)
    finally:
        conn.set_trace_callback(None)
    assert answered == 6  # 3 derive and 3 measure jobs went through
    assert {j.state for j in ctx.ledger.jobs()} == {JobState.DONE}
    growing = ("jobs", "job_needs", "results", "scans", "derived", "j", "n", "d", "r", "c")
    checked = 0
    for sql in statements:
        if not re.match(r"\s*(SELECT|UPDATE|INSERT|DELETE|WITH)\b", sql, re.I):
            continue
        checked += 1
        plan = [r["detail"] for r in ctx.ledger.db.query("EXPLAIN QUERY PLAN " + sql)]
        for line in plan:
            m = re.match(r"SCAN (\w+)", line)
            if m and m.group(1) in growing and "jobs_queued_order" not in line:
                raise AssertionError(f"{line!r} in the plan of: {sql[:300]}")
            # A sort reads every match first: only the few leased jobs may be sorted.
            if "TEMP B-TREE" in line and "state = 'leased'" not in sql:
                raise AssertionError(f"{line!r} in the plan of: {sql[:300]}")
    assert checked > 50

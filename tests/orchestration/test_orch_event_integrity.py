"""Events are claims: ingest catalogues a scan only under the hash of the bytes really stored."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from orch_doubles import stored_event
from qmroct.events import object_created
from qmroct.orchestration.ingest import on_image_stored
from qmroct.storage.records import MeasureState, MeasureVersion


def _publish(ctx) -> None:  # noqa: ANN001
    ctx.ledger.catalog.put_measure(
        MeasureVersion(name="snr", version="1.0.0", action="run-snr", state=MeasureState.PUBLISHED)
    )


def test_forged_hash_is_refused_and_nothing_is_catalogued(ctx) -> None:  # noqa: ANN001
    _publish(ctx)
    ctx.store.put("oct-ingest", "p/s/ses/a.vol", b"real bytes")
    forged = stored_event("p/s/ses/a.vol", b"other bytes")  # claims the other bytes' hash
    report = on_image_stored(ctx, forged)
    assert report.scans == [] and "claims sha256" in report.skipped[0]
    assert ctx.ledger.catalog.scan_count() == 0 and ctx.ledger.jobs() == []


def test_event_for_a_missing_object_is_refused(ctx) -> None:  # noqa: ANN001
    _publish(ctx)
    late = stored_event("p/s/ses/gone.vol", b"was here once")
    report = on_image_stored(ctx, late)
    assert report.scans == [] and "p/s/ses/gone.vol" in report.skipped[0]
    assert ctx.ledger.catalog.scan_count() == 0


def test_event_without_a_hash_gets_the_computed_one(ctx) -> None:  # noqa: ANN001
    ctx.store.put("oct-ingest", "p/s/ses/b.vol", b"scan b")
    report = on_image_stored(ctx, stored_event("p/s/ses/b.vol", b"scan b", with_hash=False))
    assert report.scans == [hashlib.sha256(b"scan b").hexdigest()]


def test_replayed_and_out_of_order_events_give_one_scan_and_one_job(ctx) -> None:  # noqa: ANN001
    _publish(ctx)
    ctx.store.put("oct-ingest", "p/s/ses/c.vol", b"scan c")
    first = stored_event("p/s/ses/c.vol", b"scan c")
    tagging = stored_event("p/s/ses/c.vol", b"scan c", event="PutTagging")
    for body in (tagging, first, first, tagging, first):
        on_image_stored(ctx, body)
    assert ctx.ledger.catalog.scan_count() == 1
    assert len(ctx.ledger.jobs()) == 1


def test_pattern_is_catalogued_from_the_events_user_metadata(ctx) -> None:  # noqa: ANN001
    data = b"scan d"
    sha = hashlib.sha256(data).hexdigest()
    ctx.store.put("oct-ingest", "p/s/ses/d.vol", data)
    log = object_created(
        event_name="s3:ObjectCreated:Put", bucket="oct-ingest", key="p/s/ses/d.vol",
        size=len(data), etag="e", content_type="binary/octet-stream",
        user_metadata={"X-Amz-Meta-Sha256": sha, "X-Amz-Meta-Pattern": "volume"},
        version_id="v1", at=datetime.now(UTC), sequencer="1", request_id="r", principal="gateway",
        source_host="127.0.0.1", user_agent="test",
    )  # fmt: skip
    on_image_stored(ctx, log.model_dump(by_alias=True))
    assert ctx.ledger.catalog.scan(sha).pattern == "volume"

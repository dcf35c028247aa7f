"""MinIO-format events: the exact body, key escaping, the auth header, and delivery
(at-least-once, in order, retried on any non-2xx, surviving a restart)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from objectstore_support import Receiver, wait_for
from qmroct.events import (
    EventLog,
    decode_key,
    encode_key,
    object_created,
    parse_body,
    render_body,
)
from qmroct.localstore.notify import authorization_header, target_matches
from qmroct.localstore.store import LocalFolderStore, RequestContext
from qmroct.objectstore.base import NotificationTarget

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "minio.md"

# The reference body's shape, inlined so the contract holds even without the reference file.
INLINE_REFERENCE = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "oct-ingest/p1/s 01/ses+1/scan.vol",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-11-22T00:02:40.123Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "gateway"},
            "requestParameters": {
                "principalId": "gateway",
                "region": "",
                "sourceIPAddress": "10.0.0.5",
            },
            "responseElements": {
                "x-amz-id-2": "...",
                "x-amz-request-id": "1868C2D6A8A3B1F0",
                "x-minio-deployment-id": "...",
                "x-minio-origin-endpoint": "http://10.0.0.2:9000",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "oct-ingest",
                    "ownerIdentity": {"principalId": "gateway"},
                    "arn": "arn:aws:s3:::oct-ingest",
                },
                "object": {
                    "key": "p1%2Fs+01%2Fses%2B1%2Fscan.vol",
                    "size": 182734,
                    "eTag": "5d41402abc4b2a76b9719d911017c592",
                    "contentType": "application/octet-stream",
                    "userMetadata": {"content-type": "application/octet-stream"},
                    "versionId": "3f1c2b...",
                    "sequencer": "1868C2D6A8F0A1B2",
                },
            },
            "source": {
                "host": "10.0.0.5",
                "port": "",
                "userAgent": "MinIO (linux; amd64) minio-py/7.2.20",
            },
        }
    ],
}


def _rebuild(ref: dict) -> bytes:
    """Feed the reference's inputs to our builder and render."""
    rec = ref["Records"][0]
    obj = rec["s3"]["object"]
    resp = rec["responseElements"]
    at = datetime.strptime(rec["eventTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    log = object_created(
        event_name=rec["eventName"],
        bucket=rec["s3"]["bucket"]["name"],
        key=unquote_plus(obj["key"]),
        size=obj.get("size", 0),
        etag=obj.get("eTag", ""),
        content_type=obj.get("contentType", ""),
        user_metadata=obj.get("userMetadata", {}),
        version_id=obj.get("versionId"),
        at=at,
        sequencer=obj["sequencer"],
        request_id=resp["x-amz-request-id"],
        principal=rec["userIdentity"]["principalId"],
        source_host=rec["source"]["host"],
        user_agent=rec["source"]["userAgent"],
        region=rec["awsRegion"],
        deployment_id=resp["x-minio-deployment-id"],
        origin_endpoint=resp["x-minio-origin-endpoint"],
        amz_id_2=resp["x-amz-id-2"],
    )
    return render_body(log)


def _go_compact(ref: dict) -> bytes:
    # Go's json.Marshal: no spaces, non-ASCII as UTF-8 (the reference has no <, > or &).
    return json.dumps(ref, separators=(",", ":"), ensure_ascii=False).encode()


def test_reference_body_reproduced_byte_for_byte() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"reference not reachable at {REFERENCE}; the inline copy is tested below")
    block = re.search(r"```json\n(.*?)```", REFERENCE.read_text(), re.S)
    assert block, "no JSON block in the MinIO reference"
    ref = json.loads(block.group(1))
    assert ref == INLINE_REFERENCE, "the reference changed: update the inline copy"
    assert _rebuild(ref) == _go_compact(ref)


def test_inline_reference_body_reproduced_byte_for_byte() -> None:
    body = _rebuild(INLINE_REFERENCE)
    assert body == _go_compact(INLINE_REFERENCE)
    assert list(json.loads(body)["Records"][0]) == list(INLINE_REFERENCE["Records"][0])


def test_empty_fields_are_omitted_like_go_omitempty() -> None:
    ref = json.loads(json.dumps(INLINE_REFERENCE))
    obj = ref["Records"][0]["s3"]["object"]
    for name in ("size", "eTag", "contentType", "userMetadata", "versionId"):
        del obj[name]
    body = _rebuild(ref)
    assert body == _go_compact(ref)
    assert b'"size"' not in body and b'"versionId"' not in body and b'"sequencer"' in body


def test_go_escaping_of_html_characters_and_sorted_maps() -> None:
    ref = json.loads(json.dumps(INLINE_REFERENCE))
    ref["Records"][0]["s3"]["object"]["userMetadata"] = {"z": "1", "X-Amz-Meta-A": "<&>"}
    body = _rebuild(ref)
    assert b'"userMetadata":{"X-Amz-Meta-A":"\\u003c\\u0026\\u003e","z":"1"}' in body


@given(st.text(min_size=1, max_size=80))
def test_key_escaping_round_trips_like_query_escape(key: str) -> None:
    escaped = encode_key(key)
    assert decode_key(escaped) == key
    assert " " not in escaped and "/" not in escaped
    assert re.fullmatch(r"[A-Za-z0-9_.~+%-]*", escaped)
    assert escaped == quote_plus(key, safe="")


def test_reference_escaping_examples() -> None:
    assert encode_key("p1/s 01/ses+1/scan.vol") == "p1%2Fs+01%2Fses%2B1%2Fscan.vol"
    log = parse_body(_go_compact(INLINE_REFERENCE))
    (obj,) = log.objects()
    assert (obj.bucket, obj.key, obj.size, obj.version_id) == (
        "oct-ingest",
        "p1/s 01/ses+1/scan.vol",
        182734,
        "3f1c2b...",
    )
    assert obj.metadata == {"content-type": "application/octet-stream"}
    assert log.key == "oct-ingest/p1/s 01/ses+1/scan.vol"


def test_authorization_header_rules() -> None:
    assert authorization_header("tok123") == "Bearer tok123"
    assert authorization_header("Basic dXNlcjprZXk=") == "Basic dXNlcjprZXk="
    assert authorization_header("") is None
    assert authorization_header("a b c") is None


def test_target_matching() -> None:
    t = NotificationTarget(arn="a", endpoint="http://x", prefix="p1/", suffix=".vol")
    assert target_matches(t, "s3:ObjectCreated:Put", "p1/a.vol")
    assert not target_matches(t, "s3:ObjectCreated:Put", "p2/a.vol")
    assert not target_matches(t, "s3:ObjectCreated:Put", "p1/a.png")
    assert not target_matches(t, "s3:ObjectRemoved:Delete", "p1/a.vol")
    only = NotificationTarget(arn="b", endpoint="http://x", events=["s3:ObjectCreated:Put"])
    assert not target_matches(only, "s3:ObjectCreated:CompleteMultipartUpload", "k")


def _subscribe(store: LocalFolderStore, receiver: Receiver, token: str = "tok-123") -> None:
    store.ensure_bucket("oct-ingest")
    store.set_notification(
        "oct-ingest",
        [
            NotificationTarget(
                arn="arn:minio:sqs::QMROCT:webhook",
                endpoint=receiver.url,
                auth_token=token,
                suffix=".vol",
            )
        ],
    )


def test_store_emits_minio_body_and_headers(local_store, receiver) -> None:
    _subscribe(local_store, receiver)
    ctx = RequestContext(principal="gateway", source_host="10.0.0.5", user_agent="ua/1")
    info = local_store.put(
        "oct-ingest", "p1/s 01/ses+1/scan.vol", b"hello", metadata={"pseudonym": "P1"}, context=ctx
    )
    local_store.put("oct-ingest", "p1/picture.png", b"not subscribed (suffix)")
    wait_for(lambda: len(receiver.delivered()) == 1, what="one delivery")
    headers, body, _ = receiver.received[0]
    assert headers["authorization"] == "Bearer tok-123"
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert list(doc) == ["EventName", "Key", "Records"]
    rec = doc["Records"][0]
    assert list(rec) == list(INLINE_REFERENCE["Records"][0])
    assert doc["Key"] == "oct-ingest/p1/s 01/ses+1/scan.vol"
    obj = rec["s3"]["object"]
    assert obj["key"] == "p1%2Fs+01%2Fses%2B1%2Fscan.vol"
    assert (obj["size"], obj["eTag"], obj["versionId"]) == (5, info.etag, info.version_id)
    assert obj["userMetadata"] == {
        "X-Amz-Meta-Pseudonym": "P1",
        "content-type": "application/octet-stream",
    }
    assert rec["requestParameters"]["sourceIPAddress"] == "10.0.0.5"
    assert rec["userIdentity"]["principalId"] == "gateway"
    # The body is exactly what our renderer (checked against the reference) gives.
    assert render_body(EventLog.model_validate(doc)) == body


def test_two_word_token_is_sent_verbatim(local_store, receiver) -> None:
    _subscribe(local_store, receiver, token="Basic dXVpZDprZXk=")
    local_store.put("oct-ingest", "a.vol", b"x")
    wait_for(lambda: len(receiver.delivered()) == 1, what="delivery")
    assert receiver.received[0][0]["authorization"] == "Basic dXVpZDprZXk="


@pytest.mark.parametrize("failure", [500, 429, 503])
def test_retried_in_order_on_non_2xx(local_store, receiver, failure: int) -> None:
    receiver.statuses = [failure, failure, failure]
    _subscribe(local_store, receiver)
    keys = [f"p/s/e/{i}.vol" for i in range(5)]
    for k in keys:
        local_store.put("oct-ingest", k, k.encode())
    wait_for(lambda: len(receiver.delivered()) == 5, what="all five delivered")
    order = [json.loads(b)["Key"] for b in receiver.delivered()]
    assert order == [f"oct-ingest/{k}" for k in keys]
    # Head-of-line: the first event was tried until it got through, before any other one.
    attempts = [json.loads(b)["Key"] for _, b, _ in receiver.received]
    assert attempts[:4] == [f"oct-ingest/{keys[0]}"] * 4
    wait_for(lambda: local_store.notifier.pending() == 0, what="queue drained")


def test_pending_events_survive_a_restart(tmp_path, receiver) -> None:
    root = tmp_path / "store"
    store = LocalFolderStore(root, retry_interval=0.05)
    receiver.statuses = [500] * 10_000  # endpoint down: nothing is acknowledged
    _subscribe(store, receiver)
    for i in range(3):
        store.put("oct-ingest", f"k{i}.vol", b"x")
    wait_for(lambda: len(receiver.received) >= 2, what="failed attempts")
    store.close()
    assert receiver.delivered() == []
    queued = list((root / ".qmroct" / "events").rglob("*.event"))
    assert len(queued) == 3
    with receiver.lock:
        receiver.statuses = []  # endpoint back
    restarted = LocalFolderStore(root, retry_interval=0.05)
    try:
        wait_for(lambda: len(receiver.delivered()) == 3, what="redelivery after restart")
        keys = [json.loads(b)["Key"] for b in receiver.delivered()]
        assert keys == ["oct-ingest/k0.vol", "oct-ingest/k1.vol", "oct-ingest/k2.vol"]
        wait_for(lambda: restarted.notifier.pending() == 0, what="queue drained")
    finally:
        restarted.close()


def test_multipart_completion_event(local_store, receiver) -> None:
    _subscribe(local_store, receiver)
    uid = local_store.start_multipart("oct-ingest", "m.vol", "application/octet-stream", None)
    e1 = local_store.upload_part("oct-ingest", "m.vol", uid, 1, b"a" * 2048)
    e2 = local_store.upload_part("oct-ingest", "m.vol", uid, 2, b"b")
    info = local_store.complete_multipart("oct-ingest", "m.vol", uid, [(1, e1), (2, e2)])
    wait_for(lambda: len(receiver.delivered()) == 1, what="delivery")
    doc = json.loads(receiver.delivered()[0])
    assert doc["EventName"] == "s3:ObjectCreated:CompleteMultipartUpload"
    assert doc["Records"][0]["s3"]["object"]["eTag"] == info.etag

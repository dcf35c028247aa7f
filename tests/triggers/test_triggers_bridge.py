"""The webhook-to-trigger bridge, the event filters, the trigger fire and the notify config."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from qmroct.events import object_created, render_body
from qmroct.localstore.store import LocalFolderStore
from qmroct.objectstore.base import NotificationTarget
from qmroct.triggers.bridge import BridgeConfig, BridgeServer
from qmroct.triggers.filters import Route, classify
from qmroct.triggers.fire import TriggerFireError, openwhisk_fire
from qmroct.triggers.notify_config import NotifyConfig, Subscription, write_notify_config

TOKEN = "bridge-token-123"
ROUTES = [
    Route(bucket="oct-ingest", trigger="image-stored"),
    Route(bucket="oct-measures", trigger="measure-published", suffixes=(".json",)),
]


def _event(key: str, *, bucket: str = "oct-ingest", name: str = "s3:ObjectCreated:Put") -> bytes:
    from datetime import UTC, datetime

    log = object_created(
        event_name=name,
        bucket=bucket,
        key=key,
        size=3,
        etag="abc",
        content_type="application/octet-stream",
        user_metadata={},
        version_id="v1",
        at=datetime.now(UTC),
        sequencer="1",
        request_id="1",
        principal="gateway",
        source_host="127.0.0.1",
        user_agent="t",
    )
    return render_body(log)


class Fired:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, trigger: str, params: dict[str, Any]) -> str | None:
        if self.fail:
            raise self.fail
        self.calls.append((trigger, params))
        return f"act-{len(self.calls)}"


@pytest.fixture
def bridge():
    fired = Fired()
    with BridgeServer(BridgeConfig(token=TOKEN, routes=ROUTES), fired) as srv:
        yield srv, fired


def _post(url: str, body: bytes, token: str | None = TOKEN) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(url, data=body, headers=headers, timeout=10)


def test_fires_on_object_creation(bridge) -> None:
    srv, fired = bridge
    body = _event("p1/s 01/ses+1/scan.vol")
    resp = _post(srv.endpoint, body)
    assert resp.status_code == 202
    assert resp.json()["fired"] == [{"trigger": "image-stored", "activationId": "act-1"}]
    ((trigger, params),) = fired.calls
    assert trigger == "image-stored"
    assert params == json.loads(body)  # the trigger gets exactly MinIO's body


@pytest.mark.parametrize("token", [None, "wrong-token-xyz", ""])
def test_unauthorized_fires_nothing(bridge, token) -> None:
    srv, fired = bridge
    resp = _post(srv.endpoint, _event("a.vol"), token=token)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert fired.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"EventName": "s3:ObjectCreated:Put", "Key": "b/k", "Records": []}',
        b'{"EventName": 1, "Key": "b/k", "Records": [{"eventTime": "x"}]}',
    ],
)
def test_malformed_gets_400_and_fires_nothing(bridge, body: bytes) -> None:
    srv, fired = bridge
    resp = _post(srv.endpoint, body)
    assert resp.status_code == 400 and "error" in resp.json()
    assert fired.calls == []


def test_key_mismatch_and_oversize_are_refused(bridge) -> None:
    srv, fired = bridge
    doc = json.loads(_event("a.vol"))
    doc["Key"] = "oct-ingest/other.vol"
    assert _post(srv.endpoint, json.dumps(doc).encode()).status_code == 400
    assert _post(srv.endpoint, b"{" + b" " * (1024 * 1024 + 1) + b"}").status_code == 413
    assert fired.calls == []


@pytest.mark.parametrize(
    ("key", "bucket", "name"),
    [
        ("a.vol", "oct-ingest", "s3:ObjectCreated:PutTagging"),
        ("a.vol", "oct-ingest", "s3:ObjectCreated:DeleteTagging"),
        ("a.vol", "oct-ingest", "s3:ObjectCreated:PutRetention"),
        ("a.vol", "oct-ingest", "s3:ObjectCreated:PutLegalHold"),
        ("a.vol", "oct-ingest", "s3:ObjectRemoved:Delete"),
        ("a.vol", "elsewhere", "s3:ObjectCreated:Put"),
        ("m/1.txt", "oct-measures", "s3:ObjectCreated:Put"),
        ("../../etc/passwd", "oct-ingest", "s3:ObjectCreated:Put"),
    ],
)
def test_ignored_events_are_acknowledged_without_firing(bridge, key, bucket, name) -> None:
    srv, fired = bridge
    resp = _post(srv.endpoint, _event(key, bucket=bucket, name=name))
    assert resp.status_code == 200
    assert resp.json()["fired"] == [] and resp.json()["ignored"][0]["reason"]
    assert fired.calls == []


def test_fire_failure_answers_503_so_minio_retries() -> None:
    fired = Fired(fail=TriggerFireError("image-stored", "answered 429", 429))
    with BridgeServer(BridgeConfig(token=TOKEN, routes=ROUTES), fired) as srv:
        resp = _post(srv.endpoint, _event("a.vol"))
    assert resp.status_code == 503 and "429" in resp.json()["error"]


def test_classify_accepts_every_real_creation() -> None:
    from qmroct.events import parse_body

    for name in (
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    ):
        (v,) = classify(parse_body(_event("p/s/e/x.vol", name=name)), ROUTES)
        assert v.route is not None and v.route.trigger == "image-stored" and v.reason == ""
    (v,) = classify(parse_body(_event("m/1.0.JSON", bucket="oct-measures")), ROUTES)
    assert v.route is not None and v.route.trigger == "measure-published"


def test_end_to_end_local_store_to_bridge(tmp_path, bridge) -> None:
    srv, fired = bridge
    store = LocalFolderStore(tmp_path / "s", retry_interval=0.05)
    try:
        store.ensure_bucket("oct-ingest")
        store.set_notification(
            "oct-ingest",
            [
                NotificationTarget(
                    arn="arn:minio:sqs::BRIDGE:webhook", endpoint=srv.endpoint, auth_token=TOKEN
                )
            ],
        )
        info = store.put("oct-ingest", "p1/s 01/ses+1/scan é.vol", b"data")
        deadline = time.monotonic() + 20
        while not fired.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        ((trigger, params),) = fired.calls
        rec = params["Records"][0]["s3"]["object"]
        assert trigger == "image-stored"
        assert params["Key"] == "oct-ingest/p1/s 01/ses+1/scan é.vol"
        assert rec["versionId"] == info.version_id and rec["eTag"] == info.etag
    finally:
        store.close()


class _OpenWhiskStub:
    """Answers trigger fires with the recorded shapes: 202 {"activationId"}, 204, 429."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, dict(self.headers), body))
                status = outer.statuses.pop(0)
                payload = {
                    202: b'{"activationId":"7a3b0f6e0d9c4e1b8b0f6e0d9c4e1b8b"}',
                    429: b'{"error":"Too many requests in the last minute (count: 61, allowed: 60).","code":"x"}',
                }.get(status, b"")
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_openwhisk_fire_request_and_responses() -> None:
    stub = _OpenWhiskStub([202, 204, 429])
    try:
        fire = openwhisk_fire(stub.url, "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:secretkey", "guest")
        assert fire("image-stored", {"Key": "b/k"}) == "7a3b0f6e0d9c4e1b8b0f6e0d9c4e1b8b"
        assert fire("image-stored", {}) is None
        with pytest.raises(TriggerFireError) as err:
            fire("image-stored", {})
        assert err.value.status == 429
        path, headers, body = stub.requests[0]
        assert path == "/api/v1/namespaces/guest/triggers/image-stored"
        assert headers["Authorization"].startswith("Basic ")
        assert json.loads(body) == {"Key": "b/k"}
    finally:
        stub.httpd.shutdown()
        stub.httpd.server_close()


def test_notify_config_files(tmp_path) -> None:
    cfg = NotifyConfig(
        target_id="QMROCT",
        endpoint="https://ow.example/api/v1/namespaces/_/triggers/image-stored",
        auth_token="Basic dXVpZDprZXk=",
        subscriptions=[Subscription(bucket="oct-ingest", suffix=".vol")],
    )
    env, script = write_notify_config(cfg, tmp_path)
    text = env.read_text()
    assert "MINIO_NOTIFY_WEBHOOK_ENABLE_QMROCT=on" in text
    assert "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_QMROCT=/var/lib/minio-events" in text
    assert "MINIO_API_SYNC_EVENTS=on" in text
    assert "MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_QMROCT='Basic dXVpZDprZXk='" in text
    assert (
        "mc event add qmroct/oct-ingest arn:minio:sqs::QMROCT:webhook --event put --suffix .vol"
        in script.read_text()
    )
    with pytest.raises(ValueError):
        NotifyConfig(
            target_id="x", endpoint="http://e", auth_token="t", queue_dir="rel", subscriptions=[]
        )
    with pytest.raises(ValueError, match="inside the data drive"):
        NotifyConfig(
            target_id="x", endpoint="http://e", auth_token="t", queue_dir="/data/events",
            subscriptions=[],
        )  # fmt: skip


def test_store_commands_are_registered() -> None:
    from click.testing import CliRunner
    from qmroct.cli.main import cli

    result = CliRunner().invoke(
        cli,
        ["store", "bridge", "--token", "tok-12345678"],
        env={"QMROCT_OW_API_HOST": "", "QMROCT_OW_AUTH": ""},
    )
    assert result.exit_code == 2 and "QMROCT_OW_API_HOST" in result.output

"""The REST API over HTTP: auth, the invoke status codes, triggers, activations, wsk updates."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from typing import Any

import pytest
import requests
from qmroct.runtime import EmbeddedWhisk, messages

NS = "/api/v1/namespaces/_"


def _call(
    whisk: EmbeddedWhisk, method: str, path: str, *, auth: Any = "ok", **kw: Any
) -> requests.Response:
    if auth == "ok":
        auth = tuple(whisk.auth.split(":", 1))
    return requests.request(method, whisk.api_host + path, auth=auth, timeout=30, **kw)


def test_runtimes_document_is_public(whisk: EmbeddedWhisk) -> None:
    resp = _call(whisk, "GET", "/", auth=None)
    assert resp.status_code == 200
    kinds = [k["kind"] for k in resp.json()["runtimes"]["python"]]
    assert "python:3.11" in kinds


@pytest.mark.parametrize("auth", [None, ("someone", "wrong")])
def test_api_needs_basic_auth(whisk: EmbeddedWhisk, auth: Any) -> None:
    resp = _call(whisk, "GET", f"{NS}/limits", auth=auth)
    assert resp.status_code == 401
    assert "authentication" in resp.json()["error"]
    assert _call(whisk, "POST", f"{NS}/actions/rt/add_one", auth=auth, json={}).status_code == 401


def test_limits(whisk: EmbeddedWhisk) -> None:
    limits = _call(whisk, "GET", f"{NS}/limits").json()
    assert limits["maxPayloadSize"] == 1048576 and limits["userMemory"] == 2048 * 1024 * 1024


def test_invoke_status_codes(whisk: EmbeddedWhisk) -> None:
    ok = _call(whisk, "POST", f"{NS}/actions/rt/add_one?blocking=true&result=true", json={"n": 1})
    assert (ok.status_code, ok.json()["n"]) == (200, 2)
    full = _call(whisk, "POST", f"{NS}/actions/rt/add_one?blocking=true", json={"n": 1}).json()
    assert full["response"]["statusCode"] == 0 and full["name"] == "add_one"
    failed = _call(whisk, "POST", f"{NS}/actions/rt/boom?blocking=true&result=true", json={})
    assert failed.status_code == 502 and failed.json() == {"error": "boom: no reason"}
    dev = _call(whisk, "POST", f"{NS}/actions/rt/not_dict?blocking=true&result=true", json={})
    assert dev.status_code == 502 and dev.json() == {"error": messages.NOT_DICT}
    too_big = _call(
        whisk, "POST", f"{NS}/actions/rt/echo?blocking=true", json={"b": "x" * 1_100_000}
    )
    assert too_big.status_code == 413 and "> 1048576 bytes" in too_big.json()["error"]
    big = _call(whisk, "POST", f"{NS}/actions/rt/big_result?blocking=true&result=true", json={})
    assert big.status_code == 413 and big.json()["error"].endswith(" > 1048576 bytes.")
    missing = _call(whisk, "POST", f"{NS}/actions/rt/ghost?blocking=true", json={})
    assert missing.status_code == 404
    final = _call(whisk, "POST", f"{NS}/actions/rt/guarded?blocking=true", json={"secret": "s"})
    assert final.status_code == 400 and final.json()["error"] == messages.PARAMS_NOT_ALLOWED


def test_non_blocking_and_blocking_past_the_wait_answer_202(whisk: EmbeddedWhisk) -> None:
    resp = _call(whisk, "POST", f"{NS}/actions/rt/add_one", json={"n": 5})
    assert resp.status_code == 202
    activation_id = resp.json()["activationId"]
    whisk.wait_for(activation_id)
    record = _call(whisk, "GET", f"{NS}/activations/{activation_id}").json()
    assert record["response"]["result"] == {"n": 6, "secret": None}
    slow = _call(
        whisk,
        "POST",
        f"{NS}/actions/rt/sleeper?blocking=true&result=true&timeout=100",
        json={"seconds": 0.6},
    )
    assert slow.status_code == 202 and set(slow.json()) == {"activationId"}
    assert whisk.wait_for(slow.json()["activationId"]).response.success


def test_trigger_fire_202_and_204(whisk: EmbeddedWhisk) -> None:
    fired = _call(whisk, "POST", f"{NS}/triggers/poke", json={"hello": "world"})
    assert fired.status_code == 202 and "activationId" in fired.json()
    trigger = whisk.wait_for(fired.json()["activationId"])
    rule_ids = [__import__("json").loads(line)["activationId"] for line in trigger.logs]
    echoed = [whisk.wait_for(i) for i in rule_ids]
    headers = next(r for r in echoed if r.name == "echo").response.result["args"]["__ow_headers"]
    assert headers["authorization"].startswith("Basic ")  # the caller's, for the action only
    assert _call(whisk, "POST", f"{NS}/triggers/lonely", json={}).status_code == 204
    assert _call(whisk, "POST", f"{NS}/triggers/nope", json={}).status_code == 404


def test_activation_listing(whisk: EmbeddedWhisk) -> None:
    since = int(time.time() * 1000)
    for n in range(3):
        _call(whisk, "POST", f"{NS}/actions/rt/add_one?blocking=true", json={"n": n})
    # A packaged action's records are found by pkg/name only, as the real filter finds them.
    bare = _call(whisk, "GET", f"{NS}/activations?name=add_one&since={since}").json()
    assert bare == []
    listed = _call(whisk, "GET", f"{NS}/activations?name=rt/add_one&limit=2&since={since}").json()
    assert len(listed) == 2 and all(r["name"] == "add_one" for r in listed)
    assert all(r["namespace"] == "guest" and r["statusCode"] == 0 for r in listed)
    assert "logs" not in listed[0] and "response" not in listed[0]
    docs = _call(whisk, "GET", f"{NS}/activations?name=rt/add_one&limit=1&docs=true").json()
    assert docs[0]["response"]["result"] == {"n": 3, "secret": None}
    assert _call(whisk, "GET", f"{NS}/activations/{'0' * 32}").status_code == 404


def _zip(source: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", source)
    return base64.b64encode(buf.getvalue()).decode()


def test_wsk_update_bumps_version_and_forces_cold_start(whisk: EmbeddedWhisk) -> None:
    path = f"{NS}/actions/rt/updatable"
    body = {
        "namespace": "_",
        "name": "updatable",
        "exec": {
            "kind": "python:3.11",
            "code": _zip("def main(a):\n    return {'v': 1, 'a': a}\n"),
            "binary": True,
            "main": "main",
        },
        "limits": {"timeout": 5000, "memory": 128, "logs": 1},
        "parameters": [{"key": "p1", "value": 1}, {"key": "p2", "value": 2}],
        "annotations": [{"key": "a1", "value": True}],
    }
    created = _call(whisk, "PUT", f"{path}?overwrite=true", json=body)
    assert created.status_code == 200 and created.json()["version"] == "0.0.1"
    assert _call(whisk, "PUT", f"{path}?overwrite=false", json=body).status_code == 409
    first = _call(whisk, "POST", f"{path}?blocking=true", json={}).json()
    assert first["response"]["result"] == {
        "v": 1,
        "a": {"pkg_param": "from-package", "p1": 1, "p2": 2},
    }
    # `wsk action update updatable new.zip -p p3 3 -a a2 x`: -p replaces, -a merges.
    body.update(
        exec={**body["exec"], "code": _zip("def main(a):\n    return {'v': 2, 'a': a}\n")},
        parameters=[{"key": "p3", "value": 3}],
        annotations=[{"key": "a2", "value": "x"}],
    )
    updated = _call(whisk, "PUT", f"{path}?overwrite=true", json=body).json()
    assert updated["version"] == "0.0.2"
    # Actions.scala amendAnnotations: provide-api-key on create, exec always.
    assert {a["key"] for a in updated["annotations"]} == {"a1", "a2", "provide-api-key", "exec"}
    assert updated["parameters"] == [{"key": "p3", "value": 3}]
    second = _call(whisk, "POST", f"{path}?blocking=true", json={}).json()
    assert second["version"] == "0.0.2"
    assert second["response"]["result"] == {"v": 2, "a": {"pkg_param": "from-package", "p3": 3}}
    assert any(a["key"] == "initTime" for a in second["annotations"])
    bad_kind = {**body, "exec": {**body["exec"], "kind": "nodejs:20"}}
    assert _call(whisk, "PUT", f"{path}?overwrite=true", json=bad_kind).status_code == 400

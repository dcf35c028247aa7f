"""OpenWhiskClient: request shapes against recorded exchanges, then against the embedded API."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from qmroct.clients.openwhisk import (
    ActionError,
    NotFound,
    OpenWhiskClient,
    PayloadTooLarge,
    Throttled,
    Unauthorized,
)
from qmroct.errors import ConfigError
from qmroct.runtime import EmbeddedWhisk
from requests.adapters import BaseAdapter

AUTH = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
HOST = "https://openwhisk.example.org"


class Recorder(BaseAdapter):
    """Answers from recorded responses and keeps the requests the client sent."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        status, body = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code = status
        resp._content = b"" if body is None else json.dumps(body).encode()
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def _client(answers: list[tuple[int, Any]]) -> tuple[OpenWhiskClient, Recorder]:
    session = requests.Session()
    recorder = Recorder(answers)
    session.mount("https://", recorder)
    return OpenWhiskClient(HOST, AUTH, session=session), recorder


def _shape(req: requests.PreparedRequest) -> tuple[str, str, dict[str, list[str]], Any]:
    url = urlsplit(req.url or "")
    body = json.loads(req.body) if req.body else None
    return req.method or "", url.path, parse_qs(url.query), body


def test_blocking_invoke_request_shape() -> None:
    client, rec = _client([(200, {"snr": 3.2})])
    assert client.invoke(
        "qmroct/measure-snr", {"scan_url": "u"}, blocking=True, result=True, timeout_ms=120000
    ) == {"snr": 3.2}
    method, path, query, body = _shape(rec.sent[0])
    assert (method, path) == ("POST", "/api/v1/namespaces/_/actions/qmroct/measure-snr")
    assert query == {"blocking": ["true"], "result": ["true"], "timeout": ["120000"]}
    assert body == {"scan_url": "u"}
    expected = "Basic " + base64.b64encode(AUTH.encode()).decode()
    assert rec.sent[0].headers["Authorization"] == expected


def test_non_blocking_invoke_and_trigger_fire() -> None:
    client, rec = _client(
        [(202, {"activationId": "a1"}), (202, {"activationId": "t1"}), (204, None)]
    )
    assert client.invoke("qmroct/scheduler") == {"activationId": "a1"}
    assert _shape(rec.sent[0])[2] == {"blocking": ["false"], "result": ["false"]}
    assert client.fire_trigger("image-stored", {"Records": []}) == "t1"
    assert _shape(rec.sent[1])[:2] == ("POST", "/api/v1/namespaces/_/triggers/image-stored")
    assert client.fire_trigger("image-stored") is None


def test_update_action_sends_wsk_body() -> None:
    client, rec = _client([(200, {"name": "measure-snr", "version": "0.0.2"})])
    client.update_action(
        "qmroct/measure-snr",
        b"PK-zip",
        kind="python:3.11",
        main="main",
        limits={"timeout": 120000, "memory": 512, "logs": 5},
        parameters={"k": "v"},
        annotations={"provide-api-key": True},
    )
    method, path, query, body = _shape(rec.sent[0])
    assert (method, path, query) == (
        "PUT",
        "/api/v1/namespaces/_/actions/qmroct/measure-snr",
        {"overwrite": ["true"]},
    )
    assert body["exec"] == {
        "kind": "python:3.11",
        "code": base64.b64encode(b"PK-zip").decode(),
        "binary": True,
        "main": "main",
    }
    assert body["limits"] == {"timeout": 120000, "memory": 512, "logs": 5}
    assert body["parameters"] == [{"key": "k", "value": "v"}]
    assert body["annotations"] == [{"key": "provide-api-key", "value": True}]


def test_activation_queries_and_limits() -> None:
    client, rec = _client(
        [(200, []), (200, {"activationId": "x"}), (200, {"concurrentInvocations": 30})]
    )
    client.activations(name="qmroct/scheduler", since=1700000000000, limit=5)
    assert _shape(rec.sent[0])[1:3] == (
        "/api/v1/namespaces/_/activations",
        {
            "name": ["qmroct/scheduler"],
            "since": ["1700000000000"],
            "limit": ["5"],
            "docs": ["true"],
        },
    )
    client.activation("x")
    assert _shape(rec.sent[1])[1] == "/api/v1/namespaces/_/activations/x"
    assert client.limits()["concurrentInvocations"] == 30


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": "The supplied authentication is invalid.", "code": "c"}, Unauthorized),
        (404, {"error": "The requested resource does not exist.", "code": "c"}, NotFound),
        (413, {"error": "Request larger than allowed: 2 > 1 bytes.", "code": "c"}, PayloadTooLarge),
        (
            429,
            {
                "error": "Too many concurrent requests in flight (count: 30, allowed: 30).",
                "code": "c",
            },
            Throttled,
        ),
        (502, {"error": "boom"}, ActionError),
    ],
)
def test_recorded_errors_become_typed(status: int, body: dict, error: type[Exception]) -> None:
    client, _ = _client([(status, body)])
    with pytest.raises(error) as caught:
        client.invoke("qmroct/x", blocking=True, result=True)
    assert body["error"] in str(caught.value)


def test_from_env_needs_host_and_key() -> None:
    env = {
        "__OW_API_HOST": "openwhisk.example.org",
        "__OW_API_KEY": AUTH,
        "__OW_NAMESPACE": "guest",
    }
    client = OpenWhiskClient.from_env(env)
    assert (client.api_host, client.namespace) == (HOST, "guest")
    with pytest.raises(ConfigError, match="provide-api-key"):
        OpenWhiskClient.from_env({"__OW_API_HOST": HOST})


# -- against the embedded API -------------------------------------------------------------------
def test_client_against_embedded_server(whisk: EmbeddedWhisk) -> None:
    client = OpenWhiskClient(whisk.api_host, whisk.auth)
    assert client.invoke("rt/add_one", {"n": 1}, blocking=True, result=True)["n"] == 2
    record = client.invoke("rt/add_one", {"n": 1}, blocking=True)
    assert client.activation(record["activationId"])["response"]["result"]["n"] == 2
    assert (
        client.activations(name="rt/add_one", limit=1)[0]["activationId"] == record["activationId"]
    )
    with pytest.raises(ActionError, match="boom: no reason"):
        client.invoke("rt/boom", blocking=True, result=True)
    with pytest.raises(NotFound):
        client.invoke("rt/ghost", blocking=True)
    with pytest.raises(PayloadTooLarge):
        client.invoke("rt/echo", {"b": "x" * 1_100_000})
    with pytest.raises(Unauthorized):
        OpenWhiskClient(whisk.api_host, "nobody:nothing").limits()
    assert client.fire_trigger("lonely") is None
    assert client.fire_trigger("poke", {"via": "client"})
    assert "python:3.11" in json.dumps(client.runtimes()["runtimes"])


def test_client_update_through_embedded_server(whisk: EmbeddedWhisk) -> None:
    client = OpenWhiskClient(whisk.api_host, whisk.auth)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "def main(a):\n    return {'hi': a.get('who')}\n")
    first = client.update_action(
        "rt/hello",
        buf.getvalue(),
        parameters={"who": "bound"},
        limits={"timeout": 5000, "memory": 128, "logs": 1},
    )
    second = client.update_action("rt/hello", buf.getvalue())
    assert (first["version"], second["version"]) == ("0.0.1", "0.0.2")
    assert client.invoke("rt/hello", blocking=True, result=True) == {"hi": "bound"}

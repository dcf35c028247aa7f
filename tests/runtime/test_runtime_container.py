"""The runtime protocol through one container: the reference's /init and /run exchange."""

from __future__ import annotations

import base64
import io
import json
import textwrap
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from qmroct.runtime import messages
from qmroct.runtime.container import Container

SOURCE = """
import os, sys
INITS = []
INITS.append(1)
def main(args):
    print("hello from main")
    if args.get("fail"):
        raise RuntimeError("asked to fail")
    if args.get("scalar"):
        return "not a dict"
    if args.get("array"):
        return [1, 2]
    return {"args": args, "inits": len(INITS), "env": dict(os.environ)}
"""


def _zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", textwrap.dedent(SOURCE))
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container("contract", 128, tmp_path, {"__OW_API_HOST": "http://127.0.0.1:1"})
    c.start()
    yield c
    c.destroy()


def _post(c: Container, path: str, body: dict) -> tuple[int, object]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{c.port}{path}", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_reference_exchange(container: Container) -> None:
    init = {
        "value": {
            "name": "measure-snr",
            "main": "main",
            "binary": True,
            "code": _zip(),
            "env": {"INIT_ONLY": "yes"},
        }
    }
    assert _post(container, "/init", init) == (200, {"ok": True})
    assert _post(container, "/init", init) == (403, {"error": messages.REINIT})
    run = {
        "value": {"scan": "s3://oct-ingest/p/s/1.vol"},
        "namespace": "guest",
        "action_name": "/guest/qmroct/measure-snr",
        "action_version": "0.0.3",
        "activation_id": "a1b2",
        "transaction_id": "t1",
        "deadline": "1700000000000",
        "api_key": "uuid:key",
    }
    container.logs.begin(1024 * 1024)
    status, result = _post(container, "/run", run)
    assert status == 200
    assert result["args"] == {"scan": "s3://oct-ingest/p/s/1.vol"}
    assert result["inits"] == 1
    env = result["env"]
    assert env["__OW_ACTION_NAME"] == "/guest/qmroct/measure-snr"
    assert env["__OW_ACTION_VERSION"] == "0.0.3"
    assert env["__OW_DEADLINE"] == "1700000000000"
    assert env["__OW_API_KEY"] == "uuid:key"
    assert env["INIT_ONLY"] == "yes"
    assert "__OW_VALUE" not in env
    # Scrubbed: no PATH, no HOME; only __OW_*, the /init env and PYTHONIOENCODING.
    assert set(env) - {"INIT_ONLY", "PYTHONIOENCODING"} <= {k for k in env if k.startswith("__OW_")}
    logs = container.logs.take(5)
    assert any(line.endswith("stdout: hello from main") for line in logs)
    assert not any(messages.SENTINEL in line for line in logs)


def test_results_errors_and_arrays(container: Container) -> None:
    init = {"value": {"name": "a", "main": "main", "binary": True, "code": _zip()}}
    assert _post(container, "/init", init)[0] == 200
    assert _post(container, "/run", {"value": {"scalar": True}}) == (
        502,
        {"error": messages.NOT_DICT},
    )
    assert _post(container, "/run", {"value": {"array": True}}) == (200, [1, 2])
    container.logs.begin(1024 * 1024)
    assert _post(container, "/run", {"value": {"fail": True}}) == (200, {"error": "asked to fail"})
    logs = container.logs.take(5)
    assert any("stderr: Traceback" in line for line in logs)
    assert any("RuntimeError: asked to fail" in line for line in logs)


def test_run_before_init_is_refused(container: Container) -> None:
    status, body = _post(container, "/run", {"value": {}})
    assert status == 403 and "uninitialized" in body["error"]


def test_broken_action_fails_init_with_logs(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "import no_such_module_anywhere\n")
    c = Container("broken", 128, tmp_path, {})
    c.start()
    try:
        c.logs.begin(1024 * 1024)
        outcome = c.init("broken", "main", base64.b64encode(buf.getvalue()).decode(), {}, 5000)
        assert not outcome.ok and outcome.destroy
        assert outcome.response.result == {"error": messages.START_FAILED}
        assert any("no_such_module_anywhere" in line for line in c.logs.take(5))
    finally:
        c.destroy()


IMPORTS = """
import importlib, sys
def main(args):
    found = {}
    for name in args["modules"]:
        try:
            found[name] = getattr(importlib.import_module(name), "__file__", None) or "?"
        except ImportError as exc:
            found[name] = "missing: " + type(exc).__name__
    return {"found": found, "path": sys.path}
"""


def test_action_imports_its_zip_and_the_runtime_libraries_only(tmp_path: Path) -> None:
    """A development install of qmroct (an editable install's import hook) stays out of the
    container: an action imports the qmroct its zip ships and the runtime's site-packages,
    never a qmroct module of this source tree that its zip lacks, as on a deployed runtime."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", textwrap.dedent(IMPORTS))
        zf.writestr("qmroct/__init__.py", "SHIPPED = True\n")
    c = Container("imports", 256, tmp_path, {})
    c.start()
    try:
        assert c.init("imports", "main", base64.b64encode(buf.getvalue()).decode(), {}, 30000).ok
        wanted = ["qmroct", "qmroct.storage.ledger", "qmroct.runtime.controller", "pydantic"]
        outcome = c.run({"value": {"modules": wanted}}, 30000)
    finally:
        c.destroy()
    assert outcome.ok, outcome.response
    found = outcome.response.result["found"]
    assert found["qmroct"].startswith(str(tmp_path))  # the zip's own package
    assert found["qmroct.storage.ledger"] == "missing: ModuleNotFoundError"
    assert found["qmroct.runtime.controller"] == "missing: ModuleNotFoundError"
    assert "site-packages" in found["pydantic"]  # the runtime's libraries are there

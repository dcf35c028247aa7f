"""The official OpenWhisk JavaScript client (npm ``openwhisk``) against ``qmroct up``.

``js/contract.js`` makes every call ``wsk`` users make (CRUD of actions, packages, triggers and
rules, rule enable/disable, invokes, activation lists and records, namespaces) and asserts the
status codes and fields apache/openwhisk's controller answers with, error cases included. The
client is installed into the gitignored ``js/node_modules`` by this test itself.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest
from upstack import gone, processes_under

JS = Path(__file__).with_name("js")


@pytest.fixture(scope="session")
def openwhisk_js() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the npm openwhisk contract cannot run")
    if not (JS / "node_modules" / "openwhisk" / "package.json").exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"],
            cwd=JS,
            check=True,
            timeout=300,
        )
    return JS / "contract.js"


def _zip_action(target: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "__main__.py", "from helper import plus_one\n\ndef main(a):\n    return plus_one(a)\n"
        )
        zf.writestr("helper.py", "def plus_one(a):\n    return {'n': int(a.get('n', 0)) + 1}\n")
    target.write_bytes(buf.getvalue())
    return target


def test_official_js_client_contract(up_stack, openwhisk_js: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OW_APIHOST": up_stack.api_host,
        "OW_AUTH": up_stack.auth,
        "OW_ZIP": str(_zip_action(tmp_path / "action.zip")),
    }
    run = subprocess.run(
        ["node", str(openwhisk_js)], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, f"{run.stdout}\n{run.stderr}"
    report = json.loads(lines[-1])
    assert report["ok"] is True
    # Every group of calls was made, including the error cases.
    for call in (
        "actions.create python:3.12 -> 200",
        "actions.create existing -> 409",
        "actions.list limit 201 -> 400",
        "activations.get malformed id -> 400",
        "activations.get unknown id -> 404",
        "rules.disable -> 200",
        "packages.delete non-empty -> 409",
        "wrong credentials -> 401",
    ):
        assert call in report["checked"], call


SNOOP = """
import os

def main(args):
    found = {}
    for path in args["paths"]:
        try:
            with open(path, "rb") as f:
                found[path] = "read %d bytes" % len(f.read())
        except OSError as exc:
            found[path] = type(exc).__name__
    # Walk up from the action's own folder, as an action would look for the stack.
    relative = []
    for depth in range(1, 10):
        up = os.path.join(*([".."] * depth))
        for name in ("whisk.json", "stack.json", "secrets.json", "ledger.sqlite3"):
            for where in (name, os.path.join("whisk", name)):
                if os.path.exists(os.path.join(up, where)):
                    relative.append(os.path.join(up, where))
    return {"found": found, "relative": relative, "cwd": os.getcwd()}
"""


def test_an_action_cannot_read_the_stacks_secrets(up_stack) -> None:
    import requests
    from qmroct.runtime.sandbox import sandbox_command

    if sandbox_command() is None:
        pytest.fail("bubblewrap is needed to isolate actions (tests/run.sh installs it)")
    home = up_stack.home
    secrets = [home / "whisk" / "whisk.json", home / "stack.json", home / "secrets.json"]
    for path in secrets:  # 0600, in a 0700 home
        assert path.stat().st_mode & 0o077 == 0, path
    assert home.stat().st_mode & 0o077 == 0
    auth = tuple(up_stack.auth.split(":", 1))
    url = f"{up_stack.api_host}/api/v1/namespaces/_/actions/snoop"
    body = {"exec": {"kind": "python:3.11", "code": SNOOP}}
    assert requests.put(url + "?overwrite=true", json=body, auth=auth, timeout=30).ok
    paths = [str(p) for p in [*secrets, home / "ledger.sqlite3"]] + ["__main__.py"]
    resp = requests.post(
        url + "?blocking=true&result=true", json={"paths": paths}, auth=auth, timeout=120
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    # The action reads its own code (the probe works) and nothing of the stack.
    assert out["found"].pop("__main__.py").startswith("read ")
    assert all(v in ("FileNotFoundError", "PermissionError") for v in out["found"].values()), out
    assert out["relative"] == []


def test_sigterm_stops_the_stack_and_every_worker(up_stack) -> None:
    # Runs after the contract: the actions it invoked left warm workers.
    containers = up_stack.home / "whisk" / "containers"
    assert processes_under(containers), "no warm worker to check"
    assert up_stack.stop(signal.SIGTERM) == 0
    assert gone(up_stack.home) == []


def test_base64_of_a_zip_is_binary_and_text_is_not() -> None:
    from qmroct.runtime.entities import is_binary_code

    zipped = base64.b64encode(_zip_bytes()).decode()
    assert is_binary_code(zipped)
    assert not is_binary_code("def main(args):\n    return {}\n")
    assert not is_binary_code("")


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "def main(a):\n    return a\n")
    return buf.getvalue()

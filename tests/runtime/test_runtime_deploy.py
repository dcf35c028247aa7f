"""`qmroct deploy` against the embedded API standing in for a cluster: deploy, re-deploy (no
change), update one action; alarm triggers get their feed through the alarms provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.clients.openwhisk import OpenWhiskClient
from qmroct.runtime import EmbeddedWhisk
from rtproject import write_project

TARGET = """
project:
  name: cluster
  packages:
    base:
      actions:
        noop: {function: functions/add_one, limits: {timeout: 10000, memorySize: 128}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedWhisk:
    root = tmp_path_factory.mktemp("cluster")
    write_project(root)
    (root / "manifest.yaml").write_text(TARGET, encoding="utf-8")
    with EmbeddedWhisk(root / "manifest.yaml", root / "home", {}, alarm_interval_s=0.3) as w:
        yield w


def _deploy(cluster: EmbeddedWhisk, manifest: Path, out: Path) -> dict:
    result = CliRunner().invoke(
        cli,
        [
            "deploy",
            "--apihost",
            cluster.api_host,
            "--auth",
            cluster.auth,
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _changes(report: dict) -> dict[str, str]:
    return {f"{c['kind']} {c['name']}": c["change"] for c in report["changes"]}


def test_deploy_redeploy_and_update_one_action(
    cluster: EmbeddedWhisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_BOUND", "bound-at-deploy")
    manifest = write_project(tmp_path / "project")
    first = _changes(_deploy(cluster, manifest, tmp_path / "zips"))
    assert first["package rt"] == "created"
    assert first["action rt/echo"] == "created" and first["sequence rt/plus_two"] == "created"
    assert (
        first["trigger tick"] == "created"
        and first["feed tick <- /whisk.system/alarms/alarm"] == "created"
    )
    assert first["rule poke-echo"] == "created"
    assert set(first.values()) == {"created"}

    ow = OpenWhiskClient(cluster.api_host, cluster.auth)
    echo = ow.get_entity("actions", "rt/echo")
    assert {p["key"]: p["value"] for p in echo["parameters"]}["bound"] == "bound-at-deploy"
    assert echo["limits"]["memory"] == 128 and echo["exec"]["binary"] is True
    assert ow.get_entity("rules", "on-tick")["action"] == {"path": "guest/rt", "name": "add_one"}
    assert ow.invoke("rt/plus_two", {"n": 1}, blocking=True, result=True)["n"] == 3
    # The alarm feed fires the deployed trigger, whose rule runs the deployed action.
    assert _wait_for(lambda: cluster.activations(name="rt/add_one", limit=1))

    second = _deploy(cluster, manifest, tmp_path / "zips")
    assert {c["change"] for c in second["changes"]} == {"unchanged"}, second

    source = tmp_path / "project" / "functions" / "add_one" / "__main__.py"
    source.write_text("def main(args):\n    return {'n': int(args.get('n', 0)) + 100}\n")
    third = _changes(_deploy(cluster, manifest, tmp_path / "zips"))
    # Both actions built from functions/add_one changed, nothing else.
    changed = {k: v for k, v in third.items() if v != "unchanged"}
    assert changed == {"action rt/add_one": "updated", "action rt/guarded": "updated"}
    assert ow.invoke("rt/add_one", {"n": 1}, blocking=True, result=True) == {"n": 101}


def _wait_for(check, timeout_s: float = 30.0):  # noqa: ANN001, ANN202
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return None

"""The wskdeploy manifest reader, on the project's own manifest.yaml and on broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from qmroct.errors import ConfigError
from qmroct.runtime.manifest import ALARM_FEED, load_manifest


def test_project_manifest_parses_with_anchors_and_env(repo_root: Path) -> None:
    env = {"QMROCT_LEDGER_URL": "sqlite:///x.db", "QMROCT_MAX_INFLIGHT": "4"}
    manifest = load_manifest(repo_root / "manifest.yaml", env)
    name, pkg = manifest.package()
    assert name == "qmroct"
    scheduler = pkg.actions["scheduler"]
    # The YAML anchor (&backend) gives the same inputs to every backend action.
    assert scheduler.inputs == pkg.actions["on-image-stored"].inputs
    assert scheduler.inputs["ledger_url"] == "sqlite:///x.db"
    assert scheduler.inputs["store_secret_key"] == ""  # unset variables become empty
    assert scheduler.annotations["provide-api-key"] is True
    assert scheduler.annotations["final"] is True
    measure = pkg.actions["measure-signal"]
    assert (measure.limits.timeout, measure.limits.memorySize, measure.limits.logSize) == (
        120000,
        512,
        5,
    )
    assert measure.inputs == {}
    assert pkg.sequences["run-signal"].components == ["measure-signal", "record-result"]
    assert pkg.triggers["scheduler-tick"].feed == ALARM_FEED
    assert pkg.triggers["scheduler-tick"].inputs["cron"] == "* * * * *"
    assert pkg.rules["on-tick"].action == "scheduler"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_memory_with_unit_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "project:\n  packages:\n    p:\n      actions:\n        a:\n"
        "          function: f\n          limits: {memorySize: 512 kB}\n",
    )
    with pytest.raises(ConfigError, match="manifest.yaml: invalid manifest"):
        load_manifest(path)


def test_unknown_sequence_component_is_named(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "project:\n  packages:\n    p:\n      actions:\n        a: {function: f}\n"
        "      sequences:\n        s: {actions: 'a, ghost'}\n",
    )
    with pytest.raises(ConfigError, match="ghost"):
        load_manifest(path)


def test_braced_variable_and_long_form_inputs(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "project:\n  packages:\n    p:\n      inputs: {a: '${A}'}\n      actions:\n"
        "        x:\n          function: f\n"
        "          inputs: {b: {type: string, value: $B}, c: {type: integer, default: 3}}\n",
    )
    _, pkg = load_manifest(path, {"A": "1", "B": "2"}).package()
    assert pkg.inputs == {"a": "1"}
    assert pkg.actions["x"].inputs == {"b": "2", "c": 3}

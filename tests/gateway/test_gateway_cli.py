"""The gateway's commands, end to end against the local store server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli


@pytest.fixture
def env(local_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: ANN001
    monkeypatch.setenv("QMROCT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QMROCT_STORE", "local")
    monkeypatch.setenv("QMROCT_STORE_ENDPOINT", local_store.endpoint)
    monkeypatch.setenv("QMROCT_STORE_ACCESS_KEY", local_store.access_key)
    monkeypatch.setenv("QMROCT_STORE_SECRET_KEY", local_store._secret)
    monkeypatch.setenv("QMROCT_XNAT_PROJECT", "glaucoma")
    return tmp_path


def test_upload_command_summary(env: Path, local_store, samples_dir: Path) -> None:  # noqa: ANN001
    inbox = env / "inbox"
    inbox.mkdir()
    shutil.copy(samples_dir / "heidelberg_vol/Willis_B_716_0.vol", inbox)
    (inbox / "readme.txt").write_text("not a scan\n" * 20)
    res = CliRunner().invoke(cli, ["gateway", "upload", str(inbox)])
    assert res.exit_code == 0, res.output
    assert "1 uploaded, 1 rejected" in res.output and "MB/s" in res.output
    (obj,) = list(local_store.list("oct-ingest"))
    assert obj.key.startswith("glaucoma/sub-")
    again = CliRunner().invoke(cli, ["gateway", "upload", str(inbox / "Willis_B_716_0.vol")])
    assert "1 duplicate" in again.output


def test_upload_without_project_is_a_usage_error(
    env: Path, monkeypatch: pytest.MonkeyPatch, samples_dir: Path
) -> None:
    monkeypatch.delenv("QMROCT_XNAT_PROJECT")
    res = CliRunner().invoke(cli, ["gateway", "upload", str(samples_dir / "heidelberg_vol")])
    assert res.exit_code == 2 and "no project" in res.output


def test_bench_gateway_json() -> None:
    res = CliRunner().invoke(cli, ["bench", "gateway", "--mb", "32", "--json"])
    assert res.exit_code == 0, res.output
    figures = json.loads(res.output)
    assert figures["files"] >= 1 and figures["megabytes"] > 20 and figures["mb_s"] > 0
    assert figures["paper_mb_s"] == 4.33 and figures["store"] == "local"

"""The runtime's commands: build and bench runtime."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.runtime.bench import run_bench


def test_build_writes_one_zip_per_action(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "actions"
    result = CliRunner().invoke(cli, ["build", "--manifest", str(project), "--out", str(out)])
    assert result.exit_code == 0, result.output
    zips = sorted(p.stem for p in out.glob("*.zip"))
    assert "echo" in zips and "guarded" in zips and "plus_two" not in zips  # sequences ship no code
    with zipfile.ZipFile(out / "echo.zip") as zf:
        assert "__main__.py" in zf.namelist()
    assert "sha256:" in result.output


def test_build_names_a_broken_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.yaml"
    bad.write_text("project: {packages: {}}\n")
    result = CliRunner().invoke(cli, ["build", "--manifest", str(bad), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no packages defined" in result.output


def test_bench_runtime_reports_figures() -> None:
    figures = run_bench(runs=5, cold_runs=2)
    assert figures.warm_compute_ms > 0 and figures.warm_total_ms > 0
    assert figures.cold_init_ms > 0 and figures.sequence3_total_ms > 0
    text = "\n".join(figures.lines())
    assert "76 s per VM start" in text and "Docker start" in text
    assert json.loads(figures.model_dump_json())["runs"] == 5

"""The scan commands: ``scan info``, ``phantom`` and ``bench reader``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.oct.phantom import PhantomTruth
from qmroct.oct.readers import read_scan


def test_scan_info_json(samples_dir: Path) -> None:
    res = CliRunner().invoke(
        cli, ["scan", "info", str(samples_dir / "heidelberg_vol/Willis_B_716_2.vol"), "--json"]
    )
    assert res.exit_code == 0, res.output
    meta = json.loads(res.output)
    assert meta["pattern"] == "ring" and meta["format"] == "heyex_vol"
    assert round(meta["device_quality"][0], 1) == 31.3


def test_scan_info_reports_a_bad_file_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vol"
    bad.write_bytes(b"not an oct file at all")
    res = CliRunner().invoke(cli, ["scan", "info", str(bad)])
    assert res.exit_code == 1
    assert "bad.vol" in res.output and "unsupported format" in res.output
    assert "Traceback" not in res.output


def test_phantom_command_writes_readable_files(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["phantom", "--pattern", "line", "--out", str(tmp_path), "--defect", "blur=0.5",
         "--defect", "decentration=0.3", "--seed", "7"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    paths = [Path(p) for p in res.output.split()]
    assert {p.suffix for p in paths} == {".vol", ".dcm", ".json"}
    truth = PhantomTruth.model_validate_json(paths[-1].read_text())
    assert truth.defects == {"blur": 0.5, "decentration": 0.3} and truth.seed == 7
    a, b = read_scan(paths[0]), read_scan(paths[1])
    assert np.array_equal(a.bscans, b.bscans)


def test_phantom_command_rejects_unknown_defects(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["phantom", "--out", str(tmp_path), "--defect", "glitter=1"])
    assert res.exit_code == 2 and "glitter" in res.output


def test_bench_reader_prints_figures() -> None:
    res = CliRunner().invoke(cli, ["bench", "reader", "--json", "--runs", "1"])
    assert res.exit_code == 0, res.output
    figures = json.loads(res.output)
    assert figures["volume_shape"] == [25, 496, 512]
    assert figures["read_vol_s"] > 0 and figures["segment_s"] > 0

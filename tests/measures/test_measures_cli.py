"""The measure commands: run on every real sample, list, docs up to date, report, bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.measures.docs import render_markdown
from qmroct.measures.runner import measure_names
from qmroct.oct.phantom import make_phantom, write_phantom
from qmroct.results import Verdict

REAL = [
    "heidelberg_vol/Willis_B_716_0.vol",
    "heidelberg_vol/Willis_B_716_2.vol",
    "heidelberg_e2e/e2e_minimized.E2E",
    "topcon/fda_minimized.fda",
    "topcon/fds_minimized.fds",
    "synthetic_fixtures/eyepy_heyex_vol/test_volume.vol",
]


@pytest.mark.parametrize("rel", REAL)
def test_measure_run_on_every_real_sample(samples_dir: Path, rel: str):
    path = samples_dir / rel
    if not path.exists():
        pytest.skip(f"{rel} is not among the samples")
    res = CliRunner().invoke(cli, ["measure", "run", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc["measures"]) == set(measure_names())
    for name, out in doc["measures"].items():
        assert out["version"] and out["code_digest"].startswith("sha256:")
        assert len(out["code_digest"]) == len("sha256:") + 64
        assert out["verdicts"], name
        for v in out["verdicts"]:
            assert v["verdict"] in {x.value for x in Verdict}
            assert v["reason"]
        assert out["values"]["scale_used"]
    assert set(doc["oscar_ib"]["letters"]) == set("OSCARIB")


def test_measure_run_writes_report_and_pictures(samples_dir: Path, tmp_path: Path):
    path = samples_dir / "heidelberg_vol" / "Willis_B_716_2.vol"
    if not path.exists():
        pytest.skip("ring sample missing")
    res = CliRunner().invoke(cli, ["measure", "run", str(path), "--report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "OSCAR-IB:" in res.output
    html = (tmp_path / "Willis_B_716_2_vol_report.html").read_text()
    assert html.count("data:image/png;base64,") >= len(measure_names())  # every picture inline
    for name in measure_names():
        assert f"<h2 id='{name}'>{name} <small>version " in html
    assert "Background-enhanced" in html and "higher is better" in html
    assert len(list(tmp_path.glob("*.png"))) >= 8


def test_measure_run_unknown_measure_and_bad_file(tmp_path: Path):
    bad = tmp_path / "x.vol"
    bad.write_bytes(b"nothing here")
    res = CliRunner().invoke(cli, ["measure", "run", str(bad)])
    assert res.exit_code != 0 and "x.vol" in res.output
    assert "Traceback" not in res.output
    scan, truth, _ = make_phantom("line", seed=0)
    good = write_phantom(scan, truth, tmp_path, formats=("vol",))[0]
    res = CliRunner().invoke(cli, ["measure", "run", str(good), "--measure", "nope"])
    assert res.exit_code != 0 and "unknown measure 'nope'" in res.output and "signal" in res.output
    res = CliRunner().invoke(cli, ["measure", "run", str(good), "--measure", "signal", "--json"])
    assert res.exit_code == 0 and list(json.loads(res.output)["measures"]) == ["signal"]


def test_measure_list_and_docs_are_current(repo_root: Path):
    res = CliRunner().invoke(cli, ["measure", "list", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == measure_names()
    assert all(r["params"] for r in rows)
    committed = (repo_root / "docs" / "measures.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "docs/measures.md is stale: qmroct measure docs > docs/measures.md"
    )
    docs = CliRunner().invoke(cli, ["measure", "docs"])
    assert docs.output == committed
    assert ".. math::" in committed and "Stein" in committed


def test_bench_measures_json():
    res = CliRunner().invoke(cli, ["bench", "measures", "--json", "--repeats", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{") :])
    assert doc["megabytes"] > 24 and doc["volume"] == [25, 496, 512]
    assert set(measure_names()) <= set(doc["cpu_s"]) and list(doc["measures"]) == measure_names()
    assert doc["suite_cpu_s"] > 0 and doc["read_cpu_s"] > 0 and doc["segmentation_cpu_s"] > 0
    # Every measure draws a picture on this volume, and the totals are the sums of the rows.
    assert all(m["png_cpu_s"] > 0 and m["alone_cpu_s"] > 0 for m in doc["measures"].values())
    parts = [m["suite_cpu_s"] for m in doc["measures"].values()]
    assert doc["measures_cpu_s"] == pytest.approx(sum(parts), abs=1e-3)
    per_scan = doc["read_cpu_s"] + doc["segmentation_cpu_s"] + doc["context_cpu_s"]
    per_scan += doc["shared_cpu_s"] + doc["measures_cpu_s"]
    assert doc["scan_cpu_s"] == pytest.approx(per_scan, abs=1e-3)
    assert len(doc["load_avg"]) == 3


def test_bench_measures_on_a_file(tmp_path: Path):
    scan, truth, _ = make_phantom("line", seed=3)
    vol = write_phantom(scan, truth, tmp_path, formats=("vol",))[0]
    res = CliRunner().invoke(cli, ["bench", "measures", "--file", str(vol), "--repeats", "1"])
    assert res.exit_code == 0, res.output
    assert str(vol) in res.output and "pathology_flag" in res.output and "alone" in res.output
    bad = tmp_path / "bad.vol"
    bad.write_bytes(b"HSF-OCT-103 truncated")
    res = CliRunner().invoke(cli, ["bench", "measures", "--file", str(bad), "--repeats", "1"])
    assert res.exit_code != 0 and "bad.vol" in res.output

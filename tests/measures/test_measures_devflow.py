"""qmroct measure new / test: the scaffold, its phantom defect test, the runtime test on the
test set in a private embedded OpenWhisk, the reference diff, and a broken measure refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.errors import ConfigError
from qmroct.measures.base import registry
from qmroct.measures.devtest import DevReport, ScanOutcome, compare, load_reference
from qmroct.measures.scaffold import new_measure, render_docs_entry

NAME = "contrast_probe"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dev")
    new_measure(root, NAME, "S")
    return root


@pytest.fixture(scope="module")
def tested(folder) -> tuple[Path, dict]:
    """One `qmroct measure test` in a private sandbox (no stack configured)."""
    env = {"QMROCT_HOME": str(folder / "no-stack")}
    res = CliRunner().invoke(
        cli, ["measure", "test", NAME, "--dir", str(folder), "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    return folder / "test-results" / NAME, json.loads(res.stdout)


def test_new_writes_a_complete_measure_folder(folder):
    action = folder / "functions" / "measures" / NAME
    assert (action / "__main__.py").read_text().count("run_action(args") == 1
    module = (action / f"measure_{NAME}.py").read_text()
    for word in ("Formula:", "Citation:", "Direction:", "class ContrastProbeMeasureParams"):
        assert word in module
    manifest = (folder / "manifest.yaml").read_text()
    assert f"measure-{NAME}:" in manifest and "qmroct-version: 0.1.0" in manifest
    docs = (folder / "docs" / f"{NAME}.md").read_text()
    assert docs.startswith(f"## {NAME}") and "`warn_below`" in docs and "`cnr`" in docs
    # Rendering the docs imported the developer's module without registering it here.
    assert NAME not in registry()
    assert render_docs_entry(folder, NAME) == docs


def test_new_refuses_bad_names_and_overwrites(folder, tmp_path):
    for bad in ("Bad", "1x", "a", "x-y", "class", "signal"):
        with pytest.raises(ConfigError):
            new_measure(tmp_path, bad)
    with pytest.raises(ConfigError, match="exists already"):
        new_measure(folder, NAME)
    with pytest.raises(ConfigError, match="criterion"):
        new_measure(tmp_path, "fine_name", "Z")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.yaml").write_text("project: {packages: {qmroct: {}}}\n")
    with pytest.raises(ConfigError, match="not a measure developer"):
        new_measure(tmp_path / "other", "fine_name")
    # A second measure joins the same developer manifest.
    new_measure(folder, "second_probe", "I")
    assert "measure-second_probe:" in (folder / "manifest.yaml").read_text()
    assert f"measure-{NAME}:" in (folder / "manifest.yaml").read_text()


def test_the_generated_phantom_defect_test_passes(folder):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "passed" in done.stdout


def test_measure_test_runs_the_deployed_zip_on_the_phantoms(tested):
    out, report = tested
    assert report["passed"] and report["action"] == f"qmroct-dev/measure-{NAME}"
    assert [o["scan"] for o in report["outcomes"]] == [
        "phantoms/clean.vol",
        "phantoms/low_signal.vol",
        "phantoms/blur.vol",
    ]
    by_scan = {o["scan"]: o for o in report["outcomes"]}
    for o in report["outcomes"]:
        assert o["status"] == "ok" and o["activation_id"], o
        assert o["code_digest"] == report["code_digest"].strip() != ""
        assert Path(o["picture"]).read_bytes().startswith(b"\x89PNG")
        ds = pydicom.dcmread(o["dicom"])
        assert NAME in str(ds.get("SeriesDescription", "")) + str(ds.get("ImageComments", ""))
    # The injected signal loss shows in the value, through the runtime as in the unit test.
    low = by_scan["phantoms/low_signal.vol"]["values"]["cnr"]
    assert low < by_scan["phantoms/clean.vol"]["values"]["cnr"]
    assert json.loads((out / "results.json").read_text())["outcomes"][0]["values"]


def test_reference_agrees_and_a_changed_value_shows_in_the_diff(tested, folder, tmp_path):
    out, report = tested
    ok = CliRunner().invoke(
        cli,
        ["measure", "test", NAME, "--dir", str(folder), "--data", "phantoms",
         "--reference", str(out / "results.json")],
        env={"QMROCT_HOME": str(folder / "no-stack")},
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "values agree" in ok.output and "\n  ! " not in ok.output
    ref = {"clean.vol": {"cnr": report["outcomes"][0]["values"]["cnr"] * 1.01}}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    rows = compare(
        DevReport.model_validate(report), load_reference(tmp_path / "ref.json"), rtol=1e-3, atol=0
    )
    assert [(r.scan, r.value, r.ok) for r in rows] == [("clean.vol", "cnr", False)]
    rows = compare(
        DevReport.model_validate(report), load_reference(tmp_path / "ref.json"), rtol=0.02, atol=0
    )
    assert rows[0].ok


def test_compare_names_missing_scans_and_values():
    report = DevReport(
        measure="m",
        version="1",
        action="a",
        outcomes=[ScanOutcome(scan="phantoms/a.vol", status="ok", values={"x": 1.0, "s": "q"})],
    )
    rows = compare(
        report,
        {"a.vol": {"x": 1.0000001, "s": "q", "y": 2}, "b.vol": {"x": 1}},
        rtol=1e-6,
        atol=0,
    )
    assert {(r.scan, r.value): r.ok for r in rows} == {
        ("a.vol", "s"): True,
        ("a.vol", "x"): True,
        ("a.vol", "y"): False,
        ("b.vol", "x"): False,
    }


def test_a_broken_measure_fails_its_test(folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken, ignore=shutil.ignore_patterns("test-results"))
    module = broken / "functions" / "measures" / NAME / f"measure_{NAME}.py"
    module.write_text(
        module.read_text().replace(
            "value = cnr(", "raise ZeroDivisionError('probe bug')\n        value = cnr("
        )
    )
    res = CliRunner().invoke(
        cli,
        ["measure", "test", NAME, "--dir", str(broken), "--data", "phantoms"],
        env={"QMROCT_HOME": str(broken / "no-stack")},
    )
    assert res.exit_code == 1, res.output
    assert "internal error ZeroDivisionError: probe bug" in res.output and "FAILED" in res.output

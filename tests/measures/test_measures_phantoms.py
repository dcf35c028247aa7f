"""Each measure against phantoms with injected defects: the reduced sweep, verdicts and
not-applicable cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from qmroct.measures.base import get_measure, registry
from qmroct.measures.runner import run_suite
from qmroct.measures.suite import SUITE_ORDER, oscar_ib_summary
from qmroct.measures.validation import PROBES, auc, is_monotonic, sweep
from qmroct.oct.model import IntensityScale, Scan, ScanMeta, ScanPattern, Spacing
from qmroct.oct.phantom import make_phantom
from qmroct.oct.segmentation import segment
from qmroct.results import Verdict

WEAK_PROBES: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def reduced_sweep():
    # Each probe at 0, its fail severity and 1; three eyes of natural anatomical variation.
    return sweep(severities=(0.0, 1.0), seeds=3, cross_talk=False, workers=2)


def test_suite_registers_every_measure_of_the_table():
    assert set(SUITE_ORDER) <= set(registry())
    for name in SUITE_ORDER:
        m = get_measure(name)
        assert m.version.count(".") == 2
        assert m.criteria
        m.Params()  # defaults validate


@pytest.mark.parametrize(
    "probe",
    [p for p in PROBES if (p.measure, p.defect) not in WEAK_PROBES],
    ids=lambda p: f"{p.measure}-{p.defect}",
)
def test_reduced_sweep_auc_and_monotonic(reduced_sweep, probe):
    mv = reduced_sweep[probe.measure]
    row = next(r for r in mv.probes if r["defect"] == probe.defect)
    assert row["auc"] >= 0.9, row
    assert row["monotonic"], row
    assert row["fail_severity"] in row["severities"]
    lo, hi = row["auc_ci95"]
    assert 0.0 <= lo <= row["auc"] <= hi <= 1.0


def test_reduced_sweep_lateral_motion(reduced_sweep):
    row = next(r for r in reduced_sweep["blink_motion"].probes if r["defect"] == "lateral_motion")
    assert row["auc"] >= 0.95
    assert row["value"] == "lateral_motion_um"
    # The response follows the injected shift (400*s um) within a quarter of it.
    for s_, v in zip(row["severities"], row["response"], strict=True):
        assert abs(v - 400.0 * s_) < 0.25 * 400.0 * max(s_, 0.25), row


def test_blink_is_not_reported_as_lateral_motion():
    scan, _, _ = make_phantom("volume", defects={"blink": 1.0}, seed=3)
    m = get_measure("blink_motion")
    out = m.compute(scan, m.Params(), None)
    assert out.values["blink_count"] > 0
    assert out.values["lateral_motion_um"] < m.Params().lateral_warn_um


def test_auc_and_monotonic_helpers():
    assert auc([0, 1, 2], [3, 4, 5]) == 1.0
    assert auc([0, 1], [0, 1]) == 0.5
    assert auc([3, 4], [0, 1]) == 0.0
    assert is_monotonic([0, 1, 1, 2])
    assert is_monotonic([0, 1, 0.99, 2])  # a dip of 0.5% of the span is seed noise
    assert not is_monotonic([0, 2, 1])


@pytest.mark.parametrize("seed", [0, 3, 5])
@pytest.mark.parametrize("pattern", ["volume", "ring", "line"])
def test_clean_phantom_passes_every_letter(pattern, seed):
    # The line phantom runs into the optic disc: A and B must leave it out, not flag it.
    scan, _, _ = make_phantom(pattern, seed=seed)
    run = run_suite(scan)
    for out in run.outputs:
        for v in out.verdicts:
            assert v.verdict in (Verdict.PASS, Verdict.NOT_APPLICABLE), (out.measure, v)
    assert run.summary.passed
    assert not run.summary.warned_letters
    for out in run.outputs:
        applicable = any(v.verdict is not Verdict.NOT_APPLICABLE for v in out.verdicts)
        assert (out.picture_png is not None) == applicable
        assert out.picture_png is None or out.picture_png[:4] == b"\x89PNG"
        assert out.values["scale_used"] == "pow025"
    by_name = {o.measure: o for o in run.outputs}
    excluded = by_name["segmentation"].values["disc_excluded_fraction"]
    assert excluded == by_name["beam_placement"].values["disc_excluded_fraction"]
    if pattern == "line":
        # 9 mm from the fovea nasally reaches the disc (centre 3.9 mm, 1.8 mm across).
        assert 0.12 < excluded < 0.25
        for name in ("segmentation", "beam_placement"):
            assert "optic disc excluded" in by_name[name].verdicts[0].reason
    else:
        assert excluded < 0.02


@pytest.mark.parametrize(
    ("defect", "measure", "letter"),
    [
        ("low_signal", "signal", "S"),
        ("blur", "sharpness", "O"),
        ("cutoff_top", "completeness", "O"),
        ("blink", "blink_motion", "O"),
        ("axial_motion", "blink_motion", "O"),
        ("decentration", "centration", "C"),
        ("layer_artefact", "segmentation", "A"),
        ("vignetting", "illumination", "I"),
        ("tilt", "beam_placement", "B"),
    ],
)
def test_severe_defect_is_flagged_by_its_measure(defect, measure, letter):
    scan, _, _ = make_phantom("volume", defects={defect: 1.0}, seed=2)
    out = get_measure(measure).compute(scan, get_measure(measure).Params(), None)
    v = next(v for v in out.verdicts if v.criterion == letter)
    assert v.verdict in (Verdict.WARN, Verdict.FAIL), v
    assert v.reason


def test_ring_offset_is_flagged_on_the_slo():
    scan, truth, _ = make_phantom("ring", defects={"ring_offset": 1.0}, seed=1)
    m = get_measure("centration")
    out = m.compute(scan, m.Params(), None)
    assert out.values["ring_offset_ratio"] == pytest.approx(truth.ring_offset_ratio, abs=0.08)
    assert out.verdicts[0].verdict is Verdict.FAIL


def test_shared_segmentation_is_used_when_given():
    scan, _, _ = make_phantom("line", seed=0)
    seg = segment(scan)
    seg.ilm[:] = np.nan  # a segmentation that found nothing: the measure must use this one
    m = get_measure("sharpness")
    out = m.compute(scan, m.Params(), {"segmentation": seg.to_bytes()})
    assert out.verdicts[0].verdict is Verdict.FAIL
    assert "no detectable retina" in out.verdicts[0].reason


def test_not_applicable_cases():
    line, _, _ = make_phantom("line", seed=0)
    out = get_measure("blink_motion").compute(line, get_measure("blink_motion").Params(), None)
    assert [v.verdict for v in out.verdicts] == [Verdict.NOT_APPLICABLE]
    assert "volume" in out.verdicts[0].reason
    ring, _, _ = make_phantom("ring", seed=0)
    ring.fundus = None
    out = get_measure("centration").compute(ring, get_measure("centration").Params(), None)
    assert out.verdicts[0].verdict is Verdict.NOT_APPLICABLE
    assert "SLO" in out.verdicts[0].reason
    summary = oscar_ib_summary([out])
    assert summary.letters["C"].verdict is Verdict.NOT_APPLICABLE
    assert summary.passed


def test_no_retina_fails_with_that_reason():
    rng = np.random.default_rng(0)
    noise = rng.exponential(1.0, (1, 200, 300)).astype(np.float32)
    meta = ScanMeta(
        source="noise", format="phantom", pattern=ScanPattern.LINE, scale=IntensityScale.LINEAR,
        spacing=Spacing(lateral_um=10, axial_um=4), n_bscans=1, height=200, width=300,
    )  # fmt: skip
    run = run_suite(Scan(meta=meta, bscans=noise))
    assert not run.summary.passed
    for out in run.outputs:
        if out.measure == "blink_motion":
            continue
        assert all(v.verdict is Verdict.FAIL for v in out.verdicts), out.measure
        assert "no detectable retina" in out.verdicts[0].reason


def test_params_are_validated():
    m = get_measure("signal")
    with pytest.raises(ValueError):
        m.parse_params({"max_bscans": 0})
    assert m.parse_params({"c_dev": 0.4}).c_dev == 0.4


def test_each_letter_names_the_value_that_graded_it():
    scan, _, _ = make_phantom("volume", defects={"tilt": 1.0}, seed=1)
    run = run_suite(scan)
    values = {o.measure: o.values for o in run.outputs}
    graded = 0
    for letter, v in run.summary.letters.items():
        if v.verdict is Verdict.NOT_APPLICABLE:
            continue
        measure, _, value = (v.graded_by or "").partition(".")
        assert value in values.get(measure, {}), (letter, v)
        graded += 1
    assert graded >= 6
    b = run.summary.letters["B"]
    assert b.verdict in (Verdict.WARN, Verdict.FAIL)
    assert b.graded_by == "beam_placement.tilt_deg"


def test_a_device_floor_without_a_source_is_not_a_fail():
    # OSCAR-IB names no floor for Topcon's FAST_Q2: a low value is reported with the reason,
    # never failed on a borrowed threshold.
    scan, _, _ = make_phantom("line", seed=0)
    meta = scan.meta.model_copy(
        update={"device_quality": [20.0], "device_quality_kind": "topcon_fast_q2"}
    )
    scan = dataclasses.replace(scan, meta=meta)
    out = get_measure("signal").compute(scan, get_measure("signal").Params(), None)
    (s,) = out.verdicts
    assert s.verdict is Verdict.PASS, s
    assert "no published floor" in s.reason
    assert s.graded_by == "peak_snr_db"
    spectralis = scan.meta.model_copy(
        update={"device_quality": [10.0], "device_quality_kind": "spectralis_q"}
    )
    out = get_measure("signal").compute(
        dataclasses.replace(scan, meta=spectralis), get_measure("signal").Params(), None
    )
    assert out.verdicts[0].verdict is Verdict.FAIL
    assert out.verdicts[0].graded_by == "device_quality"


@pytest.mark.parametrize("pattern", ["volume", "ring", "line"])
def test_phantom_eyes_differ_within_normal_ranges(pattern):
    # Natural variation: each seed its own healthy eye, so clean values spread.
    thick = []
    for seed in range(4):
        scan, truth, bounds = make_phantom(pattern, seed=seed)
        a = truth.anatomy
        assert 0.84 <= a.retina_scale <= 1.16 and 0.79 <= a.rnfl_scale <= 1.21
        assert 1450 <= a.disc_diameter_um <= 2250 and -2 <= a.tilt_deg <= 2
        thick.append(float(np.nanmedian(bounds["BM"] - bounds["ILM"])) * scan.meta.spacing.axial_um)
    assert max(thick) - min(thick) > 5.0, thick  # um: the eyes are not one eye
    fixed = [make_phantom(pattern, seed=s, anatomy="fixed")[1].anatomy for s in (0, 1)]
    assert fixed[0] == fixed[1]


@pytest.mark.parametrize("pattern", ["line", "volume"])
def test_fluid_flags_r_before_thickness_does(pattern):
    # Cystoid spaces flag R at the severity a grader calls pathology, where the total thickness
    # of a 37% swelling still sits inside the normal band for most A-scans.
    m = get_measure("pathology_flag")
    clean, _, _ = make_phantom(pattern, seed=4)
    out = m.compute(clean, m.Params(), None)
    assert out.values["fluid_fraction"] == 0.0
    assert out.verdicts[0].verdict is Verdict.PASS
    sick, truth, _ = make_phantom(pattern, defects={"oedema": 0.25}, seed=4)
    assert truth.physical["oedema_cysts"] > 0
    out = m.compute(sick, m.Params(), None)
    (r,) = out.verdicts
    assert r.verdict is Verdict.WARN and r.graded_by == "fluid_fraction", r
    assert out.values["fluid_fraction"] > m.Params().fluid_flag_fraction


def test_ring_a_letter_checks_the_rnfl():
    scan, _, _ = make_phantom("ring", seed=2)
    seg = segment(scan)
    run = run_suite(scan, segmentation=seg)
    seg_out = next(o for o in run.outputs if o.measure == "segmentation")
    assert seg_out.values["rnfl_jump_fraction"] < 0.02
    assert seg_out.values["rnfl_thin_fraction"] < 0.05
    assert run.summary.letters["A"].verdict is Verdict.PASS
    # An RNFL edge that collapsed onto the ILM over 80 A-scans: missed, and discontinuous.
    seg.rnfl[0, 200:280] = seg.ilm[0, 200:280]
    run = run_suite(scan, segmentation=seg)
    a = run.summary.letters["A"]
    assert a.verdict in (Verdict.WARN, Verdict.FAIL), a
    assert a.graded_by in ("segmentation.rnfl_thin_fraction", "segmentation.rnfl_jump_fraction")


def test_wrap_is_reported_by_a_and_graded_by_o():
    # A myopic wrap is an image problem (OSCAR-IB O, cut-off image parts), not an algorithm
    # failure: A reports and leaves out the clipped A-scans, completeness grades them.
    from qmroct.measures.base import get_measure
    from qmroct.oct.phantom import make_phantom
    from qmroct.results import Verdict

    for seed in (0, 2):
        scan, _, truth = make_phantom("ring", seed=seed, wrap=True)
        share = float((truth["ILM"] < 0).mean())
        seg = get_measure("segmentation")
        out = seg.compute(scan, seg.Params(), None)
        assert abs(out.values["top_clipped_fraction"] - share) < 0.01
        assert out.values["ilm_jump_fraction"] < 0.01
        assert "image top" in out.verdicts[0].reason
        assert out.verdicts[0].verdict is not Verdict.FAIL
        comp = get_measure("completeness")
        out = comp.compute(scan, comp.Params(), None)
        assert out.values["cut_top_fraction"] >= share
        assert out.verdicts[0].verdict is Verdict.FAIL
        plain, _, _ = make_phantom("ring", seed=seed)
        out = seg.compute(plain, seg.Params(), None)
        assert out.values["top_clipped_fraction"] == 0.0

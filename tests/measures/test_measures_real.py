"""The suite on the real samples: repeat pairs agree, S orders like the device, leave-one-out.

The samples folder is ../shared/data/oct-samples or $QMROCT_SAMPLES. A repeat pair is not in
shared/; see qmroct.measures.real_samples.WHERE_TO_GET_A_REPEAT for where to get one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.measures.real_samples import (
    RETEST_LIMIT,
    S_VALUE,
    WHERE_TO_GET_A_REPEAT,
    RealReport,
    RealScan,
    check_samples,
    find_repeats,
    repeat_reason,
    s_ordering,
    tie_margin,
)
from qmroct.measures.verdicts import grade, worst
from qmroct.metrics.contrast import peak_snr_db
from qmroct.metrics.illumination import dark_fraction
from qmroct.results import Verdict


@pytest.fixture(scope="module")
def real(samples_dir: Path) -> RealReport:
    report = check_samples(samples_dir)
    if not report.scans:
        pytest.skip(f"no real acquisition in {samples_dir}")
    return report


def test_every_repeat_pair_agrees_on_every_graded_value(real: RealReport):
    if not real.repeats:
        pytest.skip(f"no repeat pair in {real.samples}: get {WHERE_TO_GET_A_REPEAT}")
    for pair in real.repeats:
        over = [
            f"{letter} {r.value}: {r.a} vs {r.b} ({r.relative_difference})"
            for letter, rows in pair.letters.items()
            for r in rows
            if not r.within_limit
        ]
        assert not over, f"{pair.a} / {pair.b} differ by {RETEST_LIMIT:.0%} or more: {over}"
        # Every letter graded in both scans is compared, with the value that graded it.
        for letter, (va, vb) in pair.verdicts.items():
            if va != "not_applicable" and vb != "not_applicable":
                assert pair.letters[letter], letter
        assert pair.worst is not None and pair.worst < RETEST_LIMIT


def test_s_value_orders_scans_like_the_device_quality(real: RealReport):
    checked = [o for o in real.ordering if o.concordant + o.discordant > 0]
    if not checked:
        pytest.skip(
            f"no two real scans of one device kind whose device qualities differ by more than "
            f"the tie margin in {real.samples}"
        )
    for o in checked:
        assert o.value == S_VALUE
        assert o.discordant == 0, o.rows
        assert o.margin >= 1.0


def test_leave_one_out_names_what_graded_each_letter(real: RealReport):
    assert [lo.scan for lo in real.leave_one_out] == [s.scan for s in real.scans]
    for lo, s in zip(real.leave_one_out, real.scans, strict=True):
        assert set(lo.letters) == set("OSCARIB")
        for letter, line in lo.letters.items():
            verdict = s.letters[letter]
            if verdict["verdict"] != "not_applicable":
                by = verdict["graded_by"]
                assert by and f"by {by}" in line, (s.scan, letter, line)
                assert by in verdict["gradings"]
        # Leaving a file out leaves the other files' figures computable.
        assert lo.margin_without >= 1.0
    assert any("tie margin" in d for d in real.derived_from_real)


def _scan(name: str, **kw) -> RealScan:
    base = dict(
        scan=name,
        format="heyex_vol",
        pattern="ring",
        laterality="OD",
        shape=(1, 496, 768),
        lateral_um=14.72,
        axial_um=3.87,
        exam_time="2017-01-11T14:28:17",
        positions_px=[(323.4, 344.0, 477.0, 344.0)],
        device_quality=31.3,
        device_quality_kind="spectralis_q",
    )
    return RealScan(**{**base, **kw})


def test_repeats_are_found_by_what_the_files_say():
    a = _scan("a.vol")
    ok, why = repeat_reason(a, _scan("b.vol", exam_time="2017-01-11T14:28:20"))
    assert ok and "3 s apart" in why and "OD" in why
    for change, says in [
        ({"laterality": "OS"}, "eye"),
        ({"laterality": None}, "eye"),
        ({"pattern": "line"}, "pattern"),
        ({"lateral_um": 17.9}, "lateral pixel size"),
        ({"exam_time": "2017-01-11T15:28:17"}, "60 min"),
        ({"exam_time": None}, "no exam time"),
        ({"positions_px": [(330.0, 344.0, 477.0, 344.0)]}, "6.6 SLO px"),
    ]:
        ok, why = repeat_reason(a, _scan("b.vol", **change))
        assert not ok and says in why, (change, why)


def test_repeat_pair_compares_every_value_graded_into_a_letter():
    def letters(dark: float, verdict: str) -> dict:
        gradings = {
            "illumination.edge_centre_ratio": {
                "value": 1.2,
                "verdict": "pass",
                "thresholds": [0.8, 0.6],
            },  # fmt: skip
            "illumination.dark_fraction": {
                "value": dark,
                "verdict": verdict,
                "thresholds": [0.02, 0.05],
            },  # fmt: skip
        }
        return {"I": {"verdict": verdict, "graded_by": "x", "gradings": gradings}}

    a = _scan("a.vol", letters=letters(0.025, "warn"))
    b = _scan("b.vol", exam_time="2017-01-11T14:28:20", letters=letters(0.008, "pass"))
    (pair,) = find_repeats([a, b])
    rows = {r.value: r for r in pair.letters["I"]}
    assert rows["illumination.edge_centre_ratio"].relative_difference == 0
    # 0.017 apart against the 0.02 warning: 85%, a failed retest.
    assert rows["illumination.dark_fraction"].relative_difference == pytest.approx(0.017 / 0.02)
    assert not pair.passed and pair.verdicts["I"] == ("warn", "pass")


def test_s_ordering_counts_ties_within_the_device_noise():
    def s(name: str, dq: float, snr: float, **kw) -> RealScan:
        g = {S_VALUE: {"value": snr, "verdict": "pass", "thresholds": [20, 14]}}
        return _scan(
            name, device_quality=dq, letters={"S": {"verdict": "pass", "gradings": g}}, **kw
        )

    scans = [
        s("a", 44.6, 35.2, pattern="line", exam_time="2017-01-11T14:27:41"),
        s("b", 31.3, 32.4),
        s("c", 30.8, 32.8, exam_time="2017-01-11T14:28:20"),
        s("d", 24.4, 33.0, exam_time="2011-11-09T11:57:56"),
    ]
    pairs = find_repeats(scans)
    assert [(p.a, p.b) for p in pairs] == [("b", "c")]
    margin, why = tie_margin(scans, pairs)
    assert margin == pytest.approx(1.0) and "0.50" in why
    (o,) = s_ordering(scans, margin, why)
    # b/c tie (0.5 apart); d is the worst scan but reads higher than b and c: 2 discordant.
    assert (o.concordant, o.discordant, o.ties) == (3, 2, 1)
    assert [r["scan"] for r in o.rows] == ["a", "b", "c", "d"]


def test_dark_fraction_is_continuous_across_its_line():
    # A broad vessel shadow at about half the median: counted, it jumps with a 4% change;
    # weighted by depth, it hardly moves. A black media shadow still counts fully.
    s = np.ones(768)
    s[100:120] = 0.49
    just_under = dark_fraction(s.copy())
    s[100:120] = 0.51
    just_over = dark_fraction(s.copy())
    assert just_under < 0.002 and just_over == 0.0
    black = np.ones(768)
    black[: 768 // 5] = 0.0
    assert dark_fraction(black) == pytest.approx(0.2, abs=0.005)
    shadow5db = np.ones(768)
    shadow5db[: 768 // 5] = 10 ** (-5 / 10)
    assert dark_fraction(shadow5db) == pytest.approx(0.2 * (1 - 0.316 / 0.5), abs=0.005)


def test_peak_snr_is_the_same_when_the_device_clips_its_noise_floor():
    rng = np.random.default_rng(0)
    h, w = 200, 400
    img = rng.exponential(1e-3, (h, w)).astype(np.float32)
    retina = np.zeros((h, w), bool)
    retina[120:180] = True
    img[retina] = rng.exponential(0.1, retina.sum())
    vitreous = np.zeros((h, w), bool)
    vitreous[10:100] = True
    plain = peak_snr_db(img, retina, vitreous)
    # Subtract an offset at the noise's 37th percentile and clip at 0, as some exports do.
    offset = float(np.percentile(img[vitreous], 37))
    clipped = np.where(retina, img, np.clip(img - offset, 0, None))
    assert np.mean(clipped[vitreous] == 0) == pytest.approx(0.37, abs=0.01)
    assert abs(peak_snr_db(clipped, retina, vitreous) - plain) < 0.3
    # The plain median of the clipped floor would have read several dB better.
    naive = 10 * np.log10(np.percentile(clipped[retina], 95) / np.median(clipped[vitreous]))
    assert naive - plain > 2.0


def test_the_value_that_decided_a_letter_is_named():
    def g(name: str, value: float, warn: float, fail: float, hib: bool = False):
        return grade("A", name, value, warn=warn, fail=fail, higher_is_better=hib, graded_by=name)

    # Two fails: the one far beyond its threshold decides, not the first in order.
    v = worst("A", [g("jumps", 0.035, 0.01, 0.03), g("disagreement", 395.0, 15.0, 25.0)])
    assert v.verdict is Verdict.FAIL and v.graded_by == "disagreement"
    assert v.graded_value == 395.0 and v.thresholds == (15.0, 25.0)
    assert set(v.gradings) == {"jumps", "disagreement"}
    # A warn beats passes; among passes the primary (first) value names the letter.
    v = worst("A", [g("gaps", 0.0, 0.05, 0.2), g("edge", 0.3, 0.35, 0.15, hib=True)])
    assert v.verdict is Verdict.WARN and v.graded_by == "edge"
    v = worst("A", [g("gaps", 0.04, 0.05, 0.2), g("order", 0.0, 0.01, 0.05)])
    assert v.verdict is Verdict.PASS and v.graded_by == "gaps"
    # A value that could not be computed decides a fail before any number.
    v = worst("A", [g("disagreement", 395.0, 15.0, 25.0), g("gaps", float("nan"), 0.05, 0.2)])
    assert v.graded_by == "gaps" and v.gradings["gaps"].value is None


def test_validate_real_only_json_and_text(samples_dir: Path, tmp_path: Path):
    # One real scan through the command (the whole folder is graded by the fixture above).
    line = samples_dir / "heidelberg_vol" / "Willis_B_716_0.vol"
    if not line.exists():
        pytest.skip("the real line scan is not among the samples")
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / line.name).symlink_to(line)
    res = CliRunner().invoke(cli, ["validate", "--real-only", "--json", "--samples", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sweep"] == "skipped" and doc["measures"] == {}
    (s,) = doc["real_samples"]["scans"]
    assert s["scan"] == "vol/Willis_B_716_0.vol" and s["exam_time"].startswith("2017-01-11T")
    for letter in s["letters"].values():
        if letter["verdict"] != "not_applicable":
            assert all(letter["graded_by"].partition(".")[::2])
            assert letter["gradings"][letter["graded_by"]]["verdict"] == letter["verdict"]
    assert "no repeat pair" in doc["real_samples"]["repeat_note"]
    assert "halirutan/spectralis-raw-data" in doc["real_samples"]["repeat_note"]
    text = CliRunner().invoke(cli, ["validate", "--real-only", "--samples", str(tmp_path)])
    assert text.exit_code == 0
    for part in ("S ordering", "leave-one-out", "no repeat pair", "S: pass by signal.peak_snr_db"):
        assert part in text.output, part


def test_phantom_retest_compares_every_graded_value():
    from qmroct.measures.validation import retest

    (rows,) = retest(patterns=("line",), eyes=1).values()
    by_letter: dict[str, set[str]] = {}
    for r in rows:
        by_letter.setdefault(r.letter, set()).add(r.graded_by)
        assert r.eyes == 1 and 0 <= r.max_relative_difference < 10
    assert {"signal.peak_snr_db"} <= by_letter["S"]
    assert {"completeness.cut_top_fraction", "sharpness.ilm_edge_width_um"} <= by_letter["O"]
    s = next(r for r in rows if r.graded_by == "signal.peak_snr_db")
    assert s.max_relative_difference < RETEST_LIMIT  # same eye, new speckle: same signal

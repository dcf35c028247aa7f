"""The optic-disc A-scans that criteria A and B leave out: found on the SLO or from the
device's segmentation, and only where a disc is."""

from __future__ import annotations

import numpy as np
import pytest
from qmroct.measures.base import get_measure
from qmroct.measures.context import ScanContext
from qmroct.metrics.disc import (
    ascan_fundus_xy,
    disc_from_device,
    disc_from_fundus,
    disc_mask_from_device,
    disc_region,
    runs_at_least,
)
from qmroct.metrics.plausibility import gap_fraction, order_violation_fraction
from qmroct.oct.phantom import make_phantom
from qmroct.oct.readers import read_scan
from qmroct.results import Verdict


def test_runs_at_least_keeps_long_runs_only():
    row = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert runs_at_least(row, 3).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1]
    assert not runs_at_least(row, 5).any()


def test_device_disc_needs_ilm_without_bm_over_a_run():
    ilm = np.full((1, 20), 10.0)
    bm = np.full((1, 20), 50.0)
    bm[0, 2:4] = np.nan  # a missed A-scan pair: no disc
    bm[0, 10:18] = np.nan  # the disc
    ilm[0, 0] = np.nan
    bm[0, 0] = np.nan  # both missing: no signal, not a disc
    mask = disc_mask_from_device(ilm, bm, 5)
    assert np.flatnonzero(mask[0]).tolist() == list(range(10, 18))


def test_line_phantom_disc_matches_the_truth():
    scan, truth, _ = make_phantom("line", seed=2)
    x, y = ascan_fundus_xy(scan.meta, 1, scan.meta.width)
    mask = disc_from_fundus(scan)
    assert mask is not None
    d = np.hypot(x - truth.disc_center[0], y - truth.disc_center[1])[0]
    r = truth.disc_diameter_px / 2
    # Every A-scan well inside the true disc is found, none well outside it.
    assert mask[0][d < 0.8 * r].all()
    assert not mask[0][d > 1.5 * r].any()


def test_ring_positions_start_temporal_and_turn_superior():
    scan, truth, _ = make_phantom("ring", seed=0)
    x, y = ascan_fundus_xy(scan.meta, 1, scan.meta.width)
    cx, cy = truth.ring_center
    w = scan.meta.width
    assert x[0, 0] < cx and abs(y[0, 0] - cy) < 1  # temporal: left on an OD fundus
    assert y[0, w // 4] < cy - 0.9 * scan.meta.ring.radius_px  # then superior: up


def test_ring_through_the_disc_is_excluded_there():
    scan, _, _ = make_phantom("ring", defects={"ring_offset": 1.0}, seed=4)
    region = disc_region(scan)
    # Offset by half a disc diameter, the 3.46 mm ring grazes the 1.8 mm disc.
    assert 0.0 < region.fraction < 0.25
    clean, _, _ = make_phantom("ring", seed=4)
    assert disc_region(clean).fraction == 0.0


def test_no_disc_on_a_flat_fundus_and_none_without_one():
    scan, _, _ = make_phantom("line", seed=1)
    rng = np.random.default_rng(0)
    scan.fundus = (110 + rng.normal(0, 3, scan.fundus.shape)).astype(np.float32)
    assert disc_from_fundus(scan) is None or not disc_from_fundus(scan).any()
    scan.fundus = None
    assert disc_from_fundus(scan) is None
    # The phantom's device segmentation covers the disc: no device cue either.
    assert not disc_from_device(scan).any()
    assert disc_region(scan).fraction == 0.0


def test_keep_restricts_gap_and_order_counts():
    ilm = np.full((1, 10), 10.0)
    bm = np.full((1, 10), 50.0)
    bm[0, 7:] = np.nan
    keep = np.ones((1, 10), dtype=bool)
    keep[0, 7:] = False
    assert gap_fraction(ilm, bm) == pytest.approx(0.3)
    assert gap_fraction(ilm, bm, keep=keep) == 0.0
    bm[0, 8] = 5.0
    assert order_violation_fraction([ilm, bm]) == pytest.approx(0.1)
    assert order_violation_fraction([ilm, bm], keep=keep) == 0.0
    assert np.isnan(gap_fraction(ilm, bm, keep=np.zeros_like(keep)))


def test_disc_exclusion_does_not_hide_a_layer_artefact():
    scan, _, _ = make_phantom("line", defects={"layer_artefact": 1.0}, seed=5)
    m = get_measure("segmentation")
    out = m.compute(scan, m.Params(), None)
    assert out.values["disc_excluded_fraction"] > 0.1
    assert out.verdicts[0].verdict in (Verdict.WARN, Verdict.FAIL)
    assert "optic disc excluded" in out.verdicts[0].reason


def test_disc_exclusion_does_not_hide_tilt():
    scan, _, _ = make_phantom("line", defects={"tilt": 1.0}, seed=5)
    m = get_measure("beam_placement")
    out = m.compute(scan, m.Params(), None)
    assert out.values["tilt_abs_max_deg"] == pytest.approx(12.0, abs=1.5)
    assert out.verdicts[0].verdict in (Verdict.WARN, Verdict.FAIL)


def test_real_line_scan_disc_comes_from_the_device(samples_dir):
    path = samples_dir / "heidelberg_vol" / "Willis_B_716_0.vol"
    if not path.exists():
        pytest.skip(f"{path} not in the samples")
    scan = read_scan(path)
    ctx = ScanContext.build(scan)
    # The nasal end of the 30-degree line crosses the disc, where Heyex leaves BM undefined.
    assert ctx.disc.sources == ("device segmentation",)
    cols = np.flatnonzero(ctx.disc.mask[0])
    assert 0.1 < ctx.disc.fraction < 0.25
    assert cols.min() > scan.meta.width // 2
    m = get_measure("segmentation")
    out = m.compute(scan, m.Params(), {"context": ctx})
    assert "optic disc excluded" in out.verdicts[0].reason
    # The disc's dark A-scans are anatomy for I too: without the exclusion they were 3 % of
    # the scan, over the 2 % that warns.
    m = get_measure("illumination")
    out = m.compute(scan, m.Params(), {"context": ctx})
    assert "optic disc excluded" in out.verdicts[0].reason
    assert out.values["dark_fraction"] < 0.02
    # And for R: the disc's ILM-to-BM distance is not a retinal thickness.
    m = get_measure("pathology_flag")
    out = m.compute(scan, m.Params(), {"context": ctx})
    assert "optic disc excluded" in out.verdicts[0].reason
    assert out.values["abnormal_fraction"] < 0.01


def test_real_ring_scan_excludes_nothing(samples_dir):
    path = samples_dir / "heidelberg_vol" / "Willis_B_716_2.vol"
    if not path.exists():
        pytest.skip(f"{path} not in the samples")
    # A well-centred ring never reaches the disc.
    assert disc_region(read_scan(path)).fraction == 0.0

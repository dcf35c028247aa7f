"""Each metric on synthetic arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from qmroct.metrics import (
    centration,
    completeness,
    contrast,
    geometry,
    histogram,
    illumination,
    intensity,
    motion,
    plausibility,
    regions,
    sharpness,
)
from qmroct.oct.model import IntensityScale
from scipy.ndimage import gaussian_filter1d

RNG = np.random.default_rng(0)


def _layered(n: int = 1, h: int = 100, w: int = 200, noise: float = 0.02, level: float = 0.6):
    """Background noise, a bright band from row 30 to 70: ILM at 30, BM at 70."""
    img = np.abs(RNG.normal(0.1, noise, size=(n, h, w))).astype(np.float32)
    img[:, 30:70, :] += level
    ilm = np.full((n, w), 30.0, dtype=np.float32)
    bm = np.full((n, w), 70.0, dtype=np.float32)
    return img, ilm, bm


def test_to_display_linear_is_fourth_root_normalised_and_keeps_nan():
    x = np.array([[[0.0, 16.0, np.nan, 81.0]]], dtype=np.float32)
    u = intensity.to_display(x, IntensityScale.LINEAR)
    assert np.isnan(u[0, 0, 2])
    assert u[0, 0, 3] == pytest.approx(1.0)
    assert u[0, 0, 1] == pytest.approx(2.0 / 3.0, rel=1e-3)
    assert (
        intensity.to_display(np.full((1, 1, 1), 255.0), IntensityScale.DISPLAY_UINT8)[0, 0, 0]
        == 1.0
    )


def test_valid_values_drops_nan_and_zero_padding():
    v = intensity.valid_values(np.array([0.0, np.nan, 0.5, 1.0]))
    assert v.tolist() == [0.5, 1.0]


def test_quality_index_rises_with_signal_and_is_nan_for_tiny_input():
    weak, _, _ = _layered(level=0.05)
    strong, _, _ = _layered(level=0.6)
    assert histogram.quality_index(strong.ravel()) > histogram.quality_index(weak.ravel())
    assert np.isnan(histogram.quality_index(np.ones(10)))


def test_quality_index_known_answer():
    # 1..100: P1=1.99, P75=75.25, P99=99.01, mid=87.13; IR=(99.01-1.99)/1.99*100
    v = np.arange(1, 101, dtype=float)
    low, noise, sat = np.percentile(v, [1, 75, 99])
    mid = (noise + sat) / 2
    expected = (
        (sat - low)
        / low
        * 100
        * (((v > mid) & (v <= sat)).sum() / ((v > noise) & (v <= mid)).sum())
    )
    assert histogram.quality_index(v) == pytest.approx(expected)


def _speckled(level: float) -> np.ndarray:
    """Exponential speckle (linear) with a tissue band ``level`` times the noise, fourth-rooted."""
    rng = np.random.default_rng(1)
    tissue = np.zeros((100, 200))
    tissue[30:60] = level
    lin = rng.exponential(1.0, tissue.shape) * (1.0 + tissue)
    return (lin**0.25).ravel()


def test_mtci_rises_with_tissue_contrast():
    # Pure noise: the knee sits near the background peak (c_dev is calibrated so that the
    # background fills the histogram), mTCI near 1; tissue lifts it several-fold.
    noise, tissue = histogram.mtci(_speckled(0.0)), histogram.mtci(_speckled(20.0))
    assert 1.0 <= noise < 0.5 * tissue
    assert tissue > 4.0
    strong = _speckled(20.0)
    assert histogram.mtci(strong, c_dev=0.55) >= histogram.mtci(strong, c_dev=0.40)


def test_mtci_knee_does_not_depend_on_the_histogram_grid():
    # The knee comes from a pdf smoothed to Huang's 200-bin resolution, so refining the grid the
    # pixels are counted on leaves mTCI where it was (a raw pdf moved it by up to a factor 2).
    v = _speckled(20.0)
    ref = histogram.mtci(v, grid=4096)
    for grid in (512, 1024, 16384, 65536):
        assert histogram.mtci(v, grid=grid) == pytest.approx(ref, rel=0.05), grid


def test_snr_and_cnr_known_answer():
    img = np.zeros((1, 10, 4), dtype=np.float32)
    img[0, :5, :] = np.array([0.0, 0.2, 0.0, 0.2])  # background: mean 0.1, var 0.01
    img[0, 5:, :] = 1.0  # retina: mean 1, var 0
    ret = np.zeros_like(img, dtype=bool)
    ret[0, 5:, :] = True
    bg = ~ret
    assert contrast.snr_db(img, ret, bg) == pytest.approx(10 * np.log10(1.0 / 0.01))
    assert contrast.cnr(img, ret, bg) == pytest.approx(0.9 / np.sqrt(0.01))


def test_region_masks_follow_boundaries():
    ilm = np.array([[2.0, np.nan]])
    bm = np.array([[5.0, 6.0]])
    m = regions.retina_mask(8, ilm, bm)
    assert m[0, :, 0].tolist() == [False, False, True, True, True, False, False, False]
    assert not m[0, :, 1].any()
    v = regions.vitreous_mask(8, np.array([[4.0]]), margin_px=1.0)
    assert v[0, :, 0].tolist() == [True, True, True] + [False] * 5


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_edge_width_of_gaussian_blurred_step(sigma):
    step = np.r_[np.zeros(40), np.ones(40)]
    prof = gaussian_filter1d(step, sigma)[20:61]
    assert sharpness.edge_width_px(prof) == pytest.approx(sigma * np.sqrt(2 * np.pi), rel=0.08)


def test_ilm_edge_profile_aligns_on_ilm_and_blur_widens_edge():
    img, ilm, _ = _layered(noise=0.0)
    sharp = sharpness.edge_width_px(sharpness.ilm_edge_profile(img[0], ilm[0]))
    blurred = gaussian_filter1d(img[0], 3.0, axis=0)
    wide = sharpness.edge_width_px(sharpness.ilm_edge_profile(blurred, ilm[0]))
    assert sharp == pytest.approx(1.0)
    assert wide > 2.5 * sharp
    assert sharpness.gradient_contrast(sharpness.ilm_edge_profile(img[0], ilm[0])) == pytest.approx(
        1.0
    )


def test_completeness_fractions():
    ilm = np.array([[0.0, 1.0, 10.0, np.nan]])
    bm = np.array([[50.0, 99.0, 98.0, 60.0]])
    assert completeness.cut_top_fraction(ilm, 2) == pytest.approx(2 / 3)
    assert completeness.cut_bottom_fraction(bm, 100, 1) == pytest.approx(2 / 4)
    assert completeness.bscans_with_cut(ilm, bm, 100, 1) == 1
    assert completeness.bscans_with_cut(np.full((2, 4), 20.0), np.full((2, 4), 50.0), 100) == 0


def test_tukey_and_blinks():
    x = np.r_[np.full(20, 1.0) + np.linspace(0, 0.05, 20), 0.2]
    assert motion.tukey_outliers(x).tolist() == [False] * 20 + [True]
    blinks = motion.blink_bscans(x, x)
    assert blinks.tolist() == [20]
    # A smooth volume with a tiny IQR does not raise alarms for a 2% dip.
    y = np.r_[np.full(20, 1.0), 0.98]
    assert motion.blink_bscans(y, y).size == 0


def test_axial_motion_ignores_curvature_and_finds_jump():
    k = np.arange(30, dtype=float)
    curve = 0.05 * (k - 15) ** 2
    ilm = np.repeat(curve[:, None], 50, axis=1) + 100
    assert motion.axial_motion_px(ilm) == pytest.approx(0.0, abs=0.15)
    ilm[15:] += 7.0
    assert motion.axial_motion_px(ilm) == pytest.approx(7.0, abs=0.3)
    assert np.isnan(motion.axial_motion_px(ilm[:2]))


def test_adjacent_ncc_drops_for_shifted_bscan():
    img, _, _ = _layered(n=6, noise=0.0)
    img[:, :, 80:120] += 0.5  # a lateral landmark
    img[:, 20:30, 40:60] += 0.3
    ncc = motion.adjacent_ncc(img)
    assert np.allclose(ncc, 1.0)
    img[3] = np.roll(img[3], 40, axis=1)
    ncc = motion.adjacent_ncc(img)
    assert ncc[2] < 0.95 and ncc[3] < 0.95
    assert motion.lateral_ncc_drop(ncc) > 0.05


def test_fovea_position_and_offset_on_a_pit():
    n, w = 21, 101
    kk, jj = np.mgrid[0:n, 0:w]
    t = 300 - 100 * np.exp(-(((jj - 60) * 10) ** 2 + ((kk - 10) * 50) ** 2) / (2 * 300.0**2))
    pos = centration.fovea_position(t, 10.0, 50.0)
    assert pos[0] == pytest.approx(10, abs=1)
    assert pos[1] == pytest.approx(60, abs=1)
    dx, dy, d = centration.fovea_offset_um(pos, (n, w), 10.0, 50.0)
    assert dx == pytest.approx(100, abs=10)
    assert d == pytest.approx(np.hypot(dx, dy))
    line = centration.fovea_position(t[10:11], 10.0, None)
    assert line[1] == pytest.approx(60, abs=1)


@pytest.mark.parametrize("bright", [True, False])
def test_find_disc_on_synthetic_fundus(bright):
    yy, xx = np.mgrid[0:200, 0:200]
    img = np.full((200, 200), 0.5) + RNG.normal(0, 0.02, (200, 200))
    disc = (xx - 120) ** 2 + (yy - 90) ** 2 <= 20**2
    img[disc] += 0.3 if bright else -0.3
    x, y, diam, _ = centration.find_disc(img, expected_diameter_px=40)
    assert x == pytest.approx(120, abs=2)
    assert y == pytest.approx(90, abs=2)
    assert diam == pytest.approx(40, rel=0.25)
    assert centration.ring_offset_ratio((100.0, 90.0), (x, y), diam) == pytest.approx(0.5, abs=0.1)


def test_tilt_known_slope_and_thickness():
    j = np.arange(200, dtype=float)
    bm = 100 + 0.5 * j
    # slope 0.5 px/px, axial 4 um, lateral 8 um -> atan(0.25)
    assert geometry.tilt_deg(bm, 8.0, 4.0) == pytest.approx(np.degrees(np.arctan(0.25)))
    t = geometry.thickness_um(np.array([10.0, 20.0, np.nan]), np.array([20.0, 10.0, 5.0]), 4.0)
    assert t[0] == 40.0 and np.isnan(t[1]) and np.isnan(t[2])
    p5, p50, p95 = geometry.thickness_range(np.linspace(0, 100, 101))
    assert (p5, p50, p95) == pytest.approx((5, 50, 95))


def test_illumination_indices():
    s = np.ones(100)
    assert illumination.signal_cv(s) == 0.0
    assert illumination.edge_centre_ratio(s) == pytest.approx(1.0)
    vign = 1.0 - 0.8 * np.abs(np.linspace(-1, 1, 100)) ** 2
    assert illumination.edge_centre_ratio(vign) < 0.5
    shadow = s.copy()
    shadow[10:20] = 0.2
    # weighted by depth: a tenth of the A-scans at 0.2 of the median, 0.6 below the half line
    assert illumination.dark_fraction(shadow) == pytest.approx(0.1 * (1 - 0.2 / 0.5))
    sec = illumination.sector_signal_db(shadow, 0.1, sectors=10)
    assert sec[1] == pytest.approx(10 * np.log10(0.04 / 0.01))
    assert illumination.weakest_sector_deficit_db(sec) == pytest.approx(20 - 10 * np.log10(4))
    # A sector that is mostly left out (the optic disc) is no sector: its sliver is skipped.
    sliver = shadow.copy()
    sliver[91:] = np.nan
    sec = illumination.sector_signal_db(sliver, 0.1, sectors=10)
    assert np.isnan(sec[9]) and np.isfinite(sec[:9]).all()
    sliver[90] = 0.05
    assert np.isnan(illumination.sector_signal_db(sliver, 0.1, sectors=10)[9])
    assert np.isfinite(illumination.sector_signal_db(sliver, 0.1, sectors=10, min_valid=0.1)[9])
    gains = np.array([[1.0] * 10, [1.0] * 10, [0.5] * 10, [1.5] * 10])
    assert illumination.bscan_gain_cv(gains) == pytest.approx(np.std([1, 1, 0.5, 1.5]))
    assert np.isnan(illumination.bscan_gain_cv(np.ones((1, 10))))
    lr = np.r_[np.full(50, 1.0), np.full(50, 0.5)]
    assert illumination.left_right_ratio(lr) == pytest.approx(0.5)


def test_plausibility_indices():
    ilm = np.array([[10.0, 10.0, 11.0, 40.0, np.nan]])
    bm = np.array([[50.0, 50.0, 5.0, 50.0, 50.0]])
    assert plausibility.gap_fraction(ilm, bm) == pytest.approx(0.2)
    assert plausibility.order_violation_fraction([ilm, bm]) == pytest.approx(0.2)
    assert plausibility.jump_fraction(ilm, 5.0) == pytest.approx(1 / 3)
    assert plausibility.disagreement_px(ilm, ilm + 2) == pytest.approx(2.0)
    img, good, _ = _layered(noise=0.0)
    strong = plausibility.edge_strength(img, good)
    assert np.nanmedian(strong) == pytest.approx(0.6, abs=1e-5)
    off = plausibility.edge_strength(img, good - 15)
    assert np.nanmax(np.abs(off)) < 1e-5
    ref = float(np.nanmedian(strong))
    assert plausibility.edge_strength_p05(strong, ref) == pytest.approx(1.0)
    assert plausibility.edge_strength_p05(off, ref) == pytest.approx(0.0, abs=1e-4)


def test_refine_edge_moves_a_wrong_ilm_to_the_steepest_rise():
    img = np.zeros((60, 40), dtype=np.float32)
    img[31:, :] = 1.0  # the rise is between rows 30 and 31
    refined = sharpness.refine_edge(img, np.full(40, 28.0))
    assert np.allclose(refined, 30.5, atol=0.01)
    assert np.isnan(sharpness.refine_edge(img, np.full(40, np.nan))).all()


def test_enface_projection_is_the_mean_between_the_boundaries():
    rng = np.random.default_rng(3)
    image = rng.random((3, 40, 7)).astype(np.float32)
    image[1, 12, 2] = np.nan  # a missing pixel counts as zero, as an unmeasured one would
    top = rng.uniform(0, 15, (3, 7))
    bottom = top + rng.uniform(2, 20, (3, 7))
    bottom[2, 6] = 60.0  # clipped to the image
    top[0, 3] = np.nan  # no boundary: no value
    got = motion.enface_projection(image, top, bottom)
    for k in range(3):
        for j in range(7):
            if k == 0 and j == 3:
                assert np.isnan(got[k, j])
                continue
            t, b = int(round(top[k, j])), min(int(round(bottom[k, j])), 40)
            want = np.nansum(image[k, t:b, j]) / (b - t)
            assert got[k, j] == pytest.approx(want, rel=1e-5)

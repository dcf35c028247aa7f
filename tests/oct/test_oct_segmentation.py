"""Segmentation against phantom truth: accuracy, graceful degradation, detectable failure."""

from __future__ import annotations

import numpy as np
import pytest
from qmroct.oct.phantom import make_phantom
from qmroct.oct.segmentation import Segmentation, segment


def _errors(seg: Segmentation, truth: dict[str, np.ndarray]) -> dict[str, float]:
    found = seg.as_dict()
    return {k: float(np.nanmedian(np.abs(found[k] - truth[k]))) for k in truth}


@pytest.mark.parametrize("pattern", ["volume", "line", "ring"])
@pytest.mark.parametrize("seed", [0, 1])
def test_clean_phantoms_within_one_pixel(pattern: str, seed: int) -> None:
    scan, _, truth = make_phantom(pattern, seed=seed)
    seg = segment(scan)
    errors = _errors(seg, truth)
    assert all(e < 1.0 for e in errors.values()), errors
    assert float(np.median(seg.confidence)) > 0.6
    assert not np.isnan(seg.ilm).any()


def test_error_bound_grows_with_low_signal() -> None:
    bounds = {0.0: 1.0, 0.25: 1.2, 0.5: 1.5, 0.75: 2.5}
    confidences = []
    for severity, bound in bounds.items():
        scan, _, truth = make_phantom("volume", defects={"low_signal": severity}, seed=2)
        seg = segment(scan)
        worst = max(_errors(seg, truth).values())
        assert worst < bound, (severity, worst)
        confidences.append(float(seg.confidence.mean()))
    assert confidences == sorted(confidences, reverse=True)


def test_confidence_drops_where_the_signal_is_gone() -> None:
    scan, truth, _ = make_phantom("volume", defects={"blink": 0.6}, seed=1)
    seg = segment(scan)
    blinked = seg.confidence[truth.blink_bscans].mean()
    others = np.delete(seg.confidence, truth.blink_bscans, axis=0).mean()
    assert blinked < 0.3 * others


def test_layer_artefact_makes_the_ilm_fail_detectably() -> None:
    scan, truth, bounds = make_phantom("volume", defects={"layer_artefact": 0.8}, seed=0)
    seg = segment(scan)
    rows = truth.artefact_bscans
    wrong = np.abs(seg.ilm[rows] - bounds["ILM"][rows]) > 2
    assert wrong.mean() > 0.5  # most affected A-scans follow the membrane
    # Detectable without truth: the ILM jumps where the membrane starts or ends.
    jumps = np.abs(np.diff(seg.ilm[rows], axis=1)).max()
    clean_jumps = np.abs(np.diff(np.delete(seg.ilm, rows, axis=0), axis=1)).max()
    assert jumps > 2.5 and jumps > 1.5 * clean_jumps


def test_nan_pixels_do_not_break_segmentation() -> None:
    scan, _, truth = make_phantom("line", seed=0)
    scan.bscans[0, :, :20] = np.nan
    seg = segment(scan)
    assert max(_errors(seg, truth).values()) < 1.5


def test_bytes_round_trip() -> None:
    scan, _, _ = make_phantom("ring")
    seg = segment(scan)
    back = Segmentation.from_bytes(seg.to_bytes())
    for name in ("ilm", "rnfl", "onl_top", "onl_bottom", "bm", "confidence"):
        assert np.array_equal(getattr(back, name), getattr(seg, name), equal_nan=True)


def _jump_fraction(rows: np.ndarray, axial_um: float, limit_um: float) -> float:
    steps = np.abs(np.diff(rows, axis=1)) * axial_um
    ok = np.isfinite(steps)
    return float((steps[ok] > limit_um).mean())


@pytest.mark.parametrize("pattern", ["volume", "line", "ring"])
@pytest.mark.parametrize("seed", [0, 5])
def test_boundaries_are_smooth_on_clean_phantoms(pattern: str, seed: int) -> None:
    # Vessel shadows, the fovea and (line) the disc must not make the boundaries jump.
    scan, _, _ = make_phantom(pattern, seed=seed)
    seg = segment(scan)
    um = scan.meta.spacing.axial_um
    assert _jump_fraction(seg.bm, um, 100.0) < 0.01
    for name in ("onl_top", "onl_bottom"):
        assert _jump_fraction(getattr(seg, name), um, 50.0) < 0.01, name
    assert _jump_fraction(seg.rnfl, um, 50.0) < 0.03


@pytest.mark.parametrize("name", ["Willis_B_716_0.vol", "Willis_B_716_2.vol"])
def test_bm_is_smooth_on_the_real_spectralis_lines(samples_dir, name: str) -> None:
    from qmroct.oct.readers import read_scan

    scan = read_scan(samples_dir / "heidelberg_vol" / name, name=name)
    seg = segment(scan)
    um = scan.meta.spacing.axial_um
    assert np.isfinite(seg.bm).mean() > 0.95
    assert _jump_fraction(seg.bm, um, 100.0) < 0.01
    assert _jump_fraction(seg.onl_bottom, um, 50.0) < 0.02


def _far_fraction(ours: np.ndarray, device: np.ndarray, axial_um: float, limit_um: float) -> float:
    d = np.abs(ours - device) * axial_um
    ok = np.isfinite(d)
    return float((d[ok] > limit_um).mean())


@pytest.mark.parametrize(
    ("name", "bm_bound", "rnfl_bound"),
    [("Willis_B_716_0.vol", 0.05, None), ("Willis_B_716_2.vol", 0.005, 0.15)],
)
def test_agrees_with_the_device_on_the_real_spectralis_scans(
    samples_dir, name: str, bm_bound: float, rnfl_bound: float | None
) -> None:
    # Heyex's own boundaries are the reference. The line scan's EZ is brighter than its RPE
    # around the fovea, and the ring's thick RNFL is as bright as its RPE: both once pulled BM
    # (and the ring's RNFL) off by 50 to 200 um on a sixth of the A-scans or more.
    from qmroct.oct.readers import read_scan

    scan = read_scan(samples_dir / "heidelberg_vol" / name, name=name)
    seg = segment(scan)
    um = scan.meta.spacing.axial_um
    device = scan.segmentation
    assert _far_fraction(seg.ilm, device["ILM"], um, 30.0) < 0.01
    assert _far_fraction(seg.bm, device["BM"], um, 30.0) < bm_bound
    if rnfl_bound is not None:
        assert _far_fraction(seg.rnfl, device["RNFL"], um, 30.0) < rnfl_bound


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("heidelberg_vol/Willis_B_716_0.vol", 0.03),
        ("heidelberg_vol/Willis_B_716_2.vol", 0.03),
        ("heidelberg_e2e/e2e_minimized.E2E", 0.03),
        ("topcon/fda_minimized.fda", 0.045),  # single frame, far noisier
    ],
)
def test_layers_follow_the_anatomy_on_every_real_scan(samples_dir, name: str, bound: float) -> None:
    # Layers are laterally smooth: steps over 20 um between neighbouring A-scans, averaged over
    # RNFL, ONL top and bottom and BM, were 4 to 13 % while the searches took the strongest
    # edge in their windows (an ONL top in the RNFL, a BM under the EZ, an ELM in the ONL).
    from qmroct.oct.readers import read_scan

    path = samples_dir / name
    scan = read_scan(path, name=path.name)
    seg = segment(scan)
    um = scan.meta.spacing.axial_um
    names = ("rnfl", "onl_top", "onl_bottom", "bm")
    steps = {k: _jump_fraction(getattr(seg, k), um, 20.0) for k in names}
    assert float(np.mean(list(steps.values()))) < bound, steps


#: The issue's targets: mean |ours - device| in pixels on the device's own boundaries.
DEVICE_TARGET_PX = {"ILM": 1.5, "BM": 1.5, "RNFL": 3.0}


def _real_vols(samples_dir):
    from qmroct.oct.readers import read_scan

    out = []
    for path in sorted(samples_dir.rglob("*.vol")):
        scan = read_scan(path)
        if min(scan.shape[1:]) >= 128 and scan.segmentation:  # fixtures are tiny
            out.append((path.name, scan))
    return out


#: A device segmentation missing the ILM or BM on more A-scans than OSCAR-IB A's gap fail
#: threshold (SegmentationParams.gap_fail, 20 %) has failed itself: it is no reference.
DEVICE_GAP_FAIL = 0.20


def _device_gaps(scan) -> float:
    dev = scan.segmentation
    return float((~np.isfinite(dev["ILM"]) | ~np.isfinite(dev["BM"])).mean())


def device_agreement_px(scan, seg: Segmentation) -> dict[str, float]:
    """Mean |ours - device| per boundary, in pixels, where both are found and our retina does
    not reach the image top (the clamped ILM is a bound there, not a boundary)."""
    ours = seg.as_dict()
    out = {}
    for boundary in DEVICE_TARGET_PX:
        if boundary not in scan.segmentation:
            continue
        theirs = scan.segmentation[boundary]
        both = np.isfinite(ours[boundary]) & np.isfinite(theirs) & ~seg.clipped
        assert both.mean() > 0.8, (scan.meta.source, boundary, both.mean())
        out[boundary] = float(np.mean(np.abs(ours[boundary][both] - theirs[both])))
    return out


def test_segmentation_agrees_with_the_device_on_every_real_vol(samples_dir) -> None:
    vols = _real_vols(samples_dir)
    references = [name for name, scan in vols if _device_gaps(scan) <= DEVICE_GAP_FAIL]
    assert len(references) >= 2
    for name, scan in vols:
        seg = segment(scan)
        if name not in references:
            # The device failed here (valid.vol: a myopic ring wrapped at the top, where Heyex
            # left a quarter of the ILM undefined and ran BM through the noise): no agreement is
            # claimed, but our segmentation must see the wrap on the A-scans the device lost.
            lost = ~np.isfinite(scan.segmentation["ILM"]) | ~np.isfinite(scan.segmentation["BM"])
            assert (seg.clipped & lost).sum() > 0.8 * lost.sum(), name
            continue
        for boundary, mean_px in device_agreement_px(scan, seg).items():
            assert mean_px <= DEVICE_TARGET_PX[boundary], (name, boundary, mean_px)


# ---- myopic wrap: the retina reaches the image top and folds back ----


def test_wrap_phantom_varies_per_seed_and_folds_back():
    overs, spans = [], []
    for seed in range(4):
        scan, truth, bounds = make_phantom("line", seed=seed, wrap=True)
        cut = bounds["ILM"] < 0
        assert cut.any() and truth.wrapped[0] == np.flatnonzero(cut[0]).tolist()
        overs.append(truth.physical["wrap_overshoot_um"])
        spans.append(int(cut.sum()))
        # The tissue above the top is folded back: the top rows over the wrap are as bright
        # as retina, while the plain phantom's are vitreous.
        plain, _, _ = make_phantom("line", seed=seed)
        cols = np.flatnonzero(cut[0])
        assert scan.bscans[0, :3, cols].mean() > 5 * plain.bscans[0, :3, cols].mean()
    assert len(set(overs)) == 4 and min(overs) >= 40 and max(overs) <= 200
    assert len(set(spans)) > 1
    assert not make_phantom("line", seed=0)[1].wrapped[0]


@pytest.mark.parametrize("pattern", ["line", "ring", "volume"])
@pytest.mark.parametrize("seed", [0, 3])
def test_wrapped_ascans_are_clipped_not_snapped(pattern: str, seed: int) -> None:
    scan, _, truth = make_phantom(pattern, seed=seed, wrap=True)
    seg = segment(scan)
    cut = truth["ILM"] < 0
    clipped = seg.clipped
    # Every wrapped A-scan is flagged; at most a few A-scans per B-scan beside a wrap where
    # the ILM lies within the smoothing's reach of the top (the 3 top rows tested, the 3-row
    # axial box and the lateral one) are flagged too.
    assert clipped[cut].all()
    extra = clipped & ~cut
    assert extra.sum() <= 8 * cut.shape[0]
    assert np.all(truth["ILM"][extra] < 8.0)
    # The ILM there is the clamp, not an edge of the fold; their confidence is zero.
    assert np.all(seg.ilm[clipped] == 0.0) and np.all(seg.confidence[clipped] == 0.0)
    assert np.isnan(seg.rnfl[clipped]).all()
    # Elsewhere the boundaries are as good as on a plain phantom.
    ok = ~clipped
    assert float(np.nanmedian(np.abs(seg.ilm[ok] - truth["ILM"][ok]))) < 1.0
    assert float(np.nanmedian(np.abs(seg.bm - truth["BM"]))) < 1.0
    # Without a wrap nothing is clipped.
    plain, _, _ = make_phantom(pattern, seed=seed)
    assert not segment(plain).clipped.any()


def test_the_clamp_survives_storage() -> None:
    scan, _, _ = make_phantom("ring", seed=1, wrap=True)
    seg = segment(scan)
    back = Segmentation.from_bytes(seg.to_bytes())
    assert seg.clipped.any() and np.array_equal(back.clipped, seg.clipped)


@pytest.mark.parametrize(
    ("pattern", "seed"), [("line", 0), ("line", 2), ("ring", 0), ("volume", 2)]
)
def test_rnfl_beside_a_wrap_follows_the_truth(pattern: str, seed: int) -> None:
    # Beside a wrap the retina climbs 2 to 3 rows per A-scan. Means along the image rows
    # blended the thin RNFL with the GCL of neighbouring A-scans (the RNFL came out 5 to 24 px
    # deep on the 40 A-scans next to the wrap); along the ILM the RNFL there is within the
    # issue's 3 px target for the device's RNFL, as it is away from the wrap.
    scan, _, truth = make_phantom(pattern, seed=seed, wrap=True)
    seg = segment(scan)
    clipped = seg.clipped
    near = np.zeros_like(clipped)
    for b, row in enumerate(clipped):
        cols = np.flatnonzero(row)
        if cols.size:
            dist = np.abs(np.arange(row.size)[:, None] - cols[None, :]).min(axis=1)
            near[b] = (dist > 0) & (dist <= 40)
    assert near.sum() >= 40
    err = np.abs(seg.rnfl - truth["RNFL"])
    assert float(np.nanmean(err[near])) < 3.0
    assert np.isfinite(seg.rnfl[near]).mean() > 0.95


@pytest.mark.parametrize("seed", range(4))
def test_ring_bm_holds_under_vessel_shadows(seed: int) -> None:
    # Vessels attenuate the RPE by 55 to 80 %: BM is found there as well as elsewhere (the
    # edge is taken relative to the A-scan's own strongest fall, which the shadow scales too).
    scan, truth, bounds = make_phantom("ring", seed=seed)
    err = np.abs(segment(scan).bm - bounds["BM"])[0]
    under = np.array(truth.vessel_columns)
    assert under.size > 10
    assert err[under].mean() < 1.0 and err[under].max() < 3.0
    assert err[under].mean() < np.delete(err, under).mean() + 0.3

"""The vectorised routines (qmroct.metrics.fast) and the pathology metrics built on them give
what the straightforward code gives: ``np.nanpercentile`` per column, SciPy's 3-D binary
opening, a Gaussian filter over the whole volume. On random data with NaN, at the image's
edges, and on phantoms with fluid, drusen and a macular hole. The tolerance is zero: every
comparison is exact (booleans, rows, float32 bit patterns)."""

from __future__ import annotations

import numpy as np
import pytest
from qmroct.measures.context import ScanContext
from qmroct.metrics.fast import SmoothedRows, nanpercentile_columns, rect_opening_columns
from qmroct.metrics.pathology import cavity_columns, rpe_floor, rpe_rows
from qmroct.metrics.regions import band_mask
from qmroct.oct.phantom import make_phantom
from scipy import ndimage

# ---- the straightforward references (the code these routines replaced) ----


def _ref_cavity_columns(linear, top, bottom, onl_top, bm, noise, *, min_rows, min_cols, rpe_rows,
                        smooth_px):  # fmt: skip
    n, h, w = linear.shape
    img = ndimage.gaussian_filter(
        np.nan_to_num(linear, nan=noise).astype(np.float32), (0, *smooth_px)
    )
    onl = band_mask(h, onl_top, bottom)
    rpe = band_mask(h, bm - rpe_rows, bm)
    count = onl.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        onl_col = np.where(count > 0, np.where(onl, img, 0).sum(axis=1) / count, np.nan)
        rpe_col = np.where(rpe, img, 0).max(axis=1)
        ratio = onl_col / np.where(rpe_col > 0, rpe_col, np.nan)
    typical = np.full((n, 1), np.nan)
    for b in range(n):
        ok = np.isfinite(ratio[b])
        if ok.any():
            typical[b, 0] = np.median(ratio[b, ok])
    ref = typical * rpe_col
    level = noise + 0.25 * (ref - noise)
    dark = band_mask(h, top, bottom) & (img < level[:, None, :])
    opened = ndimage.binary_opening(dark, structure=np.ones((1, min_rows, min_cols), bool))
    assessable = np.isfinite(ref) & (ref > 3.0 * noise)
    return opened.any(axis=1) & assessable, assessable


def _ref_rpe_rows(img, floor, top, *, below_px, level=0.35):
    n, h, w = img.shape
    out = np.full((n, w), np.nan)
    for b in range(n):
        ok = np.isfinite(floor[b]) & np.isfinite(top[b])
        if not ok.any():
            continue
        cols = np.flatnonzero(ok)
        f = np.round(floor[b, cols]).astype(int)
        above = np.clip(f - np.round(top[b, cols]).astype(int), 1, None)
        offs = np.arange(-int(above.max()), below_px + 1)
        rows = np.clip(f[None, :] + offs[:, None], 0, h - 1)
        win = img[b][rows, cols[None, :]]
        win = np.where(offs[:, None] >= -above[None, :], win, np.nan)
        lo = np.nanpercentile(win, 10, axis=0)
        hi = np.nanmax(win, axis=0)
        bright = np.nan_to_num(win, nan=-np.inf) >= lo + level * (hi - lo)
        deepest = win.shape[0] - 1 - np.argmax(bright[::-1], axis=0)
        out[b, cols] = rows[deepest, np.arange(cols.size)] + 0.5
    return out


# ---- the routines on random data ----


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nanpercentile_columns_equals_numpy_bit_for_bit(dtype) -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        m, k = int(rng.integers(1, 80)), int(rng.integers(1, 50))
        a = rng.gamma(2.0, size=(m, k)).astype(dtype)
        a[rng.random((m, k)) < rng.random()] = np.nan
        a[:, 0] = np.nan  # a column without any value
        if k > 1:
            a[1:, 1] = np.nan  # and one with a single value
        for q in (0, 10, 33.3, 50, 90, 99.9, 100):
            with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
                want = np.nanpercentile(a, q, axis=0)  # warns on the all-NaN column
            got = nanpercentile_columns(a, q)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_nanpercentile_columns_ties_and_no_nan() -> None:
    a = np.array([[1, 5], [1, 5], [2, 5], [9, 5]], np.float32)
    np.testing.assert_array_equal(nanpercentile_columns(a, 10), np.percentile(a, 10, axis=0))
    with pytest.raises(ValueError, match="2-D"):
        nanpercentile_columns(a[0], 10)


def test_rect_opening_columns_equals_scipy_opening() -> None:
    rng = np.random.default_rng(11)
    for _ in range(150):
        n, h, w = (int(x) for x in rng.integers(1, 30, size=3))
        mask = rng.random((n, h, w)) < rng.uniform(0.3, 0.97)
        rows, cols = (int(x) for x in rng.integers(1, 8, size=2))
        if rng.random() < 0.3:  # long runs take the counting path
            mask = rng.random((n, h + 20, w + 20)) < 0.985
            rows, cols = (int(x) for x in rng.integers(15, 21, size=2))
        want = ndimage.binary_opening(mask, structure=np.ones((1, rows, cols), bool)).any(axis=1)
        np.testing.assert_array_equal(rect_opening_columns(mask, rows, cols), want)


def test_smoothed_rows_equal_the_whole_volume_filter_at_every_edge() -> None:
    rng = np.random.default_rng(3)
    vol = rng.gamma(2.0, size=(3, 60, 40)).astype(np.float32)
    vol[rng.random(vol.shape) < 0.05] = np.nan
    sigma = (2.3, 1.7)
    whole = ndimage.gaussian_filter(np.nan_to_num(vol, nan=0.5).astype(np.float32), (0, *sigma))
    s = SmoothedRows(vol, 0.5, sigma)
    for r0, r1 in ((20, 30), (0, 5), (55, 60), (10, 50), (-4, 3), (58, 90), (0, 60)):
        img, first = s.rows(r0, r1)
        lo, hi = max(0, r0), min(60, r1)
        assert first <= lo and first + img.shape[1] >= hi
        np.testing.assert_array_equal(img[:, lo - first : hi - first], whole[:, lo:hi])
    # A band by boundaries (NaN ignored) covers every finite row asked for.
    tops = np.array([[12.4, np.nan], [15.0, 30.2]])
    img, first = s.band(tops, tops + 8)
    assert first <= 12 and first + img.shape[1] >= 39


# ---- the pathology metrics on phantoms ----


def _pathology_inputs(scan):
    """The arrays pathology_flag passes (see PathologyFlag.evaluate)."""
    ctx = ScanContext.build(scan)
    seg = ctx.usable_segmentation
    linear = ctx.linear_and_name[0]
    bg = linear[ctx.vitreous]
    noise = float(np.median(bg[np.isfinite(bg)]))
    sp = scan.meta.spacing
    return ctx, seg, linear, noise, sp.axial_um, sp.lateral_um


@pytest.mark.parametrize(
    ("pattern", "defects", "nan_rows"),
    [
        ("volume", {"oedema": 0.7}, False),
        ("line", {"macular_hole": 0.6}, False),
        ("line", {"drusen": 0.6}, True),
    ],
)
def test_pathology_metrics_equal_the_reference_on_phantoms(pattern, defects, nan_rows) -> None:
    scan, _, _ = make_phantom(pattern, defects=defects, seed=21)
    if nan_rows:  # no-data stripes, as a short B-scan in a file has
        scan.bscans[:, 300:310, 100:140] = np.nan
    ctx, seg, linear, noise, um, lat = _pathology_inputs(scan)
    sigma = (6.0 / um, 10.0 / lat)
    args = (linear, seg.rnfl, seg.onl_bottom, seg.onl_top, seg.bm, noise)
    kw = dict(min_rows=4, min_cols=3, rpe_rows=6, smooth_px=sigma)
    want = _ref_cavity_columns(*args, **kw)
    got = cavity_columns(*args, **kw)
    shared = SmoothedRows(linear, noise, sigma)
    also = cavity_columns(*args, **kw, smoothed=shared)
    for g in (got, also):
        np.testing.assert_array_equal(g[0], want[0])
        np.testing.assert_array_equal(g[1], want[1])
    if defects.get("oedema"):
        assert want[0].any(), "the oedema phantom has cavities to compare"
    floor = rpe_floor(seg.bm)
    top = np.maximum(floor - 300.0 / um, seg.ilm + 0.5 * (floor - seg.ilm))
    whole = ndimage.gaussian_filter(np.nan_to_num(linear, nan=0.0).astype(np.float32), (0, *sigma))
    want_rows = _ref_rpe_rows(whole, floor, top, below_px=5)
    np.testing.assert_array_equal(rpe_rows(whole, floor, top, below_px=5), want_rows)
    lazy = SmoothedRows(linear, 0.0, sigma)
    np.testing.assert_array_equal(rpe_rows(lazy, floor, top, below_px=5), want_rows)
    # Only the rows searched were smoothed, not the whole B-scan.
    first, end = lazy.covered
    assert 0 < end - first < 0.6 * linear.shape[1]
    assert np.isfinite(want_rows).mean() > 0.5


def _ref_subilm_gap(img, ilm, *, start_px, depth_px, smooth_cols=5):
    """subilm_gap as it was: every row of every B-scan filtered."""
    n, h, w = img.shape
    out = np.full((n, w), np.nan)
    offs = np.arange(start_px, start_px + depth_px)
    for k in range(n):
        b = ndimage.uniform_filter1d(np.nan_to_num(img[k]), size=smooth_cols, axis=1)
        cols = np.flatnonzero(np.isfinite(ilm[k]))
        if cols.size == 0:
            continue
        r0 = np.rint(ilm[k, cols]).astype(int)
        ok = (r0 - 4 >= 0) & (r0 + start_px + 3 * depth_px < h)
        cols, r0 = cols[ok], r0[ok]
        if cols.size == 0:
            continue
        above = b[
            np.clip(r0[:, None] - np.arange(4, 4 + depth_px)[None, :], 0, h - 1), cols[:, None]
        ]
        vit = float(np.median(above))
        below = b[r0[:, None] + offs[None, :], cols[:, None]]
        deep = b[
            r0[:, None] + np.arange(start_px + depth_px, start_px + 3 * depth_px)[None, :],
            cols[:, None],
        ]
        ret = float(np.median(deep))
        if ret - vit <= 0:
            continue
        out[k, cols] = (below.min(axis=1) - vit) / (ret - vit)
    return out


@pytest.mark.parametrize("defects", [{}, {"layer_artefact": 0.8}, {"cutoff_top": 0.6}])
def test_subilm_gap_equals_the_whole_bscan_filter(defects) -> None:
    from qmroct.metrics.plausibility import subilm_gap

    scan, _, _ = make_phantom("volume", defects=defects, seed=4)
    ctx = ScanContext.build(scan)
    ilm = ctx.segmentation.ilm.copy()
    ilm[0, :40] = 3.0  # an ILM at the image's top: its vitreous rows are clipped
    for start, depth in ((2, 5), (1, 3)):
        want = _ref_subilm_gap(ctx.display, ilm, start_px=start, depth_px=depth)
        got = subilm_gap(ctx.display, ilm, start_px=start, depth_px=depth)
        np.testing.assert_array_equal(got, want)
        assert np.isfinite(want).mean() > 0.5


def test_order_statistics_and_float64_percentiles_equal_numpy() -> None:
    from qmroct.metrics.fast import order_statistics, percentiles_float64

    rng = np.random.default_rng(13)
    for t in range(120):
        n = int(rng.integers(1, 3000))
        v = rng.gamma(2.0, size=n).astype(np.float32 if t % 3 else np.float64)
        if t % 4 == 0:
            v = np.round(v, 1).astype(v.dtype)  # many ties
        if t % 9 == 0:
            v[:] = 0.25  # all equal
        ks = rng.integers(0, n, size=5)
        np.testing.assert_array_equal(order_statistics(v, ks), np.sort(v)[ks])
        q = np.array([0, 1, 5, 33.3, 50, 75, 95, 99, 100])
        want = np.percentile(v.astype(np.float64), q)
        np.testing.assert_array_equal(percentiles_float64(v, q), want)


def _ref_quality_index(values, *, low_floor=1e-3):
    v = np.asarray(values, dtype=np.float64)
    if v.size < 100:
        return float("nan")
    low, noise, sat = np.percentile(v, [1, 75, 99])
    mid = (noise + sat) / 2.0
    ir = (sat - low) / max(low, low_floor) * 100.0
    upper = np.count_nonzero((v > mid) & (v <= sat))
    lower = np.count_nonzero((v > noise) & (v <= mid))
    return float(ir * (upper / lower if lower else 0.0))


def test_quality_index_equals_the_float64_reference() -> None:
    from qmroct.metrics.histogram import quality_index
    from qmroct.metrics.intensity import valid_values

    scan, _, _ = make_phantom("volume", defects={"low_signal": 0.5}, seed=8)
    ctx = ScanContext.build(scan)
    for k in range(0, scan.shape[0], 3):
        v = valid_values(ctx.display[k])
        assert quality_index(v) == _ref_quality_index(v)
    rng = np.random.default_rng(2)
    for v in (
        rng.integers(0, 256, size=5000).astype(np.float32) / 255,  # uint8 display: ties
        rng.random(99),  # too few
        np.r_[rng.random(500), np.nan],  # NaN: the reference's own path
        rng.integers(0, 65535, size=4000),  # integers
    ):
        want, got = _ref_quality_index(v), quality_index(v)
        assert got == want or (np.isnan(got) and np.isnan(want))


def test_ascan_signal_and_enface_projection_equal_the_whole_volume_sums() -> None:
    from qmroct.metrics.illumination import ascan_signal
    from qmroct.metrics.motion import enface_projection

    scan, _, _ = make_phantom("volume", defects={"shadowing": 0.6}, seed=6)
    ctx = ScanContext.build(scan)
    linear = ctx.linear_and_name[0].copy()
    linear[2, 100:120, 10:30] = np.nan
    s = ctx.segmentation
    for mask in (ctx.retina, band_mask(ctx.height, s.onl_top, s.onl_bottom)):
        vals = np.where(mask & np.isfinite(linear), linear, 0.0)
        cnt = mask.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.where(cnt > 0, vals.sum(axis=1) / np.maximum(cnt, 1), np.nan)
        np.testing.assert_array_equal(ascan_signal(linear, mask), want)
    empty = np.zeros_like(ctx.retina)
    assert np.isnan(ascan_signal(linear, empty)).all()
    h = linear.shape[1]
    ilm, bm = s.ilm.copy(), s.bm.copy()
    ilm[1, :50] = np.nan
    t = np.clip(np.round(np.nan_to_num(ilm)), 0, h).astype(np.intp)
    b = np.clip(np.round(np.nan_to_num(bm)), 0, h).astype(np.intp)
    b = np.maximum(b, t + 1).clip(max=h)
    t = np.minimum(t, b - 1)
    z = np.arange(h)[None, :, None]
    inside = (z >= t[:, None, :]) & (z < b[:, None, :]) & np.isfinite(ctx.display)
    total = np.where(inside, ctx.display, 0).sum(axis=1, dtype=np.float64)
    want = np.where(np.isfinite(ilm) & np.isfinite(bm), total / (b - t), np.nan)
    np.testing.assert_array_equal(enface_projection(ctx.display, ilm, bm), want)

"""Plausibility of a layer segmentation (OSCAR-IB A: the algorithm ran off its border).

Citation: OSCAR-IB A (Tewarie et al. 2012); automated detection of segmentation errors as in
Jammal et al., Sci Rep 2019 (AUC 0.979 on 25,250 B-scans).
"""

from __future__ import annotations

import numpy as np


def _mean_over(flags: np.ndarray, keep: np.ndarray | None) -> float:
    """Mean of a bool map over the A-scans in ``keep`` (all when None; NaN when none kept)."""
    if keep is None:
        return float(flags.mean())
    return float(flags[keep].mean()) if keep.any() else float("nan")


def gap_fraction(*layers: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Fraction of A-scans in which any of the given boundaries is missing (NaN).

    ``keep`` (bool, the layers' shape) restricts the count to those A-scans, e.g. outside the
    optic disc, where no BM exists to be missed. Units: fraction. Direction: lower is better.
    """
    missing = np.zeros(layers[0].shape, dtype=bool)
    for layer in layers:
        missing |= ~np.isfinite(layer)
    return _mean_over(missing, keep)


def order_violation_fraction(
    layers: list[np.ndarray], tolerance_px: float = 0.0, *, keep: np.ndarray | None = None
) -> float:
    """Fraction of A-scans where boundaries are out of anatomical order (top to bottom).

    .. math:: f = \\frac{1}{N}\\#\\{j : \\exists i,\\ L_{i+1,j} < L_{i,j} - \\tau\\}

    Only pairs where both boundaries exist are compared; ``keep`` restricts the count as in
    :func:`gap_fraction`. Units: fraction. Direction: lower is better.
    """
    bad = np.zeros(layers[0].shape, dtype=bool)
    for upper, lower in zip(layers[:-1], layers[1:], strict=True):
        both = np.isfinite(upper) & np.isfinite(lower)
        bad |= both & (lower < upper - tolerance_px)
    return _mean_over(bad, keep)


def jump_fraction(layer: np.ndarray, max_jump_px: float) -> float:
    """Fraction of adjacent A-scan pairs where a boundary jumps by more than ``max_jump_px``.

    .. math:: f = \\frac{1}{N}\\#\\{j : |L_{j+1} - L_j| > J\\}

    Units: fraction. Direction: lower is better.
    """
    d = np.abs(np.diff(layer, axis=-1))
    ok = np.isfinite(d)
    if not ok.any():
        return float("nan")
    return float(np.count_nonzero(d[ok] > max_jump_px) / ok.sum())


def edge_strength(img: np.ndarray, boundary: np.ndarray, *, depth_px: int = 4) -> np.ndarray:
    """Intensity step across a boundary in each A-scan: mean below minus mean above.

    ``img`` is (n, h, w) on the display scale, ``boundary`` (n, w). A boundary that sits on the
    real edge has a large positive step; one that ran off into the vitreous or the choroid has a
    step near zero. Returns (n, w), NaN where the boundary is missing or too near the edge.
    """
    n, h, w = img.shape
    out = np.full((n, w), np.nan)
    for k in range(n):
        row = boundary[k]
        cols = np.flatnonzero(np.isfinite(row))
        if cols.size == 0:
            continue
        r = np.rint(row[cols]).astype(int)
        ok = (r - depth_px >= 0) & (r + depth_px < h)
        cols, r = cols[ok], r[ok]
        above = np.zeros(cols.size)
        below = np.zeros(cols.size)
        for d in range(1, depth_px + 1):
            above += img[k, r - d, cols]
            below += img[k, r + d - 1, cols]
        out[k, cols] = (below - above) / depth_px
    return out


def edge_strength_p05(strength: np.ndarray, reference: float) -> float:
    """The 5th percentile of the edge step, relative to a reference step (the median).

    .. math:: E_{05} = P_5(e) / \\operatorname{median}(e)

    Units: none. Direction: higher is better (a run-off boundary drives it to 0 or below).
    """
    v = strength[np.isfinite(strength)]
    if v.size == 0 or not reference > 0:
        return float("nan")
    return float(np.percentile(v, 5) / reference)


def disagreement_px(ours: np.ndarray, device: np.ndarray) -> float:
    """Mean absolute difference between our boundary and the device's own, where both exist.

    .. math:: D = \\overline{|L^{ours}_j - L^{device}_j|}

    Units: pixels. Direction: lower is better. NaN without overlap.
    """
    both = np.isfinite(ours) & np.isfinite(device)
    if not both.any():
        return float("nan")
    return float(np.mean(np.abs(ours[both] - device[both])))


def subilm_gap(
    img: np.ndarray, ilm: np.ndarray, *, start_px: int, depth_px: int, smooth_cols: int = 5
) -> np.ndarray:
    """Darkest level just below the ILM, between the vitreous (0) and the retina (1).

    An ILM that latched onto a membrane or a floater above the retina has a dark vitreous gap
    under it; a true ILM has the bright inner retina under it. Per A-scan, after averaging
    ``smooth_cols`` neighbouring A-scans (speckle):

    .. math:: g_j = \\frac{\\min_{z \\in [\\mathrm{ILM}_j + a,\\ \\mathrm{ILM}_j + b]} I(z) - v}{r - v}

    with ``v`` and ``r`` the median vitreous and retina intensities of the B-scan (the vitreous
    above the ILM, the retina between ILM + b and ILM + 3b). Returns (n, w), NaN where the ILM
    is missing. Units: none. Direction: higher is better (near 0: a gap).
    """
    from scipy.ndimage import uniform_filter1d

    n, h, w = img.shape
    out = np.full((n, w), np.nan)
    offs = np.arange(start_px, start_px + depth_px)
    for k in range(n):
        cols = np.flatnonzero(np.isfinite(ilm[k]))
        if cols.size == 0:
            continue
        r0 = np.rint(ilm[k, cols]).astype(int)
        ok = (r0 - 4 >= 0) & (r0 + start_px + 3 * depth_px < h)
        cols, r0 = cols[ok], r0[ok]
        if cols.size == 0:
            continue
        # The filter runs along each row on its own: only the rows read below are filtered.
        first = max(0, int(r0.min()) - 4 - depth_px + 1)
        last = int(r0.max()) + start_px + 3 * depth_px
        b = uniform_filter1d(np.nan_to_num(img[k, first:last]), size=smooth_cols, axis=1)
        r0 = r0 - first
        above = b[
            np.clip(r0[:, None] - np.arange(4, 4 + depth_px)[None, :], -first, h - 1 - first),
            cols[:, None],
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

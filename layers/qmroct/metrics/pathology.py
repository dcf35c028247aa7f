"""Signs of retinal pathology inside the retina, beyond its total thickness.

Intraretinal fluid shows on OCT as round hyporeflective (cystoid) spaces in the inner and outer
nuclear layers, about as dark as the vitreous (e.g. the OCT classification of diabetic macular
oedema, Panozzo et al., Eur J Ophthalmol 2004; cystoid spaces in OCTDL's AMD and DME classes,
Kulyabin et al., Sci Data 2024). The healthy nuclear layers are dark but well above the noise
floor: a pixel region close to the noise floor inside them is fluid, not tissue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qmroct.metrics.fast import SmoothedRows, nanpercentile_columns, rect_opening_columns
from qmroct.metrics.regions import band_mask

#: A region darker than this fraction of the way from the noise floor to the local ONL level
#: is a cavity. Healthy ONL speckle, smoothed over a few pixels, stays above about half its level.
CAVITY_LEVEL = 0.25
#: Columns whose ONL stands less than this many noise floors above it cannot show a cavity.
MIN_CONTRAST = 3.0


def cavity_columns(
    linear: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    onl_top: np.ndarray,
    bm: np.ndarray,
    noise: float,
    *,
    min_rows: int,
    min_cols: int,
    rpe_rows: int,
    smooth_px: tuple[float, float] = (1.0, 1.5),
    smoothed: SmoothedRows | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per A-scan, whether a hyporeflective cavity lies between ``top`` and ``bottom``.

    ``linear`` (n, h, w) is relative linear reflectivity; ``top``/``bottom`` bound the nuclear
    layers (RNFL lower edge to ELM), ``onl_top`` to ``bottom`` is the ONL whose level is the
    reference, ``bm`` locates the RPE used to normalise each column (a vessel shadow darkens the
    whole column, the RPE with it, so it is no cavity). ``noise`` is the vitreous median.
    Returns ``(cavity, assessable)``, both boolean (n, w): a cavity is a dark region at least
    ``min_rows`` tall and ``min_cols`` wide (a morphological opening: speckle dips of a single
    frame are a pixel or two across, cystoid spaces 50 to 250 µm); a column is assessable where its ONL stands ``MIN_CONTRAST`` noise
    floors above the floor. ``smoothed``, if given, is ``linear`` smoothed by ``smooth_px``
    with NaN as ``noise`` (:class:`~qmroct.metrics.fast.SmoothedRows`), shared between calls.
    """
    n, h, w = linear.shape
    if smoothed is None:
        smoothed = SmoothedRows(linear, noise, smooth_px)
    # Only the rows of the nuclear band and the RPE band are read: smooth those alone.
    lo = np.fmin(np.fmin(top, onl_top), bm - rpe_rows)
    hi = np.fmax(bottom, bm)
    img, r0 = smoothed.band(lo, hi)
    rows = img.shape[1]
    onl = band_mask(rows, onl_top, bottom, first_row=r0)
    rpe = band_mask(rows, bm - rpe_rows, bm, first_row=r0)
    count = onl.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        onl_col = np.where(count > 0, np.where(onl, img, 0).sum(axis=1) / count, np.nan)
        rpe_col = np.where(rpe, img, 0).max(axis=1)
        ratio = onl_col / np.where(rpe_col > 0, rpe_col, np.nan)
    # The ONL/RPE ratio of the B-scan (a median, so cysts in some columns do not move it), times
    # each column's own RPE: the level the ONL would have in this column without fluid.
    typical = np.full((n, 1), np.nan)
    for b in range(n):
        ok = np.isfinite(ratio[b])
        if ok.any():
            typical[b, 0] = np.median(ratio[b, ok])
    ref = typical * rpe_col
    level = noise + CAVITY_LEVEL * (ref - noise)
    band = band_mask(rows, top, bottom, first_row=r0)
    dark = band & (img < level[:, None, :])
    # The opening by a 1 x min_rows x min_cols box, reduced to the columns it keeps.
    cavity = rect_opening_columns(dark, min_rows, min_cols)
    assessable = np.isfinite(ref) & (ref > MIN_CONTRAST * noise)
    return cavity & assessable, assessable


def rpe_floor(
    bm: np.ndarray,
    *,
    degree: int = 2,
    iterations: int = 5,
    lift_tol_px: float | None = None,
) -> np.ndarray:
    """Per B-scan, the RPE floor under drusen: a polynomial fitted to the RPE/BM rows from below.

    The posterior pole over a macular B-scan is close to a sphere cut by a plane, so a
    quadratic (curvature and tilt) carries the healthy RPE; drusen lift it above that floor.
    The fit is robust: points more than 2.5 robust SDs (at least one pixel) off the floor are
    left out and the fit repeated, so drusen do not pull the floor up, nor a boundary lost
    in the choroid under a hole pull it down (the normal RPE floor as a smooth fit under the
    RPE, Chen et al., Med Image Anal 2013).
    With ``lift_tol_px`` the fit is one-sided above: every point lifted more than that many
    rows above the floor is left out, whatever the spread. A broad druse (a drusenoid
    elevation over a third of the B-scan) widens the spread of the residuals until a
    2.5 SD band keeps it, and the floor bends up into it; a fixed bound on the lift does not
    widen with it (iterated up to ``2 * iterations`` times, as each fit sinks the floor).
    ``bm`` (n, w) rows, NaN where unknown; returns the floor rows, NaN where too few points.
    """
    n, w = bm.shape
    floor = np.full((n, w), np.nan)
    u = np.linspace(-1.0, 1.0, w)
    rounds = iterations if lift_tol_px is None else 2 * iterations
    for b in range(n):
        keep = np.isfinite(bm[b])
        if keep.sum() < max(8, 4 * (degree + 1)):
            continue
        for _ in range(rounds):
            coef = np.polyfit(u[keep], bm[b, keep], degree)
            fit = np.polyval(coef, u)
            lift = fit - bm[b]  # rows above the floor (image rows grow downwards)
            r = lift[keep]
            sd = 1.4826 * float(np.median(np.abs(r - np.median(r))))
            band = max(2.5 * sd, 1.0)
            above = band if lift_tol_px is None else lift_tol_px
            nxt = np.isfinite(bm[b]) & (lift < above) & (lift > -band)
            if nxt.sum() < max(8, 4 * (degree + 1)) or np.array_equal(nxt, keep):
                break
            keep = nxt
        floor[b] = np.polyval(np.polyfit(u[keep], bm[b, keep], degree), u)
    return floor


def elevation_over_width(lift_um: np.ndarray, width_px: int) -> np.ndarray:
    """Per A-scan, the height the RPE keeps over ``width_px`` neighbouring A-scans: the largest
    h such that a run of ``width_px`` A-scans through it all stand at least h above the floor.

    A morphological opening along each B-scan: a single-pixel spike of the boundary is no
    druse; a druse is a lift over a druse's width. NaN counts as no lift.
    """
    a = np.nan_to_num(lift_um, nan=0.0)
    if width_px <= 1:
        return a
    return ndimage.grey_opening(a, size=(1, width_px))


def rpe_rows(
    img: np.ndarray | SmoothedRows,
    floor: np.ndarray,
    top: np.ndarray,
    *,
    below_px: int,
    level: float = 0.35,
) -> np.ndarray:
    """Per A-scan, the lower edge of the RPE searched near its floor, independently of the
    layer segmentation's BM (whose boundaries are smoothed across neighbours and bridge drusen).

    ``img`` (n, h, w) smoothed reflectivity (or a :class:`~qmroct.metrics.fast.SmoothedRows`,
    of which only the rows searched are computed), ``floor`` (n, w) rows, ``top`` (n, w) the
    highest row to search (below the bright inner retina, e.g. half-way down from the ILM). In
    the window from ``top`` to ``below_px`` under the floor, the RPE is the deepest bright band:
    the deepest row brighter than ``level`` of the way from the window's 10th percentile to its
    maximum (the choroid below it and druse material under a lifted RPE are darker).
    Returns rows (float, NaN where the floor or top is unknown).
    """
    n, w = floor.shape
    out = np.full((n, w), np.nan)
    ok = np.isfinite(floor) & np.isfinite(top)
    if not ok.any():
        return out
    # Per B-scan, the columns searched, their floor row and how far above it to look.
    plan = []
    for b in range(n):
        if ok[b].any():
            cols = np.flatnonzero(ok[b])
            f = np.round(floor[b, cols]).astype(int)
            above = np.clip(f - np.round(top[b, cols]).astype(int), 1, None)
            plan.append((b, cols, f, above))
    if isinstance(img, SmoothedRows):
        h = img.height
        first = min(int(f.min()) - int(above.max()) for _, _, f, above in plan)
        last = max(int(f.max()) for _, _, f, _ in plan) + below_px
        vol, r0 = img.rows(first, last + 1)
    else:
        h, vol, r0 = img.shape[1], img, 0
    for b, cols, f, above in plan:
        offs = np.arange(-int(above.max()), below_px + 1)
        rows = np.clip(f[None, :] + offs[:, None], 0, h - 1)
        win = vol[b][rows - r0, cols[None, :]]  # (window, columns)
        inside = offs[:, None] >= -above[None, :]
        win = np.where(inside, win, np.nan)
        lo = nanpercentile_columns(win, 10)
        hi = np.nanmax(win, axis=0)
        bright = np.nan_to_num(win, nan=-np.inf) >= lo + level * (hi - lo)
        deepest = win.shape[0] - 1 - np.argmax(bright[::-1], axis=0)
        out[b, cols] = rows[deepest, np.arange(cols.size)] + 0.5
    return out

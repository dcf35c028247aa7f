"""Focus: how sharp the vitreous-retina edge (the ILM) is.

Blur lowers it while signal strength stays high, which separates poor focus (O) from poor
signal (S).
"""

from __future__ import annotations

import numpy as np


def ilm_edge_profile(bscan: np.ndarray, ilm: np.ndarray, half_window: int = 12) -> np.ndarray:
    """The mean axial profile across the ILM of one B-scan, aligned on the ILM of each A-scan.

    Returns ``2 * half_window + 1`` values (NaN when no A-scan has an ILM inside the image).
    """
    h, w = bscan.shape
    offsets = np.arange(-half_window, half_window + 1)
    cols = np.flatnonzero(np.isfinite(ilm))
    if cols.size == 0:
        return np.full(offsets.size, np.nan)
    # Sub-pixel alignment (linear interpolation between rows): rounding the ILM to whole rows
    # would itself blur the mean edge by about 0.3 px.
    pos = ilm[cols].astype(np.float64)[:, None] + offsets[None, :]
    lo = np.floor(pos).astype(int)
    inside = np.all((lo >= 0) & (lo + 1 < h), axis=1)
    if not inside.any():
        return np.full(offsets.size, np.nan)
    lo, frac, c = lo[inside], (pos - np.floor(pos))[inside], cols[inside][:, None]
    prof = bscan[lo, c] * (1.0 - frac) + bscan[lo + 1, c] * frac
    return np.nanmean(prof, axis=0)


def refine_edge(bscan: np.ndarray, ilm: np.ndarray, search_px: int = 3) -> np.ndarray:
    """The ILM moved to the steepest rise within ``search_px`` rows, per A-scan (sub-pixel).

    Aligning the edge profiles on the segmentation alone would add its jitter to the width;
    the steepest rise of a laterally averaged image (5 A-scans) is where the edge is.
    """
    from scipy.ndimage import uniform_filter1d

    h, w = bscan.shape
    img = uniform_filter1d(np.nan_to_num(bscan), size=5, axis=1)
    grad = np.diff(img, axis=0)  # grad[z] = I[z+1] - I[z], the rise between z and z+1
    out = np.full(w, np.nan)
    cols = np.flatnonzero(np.isfinite(ilm))
    if cols.size == 0:
        return out
    base = np.rint(ilm[cols]).astype(int)
    offs = np.arange(-search_px, search_px + 1)
    rows = base[:, None] + offs[None, :]
    ok = np.all((rows >= 1) & (rows < h - 2), axis=1)
    cols, rows = cols[ok], rows[ok]
    g = grad[rows, cols[:, None]]
    best = np.argmax(g, axis=1)
    z = rows[np.arange(rows.shape[0]), best]
    a, b, c = grad[z - 1, cols], grad[z, cols], grad[z + 1, cols]
    den = a - 2 * b + c
    sub = np.where(den < 0, np.clip(0.5 * (a - c) / np.where(den < 0, den, -1), -0.5, 0.5), 0.0)
    out[cols] = z + 0.5 + sub
    return out


def edge_width_px(profile: np.ndarray) -> float:
    """Width of a rising edge: step height over the steepest slope.

    .. math:: W = \\frac{\\overline{I}_{after} - \\overline{I}_{before}}{\\max_z \\, dI/dz}

    For a step blurred by a Gaussian of standard deviation sigma, W = sigma * sqrt(2 pi).
    The step is measured between the outer quarters of the profile. Units: pixels. Direction:
    lower is better (sharper).
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.size < 8 or not np.all(np.isfinite(p)):
        return float("nan")
    q = max(2, p.size // 4)
    step = p[-q:].mean() - p[:q].mean()
    slope = np.max(np.diff(p))
    if step <= 0 or slope <= 0:
        return float("nan")
    return float(max(step / slope, 1.0))


def gradient_contrast(profile: np.ndarray) -> float:
    """Mean gradient magnitude across the ILM transition, relative to the step height.

    .. math:: G = \\frac{\\max_z dI/dz}{\\overline{I}_{after} - \\overline{I}_{before}} = 1/W

    Units: 1/pixel. Direction: higher is better.
    """
    w = edge_width_px(profile)
    return float(1.0 / w) if np.isfinite(w) else float("nan")

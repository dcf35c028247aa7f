"""Focus: how sharp the vitreous-retina edge (the ILM) is.

Blur lowers it while signal strength stays high, which separates poor focus (O) from poor
signal (S).
"""

from __future__ import annotations

import numpy as np


def ilm_edge_profile(bscan: np.ndarray, ilm: np.ndarray, half_window: int = 12) -> np.ndarray:
    """The mean axial profile across the ILM of one B-scan, aligned on the ILM row of each A-scan.

    Returns ``2 * half_window + 1`` values (NaN when no A-scan has an ILM inside the image).
    """
    h, w = bscan.shape
    offsets = np.arange(-half_window, half_window + 1)
    cols = np.flatnonzero(np.isfinite(ilm))
    if cols.size == 0:
        return np.full(offsets.size, np.nan)
    rows = np.rint(ilm[cols]).astype(int)[:, None] + offsets[None, :]
    inside = np.all((rows >= 0) & (rows < h), axis=1)
    if not inside.any():
        return np.full(offsets.size, np.nan)
    prof = bscan[rows[inside], cols[inside][:, None]]
    return np.nanmean(prof, axis=0)


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

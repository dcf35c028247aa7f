"""Blinks and eye motion in volumes (more than three B-scans along the slow axis).

Citation: OSCAR-IB O, blinks and motion (Tewarie et al. 2012); Tukey fences (Tukey 1977).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter, uniform_filter


def tukey_outliers(x: np.ndarray, k: float = 1.5) -> np.ndarray:
    """Boolean mask of values outside the Tukey fences of ``x``.

    .. math:: x < Q_1 - k\\,\\mathrm{IQR} \\ \\lor\\ x > Q_3 + k\\,\\mathrm{IQR}

    Citation: Tukey, Exploratory Data Analysis, 1977. NaN values are never outliers.
    """
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 4:
        return np.zeros(x.shape, dtype=bool)
    q1, q3 = np.percentile(x[ok], [25, 75])
    iqr = q3 - q1
    with np.errstate(invalid="ignore"):
        return ok & ((x < q1 - k * iqr) | (x > q3 + k * iqr))


def blink_bscans(
    bscan_means: np.ndarray,
    bscan_p95: np.ndarray,
    *,
    k: float = 1.5,
    min_drop: float = 0.15,
    dark_drop: float = 0.5,
) -> np.ndarray:
    """Indices of B-scans that look like blinks: dark outliers of the volume.

    A B-scan is a blink when its mean or its 95th percentile lies below the lower Tukey fence of
    the volume *and* at least ``min_drop`` (relative) below the volume's median, which keeps the
    natural spread of a clean volume (tiny IQR) from raising alarms. A B-scan more than
    ``dark_drop`` below the median is a blink regardless of the fences: when over a quarter of
    the B-scans are dark, Q1 falls among them and the fences no longer see them.
    Units: indices. Direction: fewer is better.
    """
    out = np.zeros(len(bscan_means), dtype=bool)
    for series in (np.asarray(bscan_means, float), np.asarray(bscan_p95, float)):
        med = np.nanmedian(series)
        low = tukey_outliers(series, k) & (series < med)
        drop = (med - series) / med if med > 0 else np.zeros_like(series)
        out |= low & (drop >= min_drop)
        out |= np.isfinite(series) & (drop >= dark_drop)
    return np.flatnonzero(out)


def axial_motion_px(ilm: np.ndarray, window: int = 5) -> float:
    """Largest axial jump between adjacent B-scans after removing the smooth eye curvature.

    ``d_k`` is the median over A-scans of ILM(k+1) - ILM(k); its running median over
    ``window`` B-scans is the smooth part (curvature, tilt along the slow axis).

    .. math:: M = \\max_k \\left| d_k - \\operatorname{med}_{window}(d)_k \\right|

    Units: pixels (multiply by the axial pixel size for µm). Direction: lower is better.
    """
    if ilm.shape[0] < 3:
        return float("nan")
    diffs = ilm[1:] - ilm[:-1]
    with np.errstate(all="ignore"):
        d = np.array(
            [np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in diffs], dtype=np.float64
        )
    if not np.isfinite(d).any():
        return float("nan")
    d = np.where(np.isfinite(d), d, np.nanmedian(d))
    smooth = median_filter(d, size=min(window, d.size), mode="nearest")
    return float(np.max(np.abs(d - smooth)))


def _downsample(bscan: np.ndarray, f: int) -> np.ndarray:
    img = np.nan_to_num(bscan, nan=0.0)
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def adjacent_ncc(bscans: np.ndarray, factor: int = 4) -> np.ndarray:
    """Normalised cross-correlation of each pair of adjacent B-scans (speckle averaged out).

    Each B-scan is block-averaged by ``factor`` and smoothed first, so that the correlation
    follows anatomy rather than speckle.

    .. math:: \\mathrm{NCC}_k = \\frac{\\sum (a - \\bar a)(b - \\bar b)}
              {\\sqrt{\\sum (a - \\bar a)^2 \\sum (b - \\bar b)^2}},\\ a = B_k,\\ b = B_{k+1}

    Units: none, in [-1, 1], one value per pair. Direction: higher is better.
    """
    small = [uniform_filter(_downsample(b, factor), size=3) for b in bscans]
    out = np.empty(max(len(small) - 1, 0))
    for k in range(len(small) - 1):
        a = small[k] - small[k].mean()
        b = small[k + 1] - small[k + 1].mean()
        den = np.sqrt((a * a).sum() * (b * b).sum())
        out[k] = (a * b).sum() / den if den > 0 else 0.0
    return out


def lateral_ncc_drop(ncc: np.ndarray) -> float:
    """How far the worst adjacent-pair NCC falls below the volume's typical NCC.

    .. math:: D = \\operatorname{median}_k \\mathrm{NCC}_k - \\min_k \\mathrm{NCC}_k

    Units: none. Direction: lower is better.
    """
    if ncc.size == 0:
        return float("nan")
    return float(np.median(ncc) - np.min(ncc))

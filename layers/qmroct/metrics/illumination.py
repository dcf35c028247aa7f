"""Illumination: vignetting, shadowing and uneven signal across the scan (OSCAR-IB I), and the
left/right ONL brightness balance that reveals an off-centre beam (OSCAR-IB B).

All functions take ``s``, the mean retinal reflectivity of each A-scan. Citation: the
OSCAR-IB I criterion (Tewarie et al., PLoS One 2012); the indices follow the illumination
checks of OCT quality maps (per-A-scan signal, edge/centre, sectors).
"""

from __future__ import annotations

import numpy as np


def ascan_signal(img: np.ndarray, retina: np.ndarray) -> np.ndarray:
    """s(k, j): the mean display intensity of the retina in each A-scan (NaN without retina)."""
    # Only the rows the retina reaches contribute: the sum over the others adds zeros.
    rows = np.flatnonzero(retina.any(axis=2).any(axis=0))
    if rows.size:
        img, retina = img[:, rows[0] : rows[-1] + 1], retina[:, rows[0] : rows[-1] + 1]
    vals = np.where(retina & np.isfinite(img), img, 0.0)
    cnt = retina.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, vals.sum(axis=1) / np.maximum(cnt, 1), np.nan)


def signal_cv(s: np.ndarray) -> float:
    """Coefficient of variation of the per-A-scan retinal signal.

    .. math:: \\mathrm{CV} = \\sigma(s) / \\mu(s)

    Units: none. Direction: lower is better.
    """
    v = s[np.isfinite(s)]
    if v.size < 2 or v.mean() <= 0:
        return float("nan")
    return float(v.std() / v.mean())


def edge_centre_ratio(s: np.ndarray, *, edge: float = 0.10, centre: float = 0.50) -> float:
    """Mean signal in the outer ``edge`` band over the mean in the central ``centre`` part.

    For one B-scan the bands run along the lateral axis; for a volume's en-face map (n, w) they
    are square rings of the normalised Chebyshev radius.

    .. math:: R = \\overline{s}_{r > 1 - e} \\,/\\, \\overline{s}_{r < c}

    Units: none. Direction: closer to 1 is better (vignetting lowers it).
    """
    s = np.atleast_2d(s)
    n, w = s.shape
    x = np.abs(np.linspace(-1.0, 1.0, w))[None, :]
    y = np.abs(np.linspace(-1.0, 1.0, n))[:, None] if n > 3 else np.zeros((n, 1))
    r = np.maximum(x, y)
    outer, inner = s[(r > 1.0 - edge) & np.isfinite(s)], s[(r < centre) & np.isfinite(s)]
    if outer.size == 0 or inner.size == 0 or inner.mean() <= 0:
        return float("nan")
    return float(outer.mean() / inner.mean())


def sector_signal_db(
    s: np.ndarray, noise_sd: float, sectors: int = 16, *, min_valid: float = 0.5
) -> np.ndarray:
    """SNR in dB of each of ``sectors`` vertical sectors (equal column ranges).

    .. math:: \\mathrm{SNR}_i = 10 \\log_{10} \\frac{\\overline{s}_i^{\\,2}}{\\sigma_{bg}^2}

    A sector with fewer than ``min_valid`` of its A-scans measured (most of it is optic disc,
    or outside the retina) gets NaN: a sliver of disc margin is not a sector.

    Units: dB, one per sector. Direction: higher is better.
    """
    s = np.atleast_2d(s)
    cols = np.array_split(np.arange(s.shape[1]), sectors)
    out = np.full(sectors, np.nan)
    if not noise_sd > 0:
        return out
    for i, c in enumerate(cols):
        v = s[:, c]
        v = v[np.isfinite(v)]
        if v.size and v.size >= min_valid * s[:, c].size and v.mean() > 0:
            out[i] = 10.0 * np.log10(v.mean() ** 2 / noise_sd**2)
    return out


def weakest_sector_deficit_db(sector_db: np.ndarray) -> float:
    """How far the weakest of the sectors falls below their median (dB).

    .. math:: \\Delta = \\operatorname{median}_i \\mathrm{SNR}_i - \\min_i \\mathrm{SNR}_i

    Units: dB. Direction: lower is better.
    """
    v = sector_db[np.isfinite(sector_db)]
    if v.size == 0:
        return float("nan")
    return float(np.median(v) - v.min())


def dark_fraction(s: np.ndarray, *, threshold: float = 0.5) -> float:
    """Shadowed share of the A-scans: each A-scan darker than ``threshold`` times the median
    signal counts by how deep it falls below it, a black one fully.

    .. math:: f = \\frac{1}{n} \\sum_j \\operatorname{clip}\\Big(\\frac{\\theta m - s_j}{\\theta m}, 0, 1\\Big),
              \\quad m = \\operatorname{median}(s),\\ \\theta = 0.5

    Why weighted, not a count of A-scans under the line: a count jumps as a broad shadow
    crosses the line. A major vessel's shadow on a peripapillary ring sits near half the
    median; two scans of one eye 3 s apart counted 2.5% and 0.8% of their A-scans dark, a
    warning in one and a pass in the other. Weighted by depth, such A-scans count a few
    percent each and the two scans agree; a deep media shadow still counts fully.
    Scale: a fifth of the scan under a 5 dB shadow (0.316 of the median) scores
    0.2 * (1 - 0.316 / 0.5) = 0.074; a tenth under 4 dB scores 0.020.

    Units: fraction (A-scan equivalents). Direction: lower is better (shadows raise it).
    """
    v = s[np.isfinite(s)]
    if v.size == 0:
        return float("nan")
    line = threshold * float(np.median(v))
    if line <= 0:
        return float("nan")
    return float(np.mean(np.clip((line - v) / line, 0.0, 1.0)))


def bscan_gain_cv(s: np.ndarray) -> float:
    """CV of the per-B-scan mean retinal signal in a volume (B-scan gain spread).

    .. math:: \\mathrm{CV}_B = \\sigma_k(\\overline{s}_k) / \\mu_k(\\overline{s}_k)

    Units: none. Direction: lower is better. NaN for a single B-scan.
    """
    s = np.atleast_2d(s)
    if s.shape[0] < 2:
        return float("nan")
    with np.errstate(all="ignore"):
        m = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in s])
    m = m[np.isfinite(m)]
    if m.size < 2 or m.mean() <= 0:
        return float("nan")
    return float(m.std() / m.mean())


def left_right_ratio(s: np.ndarray, *, exclude_centre: float = 0.2) -> float:
    """Brightness balance of a layer between the left and right halves of the scan.

    Applied to the mean ONL intensity per A-scan, it reveals an off-centre beam (OSCAR-IB B):
    the ONL looks darker on the side where the beam enters obliquely (Henle fibre layer
    reflectivity depends on the incidence angle; Lujan et al., IOVS 2011).

    .. math:: r = \\min(\\tilde{s}_L, \\tilde{s}_R) / \\max(\\tilde{s}_L, \\tilde{s}_R)

    with :math:`\\tilde{s}` the median of a half: one bright spike (a vessel wall, a hyper-
    reflective dot in the ONL) must not decide the balance, as it would in a mean.

    Units: none, in (0, 1]. Direction: higher is better.
    """
    s = np.atleast_2d(s)
    w = s.shape[1]
    half = int(round(exclude_centre * w / 2.0))
    left = s[:, : w // 2 - half]
    right = s[:, w // 2 + half :]
    lv, rv = left[np.isfinite(left)], right[np.isfinite(right)]
    if lv.size == 0 or rv.size == 0:
        return float("nan")
    a, b = float(np.median(lv)), float(np.median(rv))
    if max(a, b) <= 0:
        return float("nan")
    return float(min(a, b) / max(a, b))

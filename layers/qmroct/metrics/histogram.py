"""Histogram indices of signal quality on display intensities: QI and mTCI.

Both take the valid pixels of one B-scan (see :func:`qmroct.metrics.intensity.valid_values`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from qmroct.metrics.fast import percentiles_float64

#: Huang et al. 2012, Table 2: the fraction of the histogram below the tissue-noise knee, per device.
MTCI_DEVICE_CONSTANT: dict[str, float] = {
    "cirrus": 0.40,
    "rtvue": 0.55,
    "spectralis": 0.45,
    "topcon": 0.50,
}
MTCI_DEFAULT_CONSTANT = 0.45


def quality_index(values: np.ndarray, *, low_floor: float = 1e-3) -> float:
    """Quality Index (QI) of one B-scan histogram.

    .. math::
        \\mathrm{IR} = \\frac{P_{99} - P_1}{\\max(P_1, f)} \\times 100, \\quad
        \\mathrm{TSR} = \\frac{\\#\\{m < I \\le P_{99}\\}}{\\#\\{P_{75} < I \\le m\\}}, \\quad
        m = \\frac{P_{75} + P_{99}}{2}, \\quad \\mathrm{QI} = \\mathrm{IR} \\cdot \\mathrm{TSR}

    ``f`` (``low_floor``) keeps IR finite when P1 is near zero (display scale in [0, 1]).
    Citation: Stein et al., Br J Ophthalmol 2006 (AUROC 0.99, poor vs acceptable).
    Units: none. Direction: higher is better.
    """
    v = np.asarray(values)
    if v.dtype not in (np.float32, np.float64):
        v = v.astype(np.float64)
    if v.size < 100:
        return float("nan")
    if np.isfinite(v).all():
        # The percentiles of the float64 copy, without making it or sorting (same numbers);
        # the comparisons below with float64 thresholds are made in float64 all the same.
        low, noise, sat = percentiles_float64(v, np.array([1, 75, 99]))
    else:
        low, noise, sat = np.percentile(v.astype(np.float64), [1, 75, 99])
    mid = (noise + sat) / 2.0
    ir = (sat - low) / max(low, low_floor) * 100.0
    upper = np.count_nonzero((v > mid) & (v <= sat))
    lower = np.count_nonzero((v > noise) & (v <= mid))
    tsr = upper / lower if lower else 0.0
    return float(ir * tsr)


def _quantile(edges: np.ndarray, cdf: np.ndarray, q: float) -> float:
    """F^-1(q) from a histogram's CDF at its edges, linear within the bin."""
    i = int(np.clip(np.searchsorted(cdf, q, side="left"), 1, cdf.size - 1))
    lo, hi = cdf[i - 1], cdf[i]
    t = 0.0 if hi <= lo else (q - lo) / (hi - lo)
    return float(edges[i - 1] + t * (edges[i] - edges[i - 1]))


def _background_peak(x: np.ndarray, h: np.ndarray) -> tuple[float, float]:
    """N1 and its 95% left shoulder N1s. On a broad, flat-topped peak the raw 0.95 crossing
    wanders with the counting noise of a few percent per bin (as much as the 5% that defines
    it). So the left flank is fitted, over the bins from half the peak up to it, by
    ``log h = log h(N1) - a (x - N1)^2`` (one parameter, dozens of bins), and N1s is where that
    curve crosses 0.95 h(N1): the shoulder of the left flank's own shape, averaged."""
    peak = int(np.argmax(h))
    left = h[: peak + 1] >= 0.5 * h[peak]
    lo = peak - int(np.argmin(left[::-1])) + 1 if not left.all() else 0
    dx = x[lo : peak + 1] - x[peak]
    ys = np.log(np.maximum(h[lo : peak + 1], 1e-12) / h[peak])
    if dx.size >= 4:
        wts = h[lo : peak + 1]
        a = -float(np.sum(wts * ys * dx**2) / np.sum(wts * dx**4))  # least squares, weighted
        if a > 0:
            return float(x[peak]), float(x[peak] - math.sqrt(-math.log(0.95) / a))
    return float(x[peak]), float(x[int(np.flatnonzero(h >= 0.95 * h[peak])[0])])


def mtci(
    values: np.ndarray,
    *,
    c_dev: float = MTCI_DEFAULT_CONSTANT,
    bins: int = 200,
    grid: int = 4096,
) -> float:
    """maximum Tissue Contrast Index (mTCI) of one B-scan histogram.

    .. math::
        N_1 = \\arg\\max h, \\quad N_{1s} = \\min\\{x : h(x) \\ge 0.95\\, h(N_1)\\}, \\quad
        N_2 = F^{-1}\\!\\left(\\frac{0.999\\, F(N_{1s})}{c_{dev}}\\right), \\quad
        N_3 = F^{-1}(0.999), \\quad \\mathrm{mTCI} = \\frac{N_3 - N_1}{N_2 - N_1}

    ``h`` is the pdf at the resolution of Huang's ``bins``-bin histogram, ``F`` the CDF, ``c_dev``
    the device constant (:data:`MTCI_DEVICE_CONSTANT`). Citation: Huang et al., IOVS 2012
    (rho >= 0.8 with graders). Units: none. Direction: higher is better.

    Everything comes from one ``grid``-bin histogram (no sort of the pixels): ``F`` is its
    cumulative sum, interpolated within bins, and ``h`` is it smoothed by a Gaussian one
    Huang bin wide (FWHM = the robust span P0.1..P99.9 over ``bins``). A raw 200-bin pdf puts the
    knee N1s on whichever bin edge the peak happens to straddle, so mTCI jumped with the bin
    count and between repeat scans; the smoothed pdf has one knee whatever the grid. N1s comes
    from a curve fitted to the left flank of the background peak (see ``_background_peak``),
    which averages the counting noise of the flat top.
    """
    v = np.asarray(values).ravel()
    if v.size < 100:
        return float("nan")
    lo, hi = float(np.min(v)), float(np.max(v))
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return float("nan")
    counts, edges = np.histogram(v, bins=grid, range=(lo, hi))
    cdf = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)]) / v.size
    span = _quantile(edges, cdf, 0.999) - _quantile(edges, cdf, 0.001)
    if span <= 0:
        span = hi - lo
    step = (hi - lo) / grid
    sigma = max(span / bins / 2.355 / step, 0.5)
    h = ndimage.gaussian_filter1d(counts.astype(np.float64), sigma, mode="constant")
    centres = (edges[:-1] + edges[1:]) / 2.0
    n1, n1s = _background_peak(centres, h)
    f_n1s = float(np.interp(n1s, edges, cdf))
    c_n2 = min(0.999 * f_n1s / c_dev, 0.999)
    n2 = _quantile(edges, cdf, c_n2)
    n3 = _quantile(edges, cdf, 0.999)
    if n2 - n1 <= 0:
        # The knee sits at the background peak: no tissue above the noise.
        return 1.0
    return float((n3 - n1) / (n2 - n1))

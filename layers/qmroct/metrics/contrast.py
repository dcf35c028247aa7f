"""Segmentation-informed signal-to-noise and contrast-to-noise ratios.

Definitions vary across the literature; the ones used here are named in each docstring. The
retina is the region between ILM and BM; the background is the vitreous above the ILM (a margin
keeps the ILM's own edge out), which holds only noise.
"""

from __future__ import annotations

import numpy as np


def _stats(img: np.ndarray, mask: np.ndarray) -> tuple[float, float, int]:
    v = img[mask]
    v = v[np.isfinite(v)]
    if v.size < 10:
        return float("nan"), float("nan"), int(v.size)
    return float(v.mean()), float(v.var()), int(v.size)


def snr_db(img: np.ndarray, retina: np.ndarray, background: np.ndarray) -> float:
    """Signal-to-noise ratio in decibels ("mean retina over background spread" definition).

    .. math:: \\mathrm{SNR_{dB}} = 10 \\log_{10}\\frac{\\overline{I}_{ret}^{\\,2}}{\\sigma_{bg}^2}

    Citation: the segmentation-informed form in the OCT quality literature (e.g. Stein 2006
    compares device signal strength with an SNR of this kind). Units: dB. Direction: higher is
    better.
    """
    mu_r, _, _ = _stats(img, retina)
    _, var_b, _ = _stats(img, background)
    if not (np.isfinite(mu_r) and np.isfinite(var_b)) or var_b <= 0:
        return float("nan")
    return float(10.0 * np.log10(mu_r**2 / var_b))


def cnr(img: np.ndarray, retina: np.ndarray, background: np.ndarray) -> float:
    """Contrast-to-noise ratio ("pooled variance" definition).

    .. math:: \\mathrm{CNR} = \\frac{|\\mu_{ret} - \\mu_{bg}|}{\\sqrt{\\sigma_{ret}^2 + \\sigma_{bg}^2}}

    Units: none. Direction: higher is better.
    """
    mu_r, var_r, _ = _stats(img, retina)
    mu_b, var_b, _ = _stats(img, background)
    denom = np.sqrt(var_r + var_b)
    if not np.isfinite(denom) or denom <= 0:
        return float("nan")
    return float(abs(mu_r - mu_b) / denom)


def peak_snr_db(linear: np.ndarray, retina: np.ndarray, background: np.ndarray) -> float:
    """Peak tissue signal over the noise floor, in dB ("device-style" definition).

    On relative linear reflectivity: the 95th percentile of the retina over the median of the
    vitreous' *positive* values, the way device indices such as Spectralis' Q relate the
    brightest tissue to the noise floor (speckle and averaging affect it less than a
    variance-based SNR).

    Why the positive values: some acquisition software subtracts a noise offset and clips at
    zero (a 2011 Spectralis ring export has 37% of its vitreous at exactly 0, scans of 2017 3 to
    6%). A plain median then falls with the clipping and the SNR rises with it. The noise floor
    is exponential in intensity, and an exponential is memoryless: above any offset it keeps its
    scale, so the median of the values above zero is the same floor with or without the
    clipping (on unclipped noise the two medians agree).

    .. math:: \\mathrm{SNR_{peak}} = 10 \\log_{10} \\frac{P_{95}(I_{ret})}{\\operatorname{median}(I_{bg} > 0)}

    Units: dB. Direction: higher is better.
    """
    r = linear[retina]
    b = linear[background]
    r, b = r[np.isfinite(r)], b[np.isfinite(b)]
    b = b[b > 0]
    if r.size < 10 or b.size < 10:
        return float("nan")
    floor = float(np.median(b))
    return float(10.0 * np.log10(float(np.percentile(r, 95)) / floor))

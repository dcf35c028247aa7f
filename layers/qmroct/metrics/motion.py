"""Blinks and eye motion in volumes (more than three B-scans along the slow axis).

Citation: OSCAR-IB O, blinks and motion (Tewarie et al. 2012); Tukey fences (Tukey 1977);
lateral motion as en-face discontinuities registered against the fundus reference (Ricco et
al. 2009, MICCAI, "Correcting motion artifacts in retinal SD-OCT images using Scanning Laser
Ophthalmoscope images"; Kraus et al. 2012, Biomed Opt Express 3:1182).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, map_coordinates, median_filter, uniform_filter


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


def enface_projection(image: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Mean of ``image`` (n, h, w) between rows ``top`` and ``bottom`` (n, w) per A-scan.

    .. math:: E_{k,j} = \\frac{1}{b_{kj} - t_{kj}} \\sum_{z = t_{kj}}^{b_{kj} - 1} I_{k,z,j}

    Restricting the mean to the retina (ILM to BM) keeps the vitreous noise out, so the vessel
    shadows stand out. Units: those of ``image``; NaN where a boundary is missing.
    """
    h = image.shape[1]
    ok = np.isfinite(top) & np.isfinite(bottom)
    t = np.clip(np.round(np.nan_to_num(top)), 0, h).astype(np.intp)
    b = np.clip(np.round(np.nan_to_num(bottom)), 0, h).astype(np.intp)
    b = np.maximum(b, t + 1).clip(max=h)
    t = np.minimum(t, b - 1)
    # A masked sum over rows: a cumulative sum along the strided axis of a whole volume was
    # twenty times slower.
    # Only rows from the highest top to the deepest bottom contribute (the rest add zeros).
    r0, r1 = (int(t[ok].min()), int(b[ok].max())) if ok.any() else (0, h)
    image = image[:, r0:r1]
    z = np.arange(r0, r1)[None, :, None]
    inside = (z >= t[:, None, :]) & (z < b[:, None, :]) & np.isfinite(image)
    total = np.where(inside, image, 0).sum(axis=1, dtype=np.float64)
    return np.where(ok, total / (b - t), np.nan)


def fundus_line_profiles(
    fundus: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int
) -> np.ndarray:
    """The fundus image sampled along each B-scan's line: the motion-free reference rows.

    ``starts`` and ``ends`` are (n, 2) fundus pixel coordinates (x, y) of each B-scan's first and
    last A-scan; each line is sampled at ``width`` evenly spaced points (bilinear). Units: those
    of ``fundus``; returns (n, width).
    """
    t = np.linspace(0.0, 1.0, width)[None, :]
    xs = starts[:, :1] + t * (ends[:, :1] - starts[:, :1])
    ys = starts[:, 1:] + t * (ends[:, 1:] - starts[:, 1:])
    img = np.asarray(fundus, np.float64)
    return map_coordinates(img, [ys.ravel(), xs.ravel()], order=1, mode="nearest").reshape(xs.shape)


def _highpass_rows(rows: np.ndarray, sigma_px: float) -> np.ndarray:
    """Rows minus their Gaussian low-pass (the slow thickness and illumination trends), lightly
    smoothed against speckle, zero-mean and unit-norm (zero where a row has no data)."""
    ok = np.isfinite(rows).all(axis=1)
    r = np.where(ok[:, None], rows, 0.0)
    r = r - gaussian_filter1d(r, sigma_px, axis=1, mode="nearest")
    r = gaussian_filter1d(r, 0.7, axis=1, mode="nearest")
    r = r - r.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(r, axis=1, keepdims=True)
    return np.where(ok[:, None] & (norm > 0), r / np.where(norm > 0, norm, 1.0), 0.0)


def lateral_shifts(
    rows: np.ndarray, reference: np.ndarray, *, max_shift_px: int, highpass_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lateral displacement of each row against its reference row, by cross-correlation.

    Both are high-pass filtered (Gaussian, ``highpass_px``) so that vessels, not the slow
    thickness trend, carry the match; the shift is the peak of the normalised cross-correlation
    within +-``max_shift_px``, refined to sub-pixel by a parabola:

    .. math:: \\delta_k = \\arg\\max_{|s| \\le S} \\sum_j \\hat R_{k,j}\\, \\hat E_{k,j+s}

    Units: A-scans (multiply by the lateral pixel size for µm); positive means the tissue of row
    ``k`` appears at larger column indices than in the reference. Also returns the peak NCC per
    row (in [-1, 1]; higher is a more trustworthy match).
    """
    a = _highpass_rows(np.asarray(rows, np.float64), highpass_px)
    b = _highpass_rows(np.asarray(reference, np.float64), highpass_px)
    n, w = a.shape
    size = 2 * w
    cc = np.fft.irfft(np.fft.rfft(b, size, axis=1).conj() * np.fft.rfft(a, size, axis=1), size)
    lags = np.arange(-max_shift_px, max_shift_px + 1)
    c = cc[:, lags % size]
    i = np.clip(c.argmax(axis=1), 1, lags.size - 2)
    k = np.arange(n)
    g0, g1, g2 = c[k, i - 1], c[k, i], c[k, i + 1]
    den = g0 - 2 * g1 + g2
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(np.abs(den) > 1e-12, 0.5 * (g0 - g2) / den, 0.0)
    return lags[i] + np.clip(off, -0.5, 0.5), g1


def lateral_motion_px(shifts: np.ndarray, peak_ncc: np.ndarray, min_ncc: float = 0.4) -> float:
    """Largest lateral displacement of a B-scan from the volume's typical registration.

    Only rows whose match is trustworthy (peak NCC >= ``min_ncc``) count; the median shift is
    the fixed offset between the fundus camera and the OCT beam, not motion.

    .. math:: L = \\max_{k:\\, \\rho_k \\ge \\rho_{min}} |\\delta_k - \\operatorname{med}_k \\delta_k|

    Units: A-scans (multiply by the lateral pixel size for µm). Direction: lower is better.
    NaN when fewer than three rows match.
    """
    ok = np.isfinite(shifts) & (peak_ncc >= min_ncc)
    if ok.sum() < 3:
        return float("nan")
    d = shifts[ok]
    return float(np.max(np.abs(d - np.median(d))))

"""Histogram indices of signal quality on display intensities: QI and mTCI.

Both take the valid pixels of one B-scan (see :func:`qmroct.metrics.intensity.valid_values`).
"""

from __future__ import annotations

import numpy as np

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
    v = np.asarray(values, dtype=np.float64)
    if v.size < 100:
        return float("nan")
    low, noise, sat = np.percentile(v, [1, 75, 99])
    mid = (noise + sat) / 2.0
    ir = (sat - low) / max(low, low_floor) * 100.0
    upper = np.count_nonzero((v > mid) & (v <= sat))
    lower = np.count_nonzero((v > noise) & (v <= mid))
    tsr = upper / lower if lower else 0.0
    return float(ir * tsr)


def mtci(values: np.ndarray, *, c_dev: float = MTCI_DEFAULT_CONSTANT, bins: int = 200) -> float:
    """maximum Tissue Contrast Index (mTCI) of one B-scan histogram.

    .. math::
        N_1 = \\arg\\max h, \\quad N_{1s} = \\min\\{x : h(x) \\ge 0.95\\, h(N_1)\\}, \\quad
        N_2 = F^{-1}\\!\\left(\\frac{0.999\\, F(N_{1s})}{c_{dev}}\\right), \\quad
        N_3 = F^{-1}(0.999), \\quad \\mathrm{mTCI} = \\frac{N_3 - N_1}{N_2 - N_1}

    ``h`` is the ``bins``-bin pdf, ``F`` the empirical CDF, ``c_dev`` the device constant
    (:data:`MTCI_DEVICE_CONSTANT`). Citation: Huang et al., IOVS 2012 (rho >= 0.8 with graders).
    Units: none. Direction: higher is better.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size < 100 or v[-1] <= v[0]:
        return float("nan")
    h, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    peak = int(np.argmax(h))
    n1 = centres[peak]
    n1s = centres[int(np.flatnonzero(h >= 0.95 * h[peak])[0])]
    f_n1s = np.searchsorted(v, n1s, side="right") / v.size
    c_n2 = min(0.999 * f_n1s / c_dev, 0.999)
    n2 = np.quantile(v, c_n2)
    n3 = np.quantile(v, 0.999)
    if n2 - n1 <= 0:
        # The knee sits at the background peak: no tissue above the noise.
        return 1.0
    return float((n3 - n1) / (n2 - n1))

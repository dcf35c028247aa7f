"""Intensity scales: the display map every intensity metric works on, and the valid-pixel mask.

Histogram indices (QI, mTCI) and contrast ratios are defined on display intensities, not on the
linear reflectivity Spectralis stores. Linear data are mapped with the fourth root (I^0.25, the
common Heidelberg display scale); display scales are normalised to [0, 1]. No-data (NaN) and
exact-zero padding are excluded before any statistic.
"""

from __future__ import annotations

import numpy as np

from qmroct.oct.model import IntensityScale

#: The display map used for each stored scale (recorded with every result as ``scale_used``).
DISPLAY_MAP: dict[IntensityScale, str] = {
    IntensityScale.LINEAR: "pow025",
    IntensityScale.POW025: "pow025",
    IntensityScale.LOG_EYEPY: "log_eyepy",
    IntensityScale.DISPLAY_UINT8: "display_uint8/255",
    IntensityScale.DISPLAY_UINT16: "display_uint16/65535",
}


def to_display(bscans: np.ndarray, scale: IntensityScale) -> np.ndarray:
    """Map stored intensities to a display scale in [0, 1] (float32, NaN kept as NaN).

    .. math:: u = \\begin{cases} I^{1/4} & \\text{linear} \\\\ I/255 & \\text{uint8 display}
              \\\\ I/65535 & \\text{uint16 display} \\\\ I & \\text{already mapped} \\end{cases}

    Linear values are fourth-rooted and then divided by the 99.9th percentile of the valid
    pixels, so that the result is comparable between files.
    """
    x = np.asarray(bscans, dtype=np.float32)
    if scale is IntensityScale.LINEAR:
        with np.errstate(invalid="ignore"):
            u = np.power(np.clip(x, 0.0, None), 0.25, dtype=np.float32)
        u[~np.isfinite(x)] = np.nan
        valid = u[np.isfinite(u) & (u > 0)]
        top = (
            float(np.percentile(valid[:: max(1, valid.size // 200_000)], 99.9))
            if valid.size
            else 1.0
        )
        return np.clip(u / (top if top > 0 else 1.0), 0.0, 1.0, out=u)
    if scale is IntensityScale.DISPLAY_UINT8:
        return np.clip(x / 255.0, 0.0, 1.0)
    if scale is IntensityScale.DISPLAY_UINT16:
        return np.clip(x / 65535.0, 0.0, 1.0)
    return np.clip(x, 0.0, 1.0)


def valid_values(img: np.ndarray) -> np.ndarray:
    """The finite, non-zero pixels of ``img`` as a flat array (no-data and padding removed)."""
    flat = np.asarray(img, dtype=np.float32).ravel()
    return flat[np.isfinite(flat) & (flat != 0)]


def to_linear(display: np.ndarray, scale: IntensityScale) -> tuple[np.ndarray, str]:
    """Estimate relative linear reflectivity from the display image, for gain-like ratios.

    Illumination and brightness ratios are ratios of reflectivity (a shadow that halves the
    light halves the linear signal, while the fourth-root display shows only 16% less).

    .. math:: I_{lin} \\propto \\begin{cases} u^4 & \\text{linear, pow025} \\\\
              e^{8.285 u - 8.3} & \\text{log\\_eyepy} \\\\ u & \\text{vendor display (unknown map)}
              \\end{cases}

    Returns the array and the name of the map used (recorded with the result).
    """
    if scale in (IntensityScale.LINEAR, IntensityScale.POW025):
        return np.power(display, 4, dtype=np.float32), "linear(u^4)"
    if scale is IntensityScale.LOG_EYEPY:
        return np.exp(8.285 * display - 8.3, dtype=np.float32), "linear(exp log_eyepy)"
    return display, "display(unknown map)"

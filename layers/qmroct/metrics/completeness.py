"""Completeness: is the whole retina inside the image, or is it cut at the top or bottom?

Citation: OSCAR-IB O, "cut-off or missing image parts" (Tewarie et al. 2012).
"""

from __future__ import annotations

import numpy as np


def cut_top_fraction(ilm: np.ndarray, margin_px: float = 3.0) -> float:
    """Fraction of A-scans whose ILM lies within ``margin_px`` of row 0.

    .. math:: f_{top} = \\frac{\\#\\{j : \\mathrm{ILM}_j \\le m\\}}{\\#\\{j : \\mathrm{ILM}_j\\ \\text{found}\\}}

    Units: fraction. Direction: lower is better (0 = nothing cut).
    """
    found = np.isfinite(ilm)
    if not found.any():
        return float("nan")
    return float(np.count_nonzero(ilm[found] <= margin_px) / np.count_nonzero(found))


def cut_bottom_fraction(bm: np.ndarray, height: int, margin_px: float = 3.0) -> float:
    """Fraction of A-scans whose Bruch's membrane lies within ``margin_px`` of the last row.

    .. math:: f_{bottom} = \\frac{\\#\\{j : \\mathrm{BM}_j \\ge H - 1 - m\\}}{\\#\\{j : \\mathrm{BM}_j\\ \\text{found}\\}}

    Units: fraction. Direction: lower is better.
    """
    found = np.isfinite(bm)
    if not found.any():
        return float("nan")
    return float(np.count_nonzero(bm[found] >= height - 1 - margin_px) / np.count_nonzero(found))


def bscans_with_cut(
    ilm: np.ndarray, bm: np.ndarray, height: int, margin_px: float = 3.0, min_fraction: float = 0.01
) -> int:
    """Number of B-scans in which more than ``min_fraction`` of the A-scans are cut (top or bottom).

    Units: count. Direction: lower is better.
    """
    top = np.where(np.isfinite(ilm), ilm <= margin_px, False).mean(axis=1)
    bottom = np.where(np.isfinite(bm), bm >= height - 1 - margin_px, False).mean(axis=1)
    return int(np.count_nonzero((top > min_fraction) | (bottom > min_fraction)))

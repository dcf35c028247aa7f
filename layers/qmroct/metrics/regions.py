"""Region masks from layer boundaries: retina (ILM to BM) and vitreous background."""

from __future__ import annotations

import numpy as np


def band_mask(
    height: int, top: np.ndarray, bottom: np.ndarray, *, first_row: int = 0
) -> np.ndarray:
    """Boolean mask (n, height, w): rows ``top <= z < bottom`` of each A-scan (NaN: empty).

    With ``first_row``, the mask covers image rows ``first_row`` to ``first_row + height``
    (a window of the image, e.g. the rows a band lies in)."""
    z = np.arange(first_row, first_row + height, dtype=np.float32)[None, :, None]
    t = np.where(np.isfinite(top), top, np.inf)[:, None, :]
    b = np.where(np.isfinite(bottom), bottom, -np.inf)[:, None, :]
    return (z >= t) & (z < b)


def retina_mask(height: int, ilm: np.ndarray, bm: np.ndarray) -> np.ndarray:
    """Pixels between the ILM and Bruch's membrane, shape (n, height, w)."""
    return band_mask(height, ilm, bm)


def vitreous_mask(height: int, ilm: np.ndarray, margin_px: float = 5.0) -> np.ndarray:
    """Pixels above the ILM by more than ``margin_px``: the signal-free vitreous."""
    top = np.zeros_like(ilm)
    return band_mask(height, top, ilm - margin_px)

"""Fast retinal layer segmentation: ILM, RNFL lower boundary, ONL top/bottom and BM."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from qmroct.oct.model import Scan

BOUNDARIES: tuple[str, ...] = ("ilm", "rnfl", "onl_top", "onl_bottom", "bm")


@dataclass
class Segmentation:
    """Boundary rows per A-scan, float32 (n, w), NaN where not found; confidence in [0, 1]."""

    ilm: np.ndarray
    rnfl: np.ndarray
    onl_top: np.ndarray
    onl_bottom: np.ndarray
    bm: np.ndarray
    confidence: np.ndarray

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: getattr(self, k) for k in (*BOUNDARIES, "confidence")})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, b: bytes) -> Segmentation:
        with np.load(io.BytesIO(b), allow_pickle=False) as z:
            return cls(**{k: z[k].astype(np.float32) for k in (*BOUNDARIES, "confidence")})


def segment(scan: Scan) -> Segmentation:
    """Segment every B-scan of ``scan``."""
    raise NotImplementedError

"""Synthetic OCT scans with known, injected defects (the ground truth for every measure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from qmroct.oct.model import Scan

DEFECTS: tuple[str, ...] = (
    "low_signal",
    "blur",
    "decentration",
    "ring_offset",
    "tilt",
    "cutoff_top",
    "cutoff_bottom",
    "blink",
    "axial_motion",
    "lateral_motion",
    "vignetting",
    "shadowing",
    "layer_artefact",
)


class PhantomTruth(BaseModel):
    """Everything known about a phantom: what was injected, where, and in which units."""

    pattern: str
    seed: int
    size: str
    defects: dict[str, float] = Field(default_factory=dict, description="severity 0..1")
    physical: dict[str, float] = Field(
        default_factory=dict, description="the same defects in physical units (see names)"
    )
    fovea_px: tuple[float, float] | None = Field(None, description="(bscan index, column)")
    scan_center_px: tuple[float, float] | None = Field(None, description="(bscan index, column)")
    fovea_offset_um: float | None = None
    disc_center: tuple[float, float] | None = Field(None, description="SLO (x, y) px")
    disc_diameter_px: float | None = None
    ring_center: tuple[float, float] | None = Field(None, description="SLO (x, y) px")
    ring_offset_ratio: float | None = None
    blink_bscans: list[int] = Field(default_factory=list)
    cut_bscans: list[int] = Field(default_factory=list)
    tilt_deg: float = 0.0
    axial_shift_px: list[float] = Field(default_factory=list)
    lateral_shift_px: list[float] = Field(default_factory=list)
    shadow_columns: list[int] = Field(default_factory=list)
    artefact_bscans: list[int] = Field(default_factory=list)
    noise_floor: float = 0.0
    signal_gain: float = 1.0


def make_phantom(
    pattern: str = "volume",
    *,
    defects: dict[str, float] | None = None,
    seed: int = 0,
    size: str = "small",
) -> tuple[Scan, PhantomTruth, dict[str, np.ndarray]]:
    """Make a phantom scan, its truth, and its true boundaries ("ILM", "RNFL", ... each (n, w))."""
    raise NotImplementedError


def write_phantom(
    scan: Scan, truth: PhantomTruth, out_dir: Path, *, formats: tuple[str, ...] = ("vol", "dcm")
) -> list[Path]:
    """Write the phantom as .vol and/or DICOM OPT, plus ``truth.json``; return the paths."""
    raise NotImplementedError

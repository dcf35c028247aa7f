"""The scan model every reader produces and every measure consumes.

Metadata is a pydantic model (it crosses boundaries as JSON); pixels stay numpy arrays.

Conventions, so that measures never have to guess:
- ``Scan.bscans`` is float32 of shape (n_bscans, height, width): axis 1 is depth (axial, row 0 at
  the top/vitreous side), axis 2 is the fast lateral axis.
- Pixels with no data (Spectralis FLT_MAX, zero padding a reader knows about) are NaN.
- ``meta.scale`` says what the numbers mean: ``linear`` (Spectralis raw reflectivity, phantoms),
  or a display map (``log_eyepy``, ``pow025``, ``display_uint8``, ``display_uint16``).
- Layer boundaries are row positions (float, NaN where absent), shape (n_bscans, width).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ScanPattern(StrEnum):
    LINE = "line"
    RING = "ring"
    VOLUME = "volume"
    RADIAL = "radial"


class IntensityScale(StrEnum):
    LINEAR = "linear"
    LOG_EYEPY = "log_eyepy"  # u = (ln(x + 2.44e-4) + 8.3) / 8.285, clipped to [0, 1]
    POW025 = "pow025"  # x ** 0.25
    DISPLAY_UINT8 = "display_uint8"  # vendor display values 0..255
    DISPLAY_UINT16 = "display_uint16"  # vendor display values 0..65535


class Spacing(BaseModel):
    """Physical pixel size in micrometres."""

    lateral_um: float = Field(gt=0)
    axial_um: float = Field(gt=0)
    bscan_um: float | None = Field(
        None, ge=0, description="distance between B-scans; None for one B-scan"
    )


class Point(BaseModel):
    x: float
    y: float


class BscanPosition(BaseModel):
    """Where a B-scan lies on the fundus image, in fundus pixels."""

    start: Point
    end: Point


class RingGeometry(BaseModel):
    """A circle scan on the fundus image: centre and radius in fundus pixels (and mm when known)."""

    center: Point
    radius_px: float = Field(gt=0)
    radius_mm: float | None = None


class ScanMeta(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    source: str = Field(description="file or object name the scan came from")
    format: str = Field(
        description="heyex_vol, heyex_e2e, topcon_fda, topcon_fds, dicom_opt, image_folder, phantom"
    )
    pattern: ScanPattern
    scale: IntensityScale
    spacing: Spacing
    n_bscans: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    laterality: str | None = Field(None, description="OD or OS")
    device: str | None = None
    acquisition_date: date | None = None
    device_quality: list[float | None] | None = Field(
        None, description="the device's own quality value per B-scan, where the file has one"
    )
    device_quality_kind: str | None = Field(
        None, description="what device_quality means, e.g. 'spectralis_q' or 'topcon_fast_q2'"
    )
    fundus_spacing_um: Spacing | None = Field(
        None, description="SLO/fundus pixel size (lateral=x, axial=y)"
    )
    bscan_positions: list[BscanPosition] | None = None
    ring: RingGeometry | None = None
    extra: dict[str, str | float | int | None] = Field(default_factory=dict)


@dataclass
class Scan:
    """One OCT acquisition: metadata, B-scans, optional device segmentation and fundus image."""

    meta: ScanMeta
    bscans: np.ndarray  # float32, (n, h, w), NaN = no data
    segmentation: dict[str, np.ndarray] = field(default_factory=dict)  # "ILM", "BM", "RNFL": (n, w)
    fundus: np.ndarray | None = None  # float32 (H, W), SLO or fundus photo

    def __post_init__(self) -> None:
        if self.bscans.ndim != 3:
            raise ValueError(
                f"{self.meta.source}: bscans must be 3-D (n, h, w), got {self.bscans.shape}"
            )
        if self.bscans.dtype != np.float32:
            self.bscans = self.bscans.astype(np.float32)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.bscans.shape)  # type: ignore[return-value]

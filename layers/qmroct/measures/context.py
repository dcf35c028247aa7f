"""What every measure needs from a scan, computed once: the display image and the segmentation.

``qmroct measure run`` computes a :class:`ScanContext` once and passes it to every measure as
``inputs["context"]``; an action gets the stored segmentation as ``inputs["segmentation"]`` and
builds the context itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qmroct.metrics.intensity import DISPLAY_MAP, to_display, to_linear
from qmroct.metrics.regions import retina_mask, vitreous_mask
from qmroct.oct.model import Scan
from qmroct.oct.segmentation import Segmentation, segment

#: The least fraction of A-scans with both ILM and BM found for a retina to count as detected.
MIN_RETINA_FRACTION = 0.2


@dataclass
class ScanContext:
    scan: Scan
    segmentation: Segmentation
    display: np.ndarray = field(repr=False)
    scale_used: str = ""

    @classmethod
    def build(cls, scan: Scan, inputs: dict[str, object] | None = None) -> ScanContext:
        """The context for ``scan``: reuse ``inputs["context"]`` or ``inputs["segmentation"]``."""
        inputs = inputs or {}
        ctx = inputs.get("context")
        if isinstance(ctx, ScanContext) and ctx.scan is scan:
            return ctx
        seg = inputs.get("segmentation")
        if isinstance(seg, bytes | bytearray):
            seg = Segmentation.from_bytes(bytes(seg))
        if not isinstance(seg, Segmentation):
            seg = segment(scan)
        display = to_display(scan.bscans, scan.meta.scale)
        return cls(
            scan=scan, segmentation=seg, display=display, scale_used=DISPLAY_MAP[scan.meta.scale]
        )

    @property
    def height(self) -> int:
        return int(self.scan.bscans.shape[1])

    @cached_property
    def retina(self) -> np.ndarray:
        return retina_mask(self.height, self.segmentation.ilm, self.segmentation.bm)

    @cached_property
    def vitreous(self) -> np.ndarray:
        return vitreous_mask(self.height, self.segmentation.ilm)

    @cached_property
    def linear_and_name(self) -> tuple[np.ndarray, str]:
        """Relative linear reflectivity estimated from the display image, and its map's name."""
        return to_linear(self.display, self.scan.meta.scale)

    @cached_property
    def retina_fraction(self) -> float:
        """Fraction of A-scans where both ILM and BM were found in order."""
        s = self.segmentation
        ok = np.isfinite(s.ilm) & np.isfinite(s.bm) & (s.bm > s.ilm)
        return float(ok.mean())

    @property
    def has_retina(self) -> bool:
        return self.retina_fraction >= MIN_RETINA_FRACTION

    @cached_property
    def centre_index(self) -> int:
        """The B-scan shown in pictures: the middle one."""
        return self.scan.bscans.shape[0] // 2

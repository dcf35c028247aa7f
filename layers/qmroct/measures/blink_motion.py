"""Blinks and eye motion in volumes (OSCAR-IB O): dark B-scans, axial jumps, lateral shifts."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from qmroct import pictures
from qmroct.errors import NotApplicable
from qmroct.measures.base import register
from qmroct.measures.common import Evaluation, SuiteMeasure
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import grade, worst
from qmroct.metrics.motion import (
    adjacent_ncc,
    axial_motion_px,
    blink_bscans,
    lateral_ncc_drop,
)
from qmroct.oct.model import ScanPattern


class BlinkMotionParams(BaseModel):
    min_bscans: int = Field(5, ge=3, le=1000, description="fewer B-scans: not applicable")
    tukey_k: float = Field(1.5, gt=0, le=10, description="Tukey fence multiplier")
    min_drop: float = Field(0.15, ge=0, le=1, description="relative darkening that makes a blink")
    axial_warn_um: float = Field(40.0, gt=0, description="axial jump that warns")
    axial_fail_um: float = Field(100.0, gt=0, description="axial jump that fails")
    ncc_drop_warn: float = Field(0.05, gt=0, le=2, description="NCC drop that warns")
    ncc_drop_fail: float = Field(0.15, gt=0, le=2, description="NCC drop that fails")


@register
class BlinkMotion(SuiteMeasure):
    """Blinks (B-scans darker than the volume's lower Tukey fence), axial motion (largest jump of
    the ILM between neighbouring B-scans after removing the eye's curvature, µm) and lateral
    motion (how far the lowest normalised cross-correlation of neighbouring B-scans falls
    below the typical one). Volumes only."""

    name = "blink_motion"
    version = "1.0.0"
    criteria = ("O",)
    Params = BlinkMotionParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "blink_count": ("count", "lower is better", "B-scans below the lower Tukey fence"),
        "blink_bscans": ("indices", "", "which B-scans"),
        "axial_motion_um": (
            "µm",
            "lower is better",
            "largest ILM jump between neighbours after detrending",
        ),
        "lateral_ncc_min": ("", "higher is better", "lowest NCC of neighbouring B-scans"),
        "lateral_ncc_drop": ("", "lower is better", "median NCC minus lowest NCC"),
    }

    def evaluate(self, ctx: ScanContext, params: BlinkMotionParams) -> Evaluation:  # type: ignore[override]
        scan = ctx.scan
        n = scan.bscans.shape[0]
        if scan.meta.pattern is not ScanPattern.VOLUME or n < params.min_bscans:
            raise NotApplicable(
                f"blinks and motion need a volume of at least {params.min_bscans} B-scans; "
                f"this is a {scan.meta.pattern.value} scan of {n}"
            )
        flat = ctx.display.reshape(n, -1)
        means = np.nanmean(flat, axis=1)
        p95 = np.nanpercentile(flat[:, :: max(1, flat.shape[1] // 20000)], 95, axis=1)
        blinks = blink_bscans(means, p95, k=params.tukey_k, min_drop=params.min_drop)
        ilm = ctx.segmentation.ilm.astype(np.float64)
        if blinks.size:
            ilm[blinks] = np.nan  # a blink has no retina to follow
        axial_um = axial_motion_px(ilm) * scan.meta.spacing.axial_um
        ncc = adjacent_ncc(ctx.display)
        keep = np.ones(ncc.size, dtype=bool)
        for b in blinks:  # pairs touching a blink are already explained by it
            keep[max(b - 1, 0) : b + 1] = False
        drop = lateral_ncc_drop(ncc[keep]) if keep.any() else float("nan")
        values = {
            "blink_count": int(blinks.size),
            "blink_bscans": ",".join(map(str, blinks.tolist())),
            "axial_motion_um": axial_um,
            "lateral_ncc_min": float(np.min(ncc[keep])) if keep.any() else None,
            "lateral_ncc_drop": drop,
        }
        gradings = [
            grade(
                "O",
                "blinks",
                float(blinks.size),
                warn=0,
                fail=0,
                higher_is_better=False,
                source="Tukey fences",
            ),
            grade(
                "O",
                "axial motion",
                axial_um,
                warn=params.axial_warn_um,
                fail=params.axial_fail_um,
                higher_is_better=False,
                unit=" µm",
                source="phantom calibration",
            ),
            grade(
                "O",
                "lateral NCC drop",
                drop,
                warn=params.ncc_drop_warn,
                fail=params.ncc_drop_fail,
                higher_is_better=False,
                source="phantom calibration",
            ),
        ]
        verdict = worst("O", gradings)
        q1, q3 = np.percentile(means, [25, 75])
        fence = q1 - params.tukey_k * (q3 - q1)
        # The slow-axis section through the middle column shows axial jumps at a glance.
        mid = scan.bscans.shape[2] // 2
        section = ctx.display[:, :, mid].T
        sec_rgb = pictures.resize(pictures.gray_rgb(section), 640, 200)
        sec_rgb = pictures.draw_rows(
            sec_rgb, ilm[:, mid], pictures.GREEN, scale_y=200 / section.shape[0]
        )
        panels = [
            pictures.plot(
                [(means, pictures.WHITE, "B-scan mean")],
                title="mean intensity per B-scan (blinks in red)",
                hlines=[(fence, pictures.RED, "Tukey fence")],
                highlight=blinks.tolist(),
            ),
            pictures.plot(
                [(ncc, pictures.CYAN, "NCC(k, k+1)")],
                title="similarity of neighbouring B-scans",
                highlight=blinks.tolist(),
            ),
            pictures.panel(sec_rgb, f"slow-axis section at column {mid}, ILM in green"),
        ]
        return Evaluation(
            values, [verdict], pictures.stack(panels, title="blinks and motion (OSCAR-IB O)")
        )

"""Focus (OSCAR-IB O, poor focus): the width of the vitreous-retina edge at the ILM."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from qmroct import pictures
from qmroct.measures.base import register
from qmroct.measures.common import (
    Evaluation,
    SuiteMeasure,
    bscan_with_layers,
    crop_to_retina,
    sample_indices,
)
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import grade
from qmroct.metrics.sharpness import edge_width_px, ilm_edge_profile, refine_edge


class SharpnessParams(BaseModel):
    # Calibrated on phantoms (clean 6 to 13 µm, blur 0.7 about 24 µm) and the real Spectralis,
    # Topcon and E2E samples (7 to 15 µm); no published cut-off exists for this value.
    warn_um: float = Field(20.0, gt=0, le=500, description="ILM edge wider than this warns")
    fail_um: float = Field(35.0, gt=0, le=500, description="ILM edge wider than this fails")
    half_window_um: float = Field(
        60.0, gt=0, le=500, description="axial half-window of the edge profile"
    )
    max_bscans: int = Field(32, ge=1, le=1024)


@register
class Sharpness(SuiteMeasure):
    """Sharpness across the ILM: the width of the mean vitreous-to-retina edge (step over steepest
    slope, µm; a Gaussian blur of sigma gives sigma * sqrt(2 pi)). Blur widens it while signal
    strength stays high. Thresholds from the phantom sweep (clean ~15 µm at 3.9 µm/px)."""

    name = "sharpness"
    version = "1.1.0"
    criteria = ("O",)
    Params = SharpnessParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "ilm_edge_width_um": (
            "µm",
            "lower is better",
            "width of the mean ILM edge (step / steepest slope)",
        ),
        "ilm_edge_width_um_max": ("µm", "lower is better", "widest B-scan edge"),
        "ilm_gradient_contrast_per_um": ("1/µm", "higher is better", "steepest slope / step"),
    }

    def evaluate(self, ctx: ScanContext, params: SharpnessParams) -> Evaluation:  # type: ignore[override]
        axial = ctx.scan.meta.spacing.axial_um
        half = max(4, int(round(params.half_window_um / axial)))
        idx = sample_indices(ctx.scan.shape[0], params.max_bscans)
        profiles = [
            ilm_edge_profile(
                ctx.display[k], refine_edge(ctx.display[k], ctx.usable_segmentation.ilm[k]), half
            )
            for k in idx
        ]
        widths = np.array([edge_width_px(p) for p in profiles]) * axial
        mean_profile = np.nanmean(np.array(profiles), axis=0)
        width = edge_width_px(mean_profile) * axial
        values = {
            "ilm_edge_width_um": width,
            "ilm_edge_width_um_max": float(np.nanmax(widths))
            if np.isfinite(widths).any()
            else None,
            "ilm_gradient_contrast_per_um": 1.0 / width if np.isfinite(width) else None,
        }
        verdict = grade(
            "O",
            "ILM edge width",
            width,
            graded_by="ilm_edge_width_um",
            warn=params.warn_um,
            fail=params.fail_um,
            higher_is_better=False,
            unit=" µm",
            source="phantom calibration",
        )
        k = ctx.centre_index
        rgb = bscan_with_layers(ctx, k, ("ilm",))
        prof_plot = pictures.plot(
            [(mean_profile, pictures.WHITE, "mean edge profile")],
            title=f"intensity across the ILM (±{half} px), width {width:.1f} µm",
            vlines=[(half, pictures.GREEN, "ILM")],
            xlabel="px along the A-scan, vitreous to retina",
            ylabel="mean",
        )
        panels = [
            pictures.panel(crop_to_retina(rgb, ctx, k), f"B-scan {k}: ILM (green)"),
            prof_plot,
        ]
        if len(idx) > 1:
            panels.append(
                pictures.plot(
                    [(widths, pictures.CYAN, "edge width µm")],
                    title="ILM edge width per sampled B-scan",
                    xlabel="sampled B-scan",
                    ylabel="µm",
                    hlines=[
                        (params.warn_um, pictures.YELLOW, f"warn {params.warn_um:g} µm"),
                        (params.fail_um, pictures.RED, f"fail {params.fail_um:g} µm"),
                    ],
                )
            )
        return Evaluation(values, [verdict], pictures.stack(panels, title="focus (OSCAR-IB O)"))

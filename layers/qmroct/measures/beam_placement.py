"""Beam placement (OSCAR-IB B): a tilted retina and an asymmetrically bright ONL."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from qmroct import pictures
from qmroct.measures.base import register
from qmroct.measures.common import (
    Evaluation,
    SuiteMeasure,
    bscan_with_layers,
    column_mean,
    crop_to_retina,
    mark_disc,
    outside_disc,
    with_disc_note,
)
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import grade, worst
from qmroct.metrics.geometry import tilt_deg
from qmroct.metrics.illumination import ascan_signal, left_right_ratio
from qmroct.metrics.regions import band_mask
from qmroct.oct.model import ScanPattern


class BeamPlacementParams(BaseModel):
    tilt_warn_deg: float = Field(8.0, gt=0, le=90, description="|tilt| that warns")
    tilt_fail_deg: float = Field(
        13.0, gt=0, le=90, description="|tilt| that fails (Uji et al., TVST 2017: >5% error)"
    )
    onl_warn_ratio: float = Field(0.8, gt=0, le=1, description="ONL left/right ratio that warns")
    onl_fail_ratio: float = Field(0.6, gt=0, le=1, description="ONL left/right ratio that fails")
    exclude_centre: float = Field(0.2, ge=0, lt=0.9, description="central width left out")


@register
class BeamPlacement(SuiteMeasure):
    """Beam placement: the tilt of Bruch's membrane in degrees (line fitted outside the central
    20%, physical pixel sizes; thickness error exceeds 5% at 13 to 18 degrees, Uji et al. 2017)
    and the left/right brightness ratio of the outer nuclear layer (an off-centre beam darkens
    one side; 1 is balanced). Ring scans have no left/right, so only tilt applies there.

    Two parts of the B-scan are left out: the central 20% (the foveal pit, whose BM and ONL
    bend) and the optic disc, which has neither BM nor ONL (a line through the disc would
    otherwise fit its line to the cup and weigh the nerve fibres as ONL). The disc is found on
    the SLO or from the device's segmentation (see :mod:`qmroct.metrics.disc`);
    ``disc_excluded_fraction`` reports its share and the verdict reason names the exclusion."""

    name = "beam_placement"
    version = "1.1.0"
    criteria = ("B",)
    Params = BeamPlacementParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "tilt_deg": ("degrees", "closer to 0 is better", "median BM tilt, signed"),
        "tilt_abs_max_deg": ("degrees", "lower is better", "largest |tilt| of a B-scan"),
        "onl_lr_ratio": ("", "higher is better", "darker over brighter ONL half"),
        "disc_excluded_fraction": (
            "fraction",
            "",
            "A-scans in the optic disc, left out of tilt and ONL balance",
        ),
    }

    def evaluate(self, ctx: ScanContext, params: BeamPlacementParams) -> Evaluation:  # type: ignore[override]
        sp = ctx.scan.meta.spacing
        s = ctx.usable_segmentation
        bm = outside_disc(ctx, s.bm)
        tilts = np.array(
            [
                tilt_deg(r, sp.lateral_um, sp.axial_um, exclude_centre=params.exclude_centre)
                for r in bm
            ]
        )
        ok = np.isfinite(tilts)
        tilt = float(np.median(tilts[ok])) if ok.any() else float("nan")
        tilt_max = float(np.max(np.abs(tilts[ok]))) if ok.any() else float("nan")
        ring = ctx.scan.meta.pattern is ScanPattern.RING
        onl = outside_disc(
            ctx,
            ascan_signal(ctx.linear_and_name[0], band_mask(ctx.height, s.onl_top, s.onl_bottom)),
        )
        ratio = (
            float("nan") if ring else left_right_ratio(onl, exclude_centre=params.exclude_centre)
        )
        values = {
            "tilt_deg": tilt,
            "tilt_abs_max_deg": tilt_max,
            "onl_lr_ratio": ratio,
            "disc_excluded_fraction": ctx.disc.fraction,
        }
        gradings = [
            grade(
                "B",
                "|tilt|",
                abs(tilt),
                graded_by="tilt_deg",
                warn=params.tilt_warn_deg,
                fail=params.tilt_fail_deg,
                higher_is_better=False,
                unit="°",
                source="Uji et al., TVST 2017",
            ),
        ]
        if not ring:
            gradings.append(
                grade(
                    "B",
                    "ONL left/right",
                    ratio,
                    graded_by="onl_lr_ratio",
                    warn=params.onl_warn_ratio,
                    fail=params.onl_fail_ratio,
                    higher_is_better=True,
                )
            )
        k = ctx.centre_index
        rgb = bscan_with_layers(ctx, k, ("onl_top", "onl_bottom", "bm"))
        w = rgb.shape[1]
        j = np.arange(w)
        keep = np.isfinite(bm[k]) & (np.abs(j - (w - 1) / 2) > params.exclude_centre * w / 2)
        lines = []
        if keep.sum() > 10:
            a, b = np.polyfit(j[keep], bm[k][keep], 1)
            lines.append((0, b, w - 1, a * (w - 1) + b, pictures.RED))
        rgb = pictures.annotate(
            rgb, lines=lines, text=[(4, 4, f"tilt {tilts[k]:.1f}°", pictures.RED)]
        )
        rgb = mark_disc(rgb, ctx, k)
        panels = [
            pictures.panel(
                crop_to_retina(rgb, ctx, k),
                f"B-scan {k}: BM (yellow) and its fitted line (red); ONL magenta",
            )
        ]
        if not ring:
            panels.append(
                pictures.plot(
                    [(column_mean(onl), pictures.MAGENTA, "ONL mean")],
                    title=f"ONL brightness across the scan: left/right ratio {ratio:.2f}",
                    xlabel="A-scan",
                    ylabel="linear",
                )
            )
        return Evaluation(
            values,
            [with_disc_note(worst("B", gradings), ctx)],
            pictures.stack(panels, title="beam placement (OSCAR-IB B)"),
        )

"""Retinal pathology flag (OSCAR-IB R): total thickness far outside the normal range.

A flag only: a human decides. The verdict is warn (flag for review), never fail.
"""

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
    mark_disc,
    outside_disc,
    with_disc_note,
)
from qmroct.measures.context import ScanContext
from qmroct.metrics.geometry import thickness_range, thickness_um
from qmroct.results import CriterionVerdict, Verdict


class PathologyParams(BaseModel):
    normal_min_um: float = Field(
        150.0, gt=0, le=1000, description="thinner A-scans are abnormal (foveal floor ~ 180 µm)"
    )
    normal_max_um: float = Field(
        500.0,
        gt=0,
        le=2000,
        description="thicker A-scans are abnormal (normal macula < 400 µm, disc rim < 500 µm)",
    )
    flag_fraction: float = Field(0.10, gt=0, le=1, description="abnormal fraction that flags")


@register
class PathologyFlag(SuiteMeasure):
    """Pathology flag: the 5th/50th/95th percentiles of total retinal thickness (ILM to BM, µm)
    and the fraction of A-scans outside the normal range (150 to 500 µm; normal maculae measure
    roughly 200 to 350 µm on Spectralis). Above 10% the scan is flagged for a human to look at
    (oedema, atrophy, detachment); it is never failed automatically. Optic-disc A-scans are left
    out: there is no retina between ILM and BM there."""

    name = "pathology_flag"
    version = "1.0.0"
    criteria = ("R",)
    Params = PathologyParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "thickness_p05_um": ("µm", "inside the normal range", "5th percentile of ILM-BM thickness"),
        "thickness_p50_um": ("µm", "inside the normal range", "median thickness"),
        "thickness_p95_um": ("µm", "inside the normal range", "95th percentile thickness"),
        "thickness_range_um": ("µm", "", "P95 - P5"),
        "abnormal_fraction": ("fraction", "lower is better", "A-scans outside the normal band"),
    }

    def evaluate(self, ctx: ScanContext, params: PathologyParams) -> Evaluation:  # type: ignore[override]
        # The optic disc has no retina between ILM and BM: its "thickness" is not a finding.
        t = outside_disc(
            ctx,
            thickness_um(
                ctx.usable_segmentation.ilm,
                ctx.usable_segmentation.bm,
                ctx.scan.meta.spacing.axial_um,
            ),
        )
        p5, p50, p95 = thickness_range(t)
        ok = np.isfinite(t)
        abnormal = (t < params.normal_min_um) | (t > params.normal_max_um)
        frac = float(np.count_nonzero(abnormal & ok) / max(ok.sum(), 1))
        values = {
            "thickness_p05_um": p5,
            "thickness_p50_um": p50,
            "thickness_p95_um": p95,
            "thickness_range_um": p95 - p5,
            "abnormal_fraction": frac,
        }
        band = f"{params.normal_min_um:g}-{params.normal_max_um:g} µm"
        if frac > params.flag_fraction:
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.WARN,
                reason=f"{frac:.0%} of A-scans outside {band}: flagged for review (a human decides)",
            )
        else:
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.PASS,
                reason=f"{frac:.0%} of A-scans outside {band} (flag above {params.flag_fraction:.0%})",
            )
        n = t.shape[0]
        k = int(np.argmax(abnormal.sum(axis=1))) if abnormal.any() else ctx.centre_index
        panels = [
            pictures.panel(
                crop_to_retina(mark_disc(bscan_with_layers(ctx, k), ctx, k), ctx, k),
                f"B-scan {k}: ILM (green) to BM (yellow)",
            )
        ]
        if n > 1:
            en = pictures.resize(
                pictures.colormap(t, params.normal_min_um, params.normal_max_um), 320, 320
            )
            panels.append(pictures.panel(en, f"thickness map, colour range {band}", width=320))
        panels.append(
            pictures.plot(
                [(t[k], pictures.WHITE, "thickness µm")],
                title=f"thickness along B-scan {k} against the normal band",
                hlines=[
                    (params.normal_min_um, pictures.RED, "min"),
                    (params.normal_max_um, pictures.RED, "max"),
                ],
            )
        )
        return Evaluation(
            values,
            [with_disc_note(verdict, ctx)],
            pictures.stack(panels, title="pathology flag (OSCAR-IB R)"),
        )

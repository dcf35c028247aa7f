"""Completeness (OSCAR-IB O, cut-off image parts): retina touching the top or bottom edge."""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import BaseModel, Field

from qmroct import pictures
from qmroct.measures.base import register
from qmroct.measures.common import Evaluation, SuiteMeasure, bscan_with_layers
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import grade, worst
from qmroct.metrics.completeness import bscans_with_cut, cut_bottom_fraction, cut_top_fraction


class CompletenessParams(BaseModel):
    margin_px: float = Field(
        3.0, ge=0, le=50, description="distance to the edge that counts as cut"
    )
    warn_fraction: float = Field(0.01, ge=0, le=1, description="cut A-scan fraction that warns")
    fail_fraction: float = Field(0.05, ge=0, le=1, description="cut A-scan fraction that fails")


@register
class Completeness(SuiteMeasure):
    """Completeness: the fraction of A-scans whose ILM touches the top edge or whose BM touches
    the bottom edge (within a margin), and the number of B-scans with any cut. Any cut retina
    loses thickness; OSCAR-IB O counts it as an obvious problem (hard criterion)."""

    name = "completeness"
    uses_spacing = False  # ratios of intensities or fractions of A-scans
    version = "1.0.0"
    criteria = ("O",)
    Params = CompletenessParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "cut_top_fraction": ("fraction", "lower is better", "A-scans with the ILM at the top edge"),
        "cut_bottom_fraction": (
            "fraction",
            "lower is better",
            "A-scans with BM at the bottom edge",
        ),
        "bscans_cut": ("count", "lower is better", "B-scans with a cut"),
    }

    def evaluate(self, ctx: ScanContext, params: CompletenessParams) -> Evaluation:  # type: ignore[override]
        s = ctx.usable_segmentation
        h = ctx.height
        # The other measures leave A-scans whose retina reaches the top out; here the clamp
        # of the ILM to row 0 (Segmentation.clipped) is the finding itself, so it is put back.
        top_cut = ctx.segmentation.clipped & ctx.usable[:, None]
        s = dataclasses.replace(s, ilm=np.where(top_cut, np.float32(0.0), s.ilm))
        top = cut_top_fraction(s.ilm, params.margin_px)
        bottom = cut_bottom_fraction(s.bm, h, params.margin_px)
        n_cut = bscans_with_cut(s.ilm, s.bm, h, params.margin_px, params.warn_fraction)
        values = {"cut_top_fraction": top, "cut_bottom_fraction": bottom, "bscans_cut": n_cut}
        verdict = worst(
            "O",
            [
                grade(
                    "O",
                    "cut at top",
                    top,
                    graded_by="cut_top_fraction",
                    warn=params.warn_fraction,
                    fail=params.fail_fraction,
                    higher_is_better=False,
                    source="OSCAR-IB O",
                ),
                grade(
                    "O",
                    "cut at bottom",
                    bottom,
                    graded_by="cut_bottom_fraction",
                    warn=params.warn_fraction,
                    fail=params.fail_fraction,
                    higher_is_better=False,
                    source="OSCAR-IB O",
                ),
            ],
        )
        per_top = np.where(np.isfinite(s.ilm), s.ilm <= params.margin_px, False).mean(axis=1)
        per_bot = np.where(np.isfinite(s.bm), s.bm >= h - 1 - params.margin_px, False).mean(axis=1)
        k = int(np.argmax(per_top + per_bot)) if (per_top + per_bot).any() else ctx.centre_index
        rgb = bscan_with_layers(ctx, k)
        w = rgb.shape[1]
        m = params.margin_px
        marks = [(j, 0.0, j, m + 2, pictures.RED) for j in np.flatnonzero(s.ilm[k] <= m)]
        marks += [
            (j, h - m - 3, j, h - 1.0, pictures.RED) for j in np.flatnonzero(s.bm[k] >= h - 1 - m)
        ]
        rgb = pictures.annotate(
            rgb,
            lines=marks,
            boxes=[
                (0, 0, w - 1, m, pictures.ORANGE),
                (0, h - 1 - m, w - 1, h - 1, pictures.ORANGE),
            ],
        )
        panels = [pictures.panel(rgb, f"B-scan {k}: cut A-scans in red, edge margins in orange")]
        if s.ilm.shape[0] > 1:
            panels.append(
                pictures.plot(
                    [(per_top, pictures.GREEN, "top"), (per_bot, pictures.YELLOW, "bottom")],
                    title="cut fraction per B-scan",
                    xlabel="B-scan",
                    ylabel="fraction",
                    hlines=[(params.fail_fraction, pictures.RED, f"fail {params.fail_fraction:g}")],
                )
            )
        return Evaluation(
            values, [verdict], pictures.stack(panels, title="completeness (OSCAR-IB O)")
        )

"""Retinal pathology flag (OSCAR-IB R): intraretinal fluid, or total thickness far outside the
normal range.

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
from qmroct.metrics.pathology import cavity_columns
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
    fluid_flag_fraction: float = Field(
        0.01,
        gt=0,
        le=1,
        description="A-scans crossing a cystoid space that flag (1%: one cyst of about 60 µm in "
        "a 6 mm B-scan; healthy phantom eyes of natural variation show none)",
    )
    cavity_min_um: float = Field(
        15.0, gt=0, le=500, description="height of the dark region that makes a cavity"
    )
    cavity_min_width_um: float = Field(
        40.0, gt=0, le=1000, description="width of the dark region that makes a cavity"
    )


@register
class PathologyFlag(SuiteMeasure):
    """Pathology flag: the 5th/50th/95th percentiles of total retinal thickness (ILM to BM, µm)
    and the fraction of A-scans outside the normal range (150 to 500 µm; normal maculae measure
    roughly 200 to 350 µm on Spectralis). Above 10% the scan is flagged for a human to look at
    (oedema, atrophy, detachment); it is never failed automatically. Fluid flags on its own,
    before the thickness changes much: more than 1% of the A-scans crossing a cystoid space
    (a region near the noise floor inside the nuclear layers, at least 15 µm tall and 40 µm
    wide). Optic-disc A-scans are left out: there is no retina between ILM and BM there."""

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
        "fluid_fraction": (
            "fraction",
            "lower is better",
            "assessable A-scans crossing a cystoid space: a region at least cavity_min_um tall "
            "and cavity_min_width_um wide between the RNFL and the ELM, within 25% of the way "
            "from the noise floor to the column's expected ONL level (its RPE times the "
            "B-scan's median ONL/RPE ratio)",
        ),
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
        seg = ctx.usable_segmentation
        linear = ctx.linear_and_name[0]
        bg = linear[ctx.vitreous]
        bg = bg[np.isfinite(bg)]
        noise = float(np.median(bg)) if bg.size > 10 else float("nan")
        um, lat = ctx.scan.meta.spacing.axial_um, ctx.scan.meta.spacing.lateral_um
        if np.isfinite(noise) and noise > 0:
            cavity, assessable = cavity_columns(
                linear,
                seg.rnfl,
                seg.onl_bottom,
                seg.onl_top,
                seg.bm,
                noise,
                min_rows=max(2, int(round(params.cavity_min_um / um))),
                min_cols=max(2, int(round(params.cavity_min_width_um / lat))),
                rpe_rows=max(2, int(round(25.0 / um))),
                smooth_px=(6.0 / um, 10.0 / lat),
            )
            keep = assessable & np.isfinite(t)
            fluid = float(np.count_nonzero(cavity & keep) / max(keep.sum(), 1))
        else:
            cavity = np.zeros(t.shape, bool)
            fluid = float("nan")
        values = {
            "thickness_p05_um": p5,
            "thickness_p50_um": p50,
            "thickness_p95_um": p95,
            "thickness_range_um": p95 - p5,
            "abnormal_fraction": frac,
            "fluid_fraction": fluid,
        }
        band = f"{params.normal_min_um:g}-{params.normal_max_um:g} µm"
        thick = f"{frac:.0%} of A-scans outside {band}"
        wet = f"{fluid:.1%} of A-scans cross a cystoid space" if np.isfinite(fluid) else ""
        lin_name = ctx.linear_and_name[1]
        # The cavity level is a fraction of reflectivity above the noise floor; a vendor display
        # map bends that scale, so there the fraction is reported, not flagged.
        display = lin_name.startswith("display")
        if display and wet:
            wet = f"{wet} (not graded: {lin_name} intensities)"
        if np.isfinite(fluid) and fluid > params.fluid_flag_fraction and not display:
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.WARN,
                reason=f"{wet} (flag above {params.fluid_flag_fraction:.0%}): intraretinal "
                f"fluid, flagged for review (a human decides); {thick}",
                graded_by="fluid_fraction",
                thresholds=(params.fluid_flag_fraction, params.fluid_flag_fraction),
            )
        elif frac > params.flag_fraction:
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.WARN,
                reason=f"{thick}: flagged for review (a human decides)"
                + (f"; {wet}" if wet else ""),
                graded_by="abnormal_fraction",
                thresholds=(params.flag_fraction, params.flag_fraction),
            )
        else:
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.PASS,
                reason=f"{thick} (flag above {params.flag_fraction:.0%})"
                + (f"; {wet} (flag above {params.fluid_flag_fraction:.0%})" if wet else ""),
                graded_by="abnormal_fraction",
                thresholds=(params.flag_fraction, params.flag_fraction),
            )
        n = t.shape[0]
        found = cavity & np.isfinite(t)
        if found.any():
            k = int(np.argmax(found.sum(axis=1)))
        else:
            k = int(np.argmax(abnormal.sum(axis=1))) if abnormal.any() else ctx.centre_index
        rgb = mark_disc(bscan_with_layers(ctx, k), ctx, k)
        title = f"B-scan {k}: ILM (green) to BM (yellow)"
        cols = np.flatnonzero(found[k])
        if cols.size:
            # Marks only where a cystoid space was found: ticks above the ILM.
            ilm_k = seg.ilm[k]
            rgb = pictures.annotate(
                rgb,
                lines=[(j, ilm_k[j] - 14, j, ilm_k[j] - 5, pictures.RED) for j in cols],
            )
            title += "; cystoid spaces under the red ticks"
        panels = [pictures.panel(crop_to_retina(rgb, ctx, k), title)]
        if n > 1:
            en = pictures.resize(
                pictures.colormap(t, params.normal_min_um, params.normal_max_um), 320, 320
            )
            panels.append(pictures.panel(en, f"thickness map, colour range {band}", width=320))
        panels.append(
            pictures.plot(
                [(t[k], pictures.WHITE, "thickness µm")],
                title=f"thickness along B-scan {k} against the normal band",
                xlabel="A-scan",
                ylabel="µm",
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

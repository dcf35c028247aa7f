"""Illumination (OSCAR-IB I): vignetting, shadows and uneven signal across the scan."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy.ndimage import median_filter

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
from qmroct.measures.verdicts import grade, not_applicable, worst
from qmroct.metrics.illumination import (
    ascan_signal,
    bscan_gain_cv,
    dark_fraction,
    edge_centre_ratio,
    sector_signal_db,
    signal_cv,
    weakest_sector_deficit_db,
)
from qmroct.oct.model import ScanPattern


class IlluminationParams(BaseModel):
    sectors: int = Field(16, ge=2, le=128, description="vertical sectors for the weakest SNR")
    vessel_um: float = Field(
        150.0,
        ge=0,
        le=2000,
        description="widest vessel shadow removed (a running median twice as wide removes it)",
    )
    edge_centre_warn: float = Field(0.8, gt=0, le=1, description="edge/centre below this warns")
    edge_centre_fail: float = Field(0.6, gt=0, le=1, description="edge/centre below this fails")
    sector_deficit_warn_db: float = Field(6.0, gt=0, le=40, description="weakest sector deficit")
    sector_deficit_fail_db: float = Field(10.0, gt=0, le=40)
    dark_warn: float = Field(
        0.02, ge=0, le=1, description="dark fraction that warns: a tenth of the scan under 4 dB"
    )
    dark_fail: float = Field(
        0.05,
        ge=0,
        le=1,
        description="dark fraction that fails: a fifth of the scan under the 5 dB shadow a "
        "grader fails scores 0.074, less its softened edges (phantoms there: 0.055 to 0.13)",
    )
    gain_cv_warn: float = Field(0.10, gt=0, le=2, description="B-scan gain CV that warns")
    gain_cv_fail: float = Field(0.25, gt=0, le=2)


@register
class Illumination(SuiteMeasure):
    """Illumination, from s(j), the mean retinal reflectivity (linear estimate) of each
    A-scan: its CV, the edge/centre ratio (vignetting; not graded on rings, whose ends meet),
    the weakest of 16 sectors below their median (dB; a shadow or a dim side), the share of
    A-scans darker than half the median, weighted by depth (shadows), and for volumes the CV of
    the per-B-scan gain. Vessel shadows (narrower than 150 µm) are removed by a running median
    first: they are anatomy, not illumination, and so is the optic disc, whose A-scans are left
    out. Soft criterion: failures here rarely exclude a scan alone (Tewarie 2012)."""

    name = "illumination"
    version = "1.2.0"
    criteria = ("I",)
    Params = IlluminationParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "signal_cv": ("", "lower is better", "CV of the per-A-scan retinal signal"),
        "edge_centre_ratio": ("", "closer to 1 is better", "outer 10% over central 50%"),
        "weakest_sector_snr_db": ("dB", "higher is better", "lowest SNR of 16 vertical sectors"),
        "weakest_sector_deficit_db": (
            "dB",
            "lower is better",
            "median sector SNR minus the weakest",
        ),
        "dark_fraction": (
            "fraction",
            "lower is better",
            "A-scans below half the median signal, each weighted by its depth below it",
        ),
        "bscan_gain_cv": ("", "lower is better", "CV of the per-B-scan mean signal (volumes)"),
        "intensity_map": ("", "", "relative linear reflectivity estimate the ratios used"),
    }

    def evaluate(self, ctx: ScanContext, params: IlluminationParams) -> Evaluation:  # type: ignore[override]
        linear, lin_name = ctx.linear_and_name
        # The optic disc has no retina between ILM and BM to illuminate: its dark A-scans are
        # anatomy, as they are for A and B.
        s = outside_disc(ctx, ascan_signal(linear, ctx.retina))
        # Vessel shadows are normal anatomy and narrower than media shadows: a running median
        # removes dips narrower than half its window, so a window of twice vessel_um removes
        # every shadow up to vessel_um wide before sectors and dark fractions are taken.
        width = max(1, int(round(2 * params.vessel_um / ctx.scan.meta.spacing.lateral_um)) | 1)
        if width > 1:
            s = median_filter(
                np.where(np.isfinite(s), s, np.nanmedian(s)), size=(1, width), mode="nearest"
            ) * np.where(np.isfinite(s), 1.0, np.nan)
        bg = linear[ctx.vitreous]
        bg = bg[np.isfinite(bg)]
        noise = float(bg.std()) if bg.size > 10 else float("nan")
        sectors = sector_signal_db(s, noise, params.sectors)
        ec = edge_centre_ratio(s)
        deficit = weakest_sector_deficit_db(sectors)
        dark = dark_fraction(s)
        gain = bscan_gain_cv(s)
        values = {
            "signal_cv": signal_cv(s),
            "edge_centre_ratio": ec,
            "weakest_sector_snr_db": float(np.nanmin(sectors))
            if np.isfinite(sectors).any()
            else None,
            "weakest_sector_deficit_db": deficit,
            "dark_fraction": dark,
            "bscan_gain_cv": gain,
            "intensity_map": lin_name,
        }
        # A ring's two ends are neighbours on the fundus and every A-scan lies at the same
        # distance from its centre: its ends are no field edge, and edge/centre compares the
        # temporal retina with the rest (anatomy). A dim side shows in the weakest sector.
        edges = (
            not_applicable(
                "I",
                f"edge/centre {ec:.3g} not graded: a ring's ends are neighbours on the fundus, "
                "not the edge of the field",
            )
            if ctx.scan.meta.pattern is ScanPattern.RING
            else grade(
                "I",
                "edge/centre",
                ec,
                graded_by="edge_centre_ratio",
                warn=params.edge_centre_warn,
                fail=params.edge_centre_fail,
                higher_is_better=True,
            )
        )
        gradings = [
            edges,
            grade(
                "I",
                "weakest sector deficit",
                deficit,
                graded_by="weakest_sector_deficit_db",
                warn=params.sector_deficit_warn_db,
                fail=params.sector_deficit_fail_db,
                higher_is_better=False,
                unit=" dB",
            ),
            grade(
                "I",
                "dark A-scans",
                dark,
                graded_by="dark_fraction",
                warn=params.dark_warn,
                fail=params.dark_fail,
                higher_is_better=False,
            ),
        ]
        if np.isfinite(gain):
            gradings.append(
                grade(
                    "I",
                    "B-scan gain CV",
                    gain,
                    graded_by="bscan_gain_cv",
                    warn=params.gain_cv_warn,
                    fail=params.gain_cv_fail,
                    higher_is_better=False,
                )
            )
        k = ctx.centre_index
        med = float(np.nanmedian(s)) if np.isfinite(s).any() else 0.0
        panels = [
            pictures.panel(
                crop_to_retina(mark_disc(bscan_with_layers(ctx, k), ctx, k), ctx, k),
                f"B-scan {k}: shadows and dim sides darken the retina between ILM and BM",
            )
        ]
        if s.shape[0] > 1:
            lo, hi = (0.0, float(np.nanmax(s))) if np.isfinite(s).any() else (0.0, 1.0)
            en = pictures.resize(pictures.colormap(s, lo, hi), 320, 320)
            panels.append(
                pictures.panel(
                    en, "en-face mean retinal intensity (vignetting, shadows)", width=320
                )
            )
        panels.append(
            pictures.plot(
                [(column_mean(s), pictures.WHITE, "s(j)")],
                title="mean retinal intensity per A-scan (column)",
                xlabel="A-scan",
                ylabel="linear",
                hlines=[(0.5 * med, pictures.RED, "half median")],
            )
        )
        panels.append(
            pictures.plot(
                [(sectors, pictures.CYAN, "sector SNR dB")],
                title=f"SNR of {params.sectors} vertical sectors",
                xlabel="sector, left to right",
                ylabel="dB",
                hlines=[
                    (
                        float(np.nanmedian(sectors)) - params.sector_deficit_fail_db,
                        pictures.RED,
                        "fail",
                    )
                ]
                if np.isfinite(sectors).any()
                else [],
            )
        )
        return Evaluation(
            values,
            [with_disc_note(worst("I", gradings), ctx)],
            pictures.stack(panels, title="illumination (OSCAR-IB I)"),
        )

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
    axial_motion_px,
    blink_bscans,
    enface_projection,
    fundus_line_profiles,
    lateral_motion_px,
    lateral_shifts,
)
from qmroct.oct.model import Scan, ScanPattern


class BlinkMotionParams(BaseModel):
    min_bscans: int = Field(5, ge=3, le=1000, description="fewer B-scans: not applicable")
    tukey_k: float = Field(1.5, gt=0, le=10, description="Tukey fence multiplier")
    min_drop: float = Field(0.15, ge=0, le=1, description="relative darkening that makes a blink")
    axial_warn_um: float = Field(40.0, gt=0, description="axial jump that warns")
    axial_fail_um: float = Field(100.0, gt=0, description="axial jump that fails")
    lateral_warn_um: float = Field(60.0, gt=0, description="lateral displacement that warns")
    lateral_fail_um: float = Field(150.0, gt=0, description="lateral displacement that fails")
    lateral_min_ncc: float = Field(
        0.4, ge=0, le=1, description="weakest en-face/fundus match that counts"
    )
    lateral_max_um: float = Field(800.0, gt=0, description="largest lateral shift searched")
    lateral_highpass_um: float = Field(
        150.0, gt=0, description="Gaussian high-pass of the en-face rows (vessel scale)"
    )


@register
class BlinkMotion(SuiteMeasure):
    """Blinks (B-scans darker than the volume's lower Tukey fence), axial motion (largest jump of
    the ILM between neighbouring B-scans after removing the eye's curvature, µm) and lateral
    motion: each row of the en-face projection (mean of the retina from ILM to BM) is registered
    against the fundus image sampled along that B-scan's line, by cross-correlation of
    high-pass filtered rows, and the largest displacement from the median is reported in µm (a
    saccade breaks the vessel shadows of the affected B-scans away from the fundus vessels).
    Needs the fundus image and B-scan positions; without them lateral motion is not assessed.
    Volumes only."""

    name = "blink_motion"
    version = "1.1.0"
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
        "lateral_motion_um": (
            "µm",
            "lower is better",
            "largest lateral displacement of a B-scan's en-face row against the fundus",
        ),
        "lateral_match_ncc_min": (
            "",
            "higher is better",
            "lowest peak NCC of an en-face row against its fundus line (matched rows)",
        ),
        "lateral_matched_bscans": ("count", "higher is better", "B-scans registered"),
    }

    def evaluate(self, ctx: ScanContext, params: BlinkMotionParams) -> Evaluation:  # type: ignore[override]
        scan = ctx.scan
        n = scan.shape[0]
        if scan.meta.pattern is not ScanPattern.VOLUME or n < params.min_bscans:
            raise NotApplicable(
                f"blinks and motion need a volume of at least {params.min_bscans} B-scans; "
                f"this is a {scan.meta.pattern.value} scan of {n}"
            )
        flat = ctx.display.reshape(n, -1)
        means = np.nanmean(flat, axis=1)
        p95 = np.nanpercentile(flat[:, :: max(1, flat.shape[1] // 20000)], 95, axis=1)
        blinks = blink_bscans(means, p95, k=params.tukey_k, min_drop=params.min_drop)
        ilm = ctx.usable_segmentation.ilm.astype(np.float64)
        if blinks.size:
            ilm[blinks] = np.nan  # a blink has no retina to follow
        axial_um = axial_motion_px(ilm) * scan.meta.spacing.axial_um
        shifts_um, peak = _lateral_registration(ctx, params, blinks)
        matched = np.isfinite(shifts_um) & (peak >= params.lateral_min_ncc)
        lateral_um = (
            lateral_motion_px(shifts_um, peak, params.lateral_min_ncc)
            if shifts_um.size
            else float("nan")
        )
        values = {
            "blink_count": int(blinks.size),
            "blink_bscans": ",".join(map(str, blinks.tolist())),
            "axial_motion_um": axial_um,
            "lateral_motion_um": lateral_um if np.isfinite(lateral_um) else None,
            "lateral_match_ncc_min": float(peak[matched].min()) if matched.any() else None,
            "lateral_matched_bscans": int(matched.sum()),
        }
        gradings = [
            grade(
                "O",
                "blinks",
                float(blinks.size),
                graded_by="blink_count",
                warn=0,
                fail=0,
                higher_is_better=False,
                source="Tukey fences",
            ),
            grade(
                "O",
                "axial motion",
                axial_um,
                graded_by="axial_motion_um",
                warn=params.axial_warn_um,
                fail=params.axial_fail_um,
                higher_is_better=False,
                unit=" µm",
                source="phantom calibration",
            ),
        ]
        if np.isfinite(lateral_um):
            gradings.append(
                grade(
                    "O",
                    "lateral motion",
                    lateral_um,
                    graded_by="lateral_motion_um",
                    warn=params.lateral_warn_um,
                    fail=params.lateral_fail_um,
                    higher_is_better=False,
                    unit=" µm",
                    source="phantom calibration",
                )
            )
        verdict = worst("O", gradings)
        med_shift = float(np.median(shifts_um[matched])) if matched.any() else 0.0
        q1, q3 = np.percentile(means, [25, 75])
        fence = q1 - params.tukey_k * (q3 - q1)
        # The slow-axis section through the middle column shows axial jumps at a glance.
        mid = scan.shape[2] // 2
        section = ctx.display[:, :, mid].T
        sec_rgb = pictures.resize(pictures.gray_rgb(section), 640, 200)
        sec_rgb = pictures.draw_rows(
            sec_rgb, ilm[:, mid], pictures.GREEN, scale_y=200 / section.shape[0]
        )
        panels = [
            pictures.plot(
                [(means, pictures.WHITE, "B-scan mean")],
                title="mean intensity per B-scan (blinks in red)",
                hlines=[(fence, pictures.RED, f"Tukey fence {fence:.3g}")],
                highlight=blinks.tolist(),
                xlabel="B-scan",
                ylabel="mean",
            ),
            pictures.plot(
                [(np.where(matched, shifts_um - med_shift, np.nan), pictures.CYAN, "shift")],
                title="lateral shift of each B-scan against the fundus, µm (blinks in red)",
                hlines=[
                    (params.lateral_fail_um, pictures.RED, f"fail {params.lateral_fail_um:g} µm")
                ],
                highlight=blinks.tolist(),
                xlabel="B-scan",
                ylabel="µm",
            ),
            pictures.panel(sec_rgb, f"slow-axis section at column {mid}, ILM in green"),
        ]
        return Evaluation(
            values, [verdict], pictures.stack(panels, title="blinks and motion (OSCAR-IB O)")
        )


def _lateral_registration(
    ctx: ScanContext, params: BlinkMotionParams, blinks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shift (µm) and peak NCC of each en-face row against the fundus along its B-scan line.

    Empty arrays when the scan has no fundus image or no B-scan positions; blinks get NaN.
    """
    scan: Scan = ctx.scan
    n, _, w = scan.shape
    pos = scan.meta.bscan_positions or []
    if scan.fundus is None or len(pos) != n:
        return np.empty(0), np.empty(0)
    seg = ctx.usable_segmentation
    enface = enface_projection(ctx.display, seg.ilm, seg.bm)
    starts = np.array([[p.start.x, p.start.y] for p in pos])
    ends = np.array([[p.end.x, p.end.y] for p in pos])
    reference = fundus_line_profiles(scan.fundus, starts, ends, w)
    um = scan.meta.spacing.lateral_um
    shifts, peak = lateral_shifts(
        enface,
        reference,
        max_shift_px=max(2, min(int(params.lateral_max_um / um), w // 3)),
        highpass_px=params.lateral_highpass_um / um,
    )
    shifts = shifts * um
    if blinks.size:
        shifts[blinks] = np.nan  # no vessels to match in a blink
        peak[blinks] = -1.0
    return shifts, peak

"""Retinal pathology flag (OSCAR-IB R): intraretinal fluid, drusen, a full-thickness macular
hole, or total thickness far outside the normal range.

A flag only: a human decides. The verdict is warn (flag for review), never fail.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

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
from qmroct.metrics.fast import SmoothedRows
from qmroct.metrics.geometry import thickness_range, thickness_um
from qmroct.metrics.pathology import (
    cavity_columns,
    elevation_over_width,
    rpe_floor,
    rpe_rows,
)
from qmroct.oct.model import ScanPattern
from qmroct.results import CriterionVerdict, Verdict

#: Above the RPE's lower edge, the band of the photoreceptor segments (above an RPE of about
#: 25 µm; EZ and IZ are bright in every healthy macula, and the ONL above them is left out: on
#: a display scale it is nearly as dark as the vitreous), where a full-thickness hole has
#: nothing but vitreous: (from, to) µm. A hole must darken HOLE_FILL of the band's height.
HOLE_BAND_UM = (30.0, 85.0)
HOLE_FILL = 0.6


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
    druse_min_width_um: float = Field(
        63.0,
        gt=0,
        le=2000,
        description="a druse lifts the RPE over at least this width (Beckman classification, "
        "Ferris et al., Ophthalmology 2013: drusen count from 63 µm)",
    )
    druse_flag_um: float = Field(
        30.0,
        gt=0,
        le=500,
        description="RPE lift above its fitted floor, sustained over druse_min_width_um, that "
        "flags: about one RPE/Bruch's complex (20-30 µm) above the floor, so a lift no thinner "
        "than the RPE itself; healthy phantom eyes of natural variation stay under half of it",
    )
    hole_min_width_um: float = Field(
        100.0,
        gt=0,
        le=3000,
        description="a full-thickness defect this wide flags: the smallest full-thickness "
        "macular holes measure about 100 µm at their narrowest (IVTS: small holes up to "
        "250 µm, Duker et al., Ophthalmology 2013)",
    )


@register
class PathologyFlag(SuiteMeasure):
    """Pathology flag: the 5th/50th/95th percentiles of total retinal thickness (ILM to BM, µm)
    and the fraction of A-scans outside the normal range (150 to 500 µm; normal maculae measure
    roughly 200 to 350 µm on Spectralis). Above 10% the scan is flagged for a human to look at
    (oedema, atrophy, detachment); it is never failed automatically. Fluid flags on its own,
    before the thickness changes much: more than 1% of the A-scans crossing a cystoid space
    (a region near the noise floor inside the nuclear layers, at least 15 µm tall and 40 µm
    wide). On macular scans, drusen flag (the RPE lifted at least 30 µm above its fitted floor
    over at least 63 µm) and so does a full-thickness macular hole (at least 100 µm of A-scans
    with nothing but vitreous in the band just above the RPE). Optic-disc A-scans are left out:
    there is no retina between ILM and BM there."""

    name = "pathology_flag"
    version = "1.2.0"
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
        "drusen_height_um": (
            "µm",
            "lower is better",
            "macular scans: the largest lift of the RPE above its floor that holds over "
            "druse_min_width_um of A-scans; the floor is a robust cubic fit per B-scan to the "
            "RPE points lifted less than half of druse_flag_um above it (B-scans whose retina "
            "wraps at the top are not searched)",
        ),
        "hole_width_um": (
            "µm",
            "lower is better",
            "macular scans: the widest run of A-scans where the band 30-85 µm above the RPE's "
            "lower edge, where the bright photoreceptor bands always are, is a cavity as dark "
            "as the vitreous over 60% of its height (the fluid test on that band): a "
            "full-thickness defect",
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
        # One smoothing of the reflectivity serves the fluid test, the RPE search and the
        # hole test, each on the rows it reads. NaN (no data) counts as the noise floor in the
        # cavity tests and as 0 in the RPE search: the same image when there is no NaN.
        sigma = (6.0 / um, 10.0 / lat)
        fill = noise if np.isfinite(noise) else 0.0
        smoothed = SmoothedRows(linear, fill, sigma)
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
                smooth_px=sigma,
                smoothed=smoothed,
            )
            keep = assessable & np.isfinite(t)
            fluid = float(np.count_nonzero(cavity & keep) / max(keep.sum(), 1))
        else:
            cavity = np.zeros(t.shape, bool)
            fluid = float("nan")
        macular = ctx.scan.meta.pattern in (ScanPattern.LINE, ScanPattern.VOLUME)
        bm = outside_disc(ctx, seg.bm)
        if macular:
            floor = rpe_floor(bm)
            smooth = (
                smoothed
                if fill == 0.0 or not np.isnan(linear).any()
                else SmoothedRows(linear, 0.0, sigma)
            )
            # The RPE is searched in the lower half of the retina (the ILM and a thick RNFL
            # can outshine it), and at most 300 µm up: drusenoid detachments are taller.
            ilm = seg.ilm
            top = np.maximum(floor - 300.0 / um, ilm + 0.5 * (floor - ilm))
            rpe = rpe_rows(smooth, floor, top, below_px=int(round(20.0 / um)))
            # A fit is unconstrained at its ends: the outer 2% of each stretch of known RPE
            # (the B-scan's edges, the disc's margin) is left out.
            inner = ndimage.binary_erosion(
                np.isfinite(bm), structure=np.ones((1, 2 * max(1, t.shape[1] // 50) + 1), bool)
            )
            # A druse's content is of medium reflectivity, so single A-scans can find their
            # deepest bright row in it; a median over a druse's width keeps the lifted RPE.
            width_px = max(3, int(round(params.druse_min_width_um / lat)) | 1)
            rpe = ndimage.median_filter(np.where(np.isfinite(rpe), rpe, floor), size=(1, width_px))
            rpe = np.where(inner, rpe, np.nan)
            # The floor for the lift is fitted to the RPE itself, with a cubic: over 6 to
            # 9 mm a real RPE flattens towards the disc, which a quadratic misses; drusen,
            # at most about a millimetre wide, stay narrower than a cubic's bends. The fit
            # leaves out every RPE point lifted half the flag height or more above it, so a
            # broad druse does not pull the floor up into itself.
            # Where the retina wraps, the eye wall climbs out of the window (a staphyloma):
            # no sphere section carries that RPE, and a floor fitted through it reads the
            # climb as a lift. The A-scans of the climb, from the wrap out to where BM (no
            # foveal pit in it; a running median over five druse widths, so that neither
            # speckle nor a druse ends the climb) stops rising towards it, are neither fitted
            # nor searched.
            near_wrap = _climb_to_wrap(
                ctx.segmentation.clipped & ctx.usable[:, None], bm, 5 * width_px
            )
            rpe = np.where(near_wrap, np.nan, rpe)
            floor = rpe_floor(rpe, degree=3, lift_tol_px=0.5 * params.druse_flag_um / um)
            lift_um = (floor - rpe) * um
            druse = elevation_over_width(
                lift_um, max(2, int(round(params.druse_min_width_um / lat)))
            )
            druse = np.where(np.isfinite(bm) & np.isfinite(rpe), druse, np.nan)
            drusen_height = float(np.nanmax(druse)) if np.isfinite(druse).any() else float("nan")
            druse_cols = np.nan_to_num(druse) >= params.druse_flag_um
            floor_rows = floor
        else:
            drusen_height, druse_cols = float("nan"), np.zeros(t.shape, bool)
            druse = floor_rows = rpe = np.full(t.shape, np.nan)
            near_wrap = np.zeros(t.shape, bool)
        if macular and np.isfinite(noise) and noise > 0:
            # A hole is a cavity that fills the band above the RPE: the same dark-region test
            # as fluid, on the band where a healthy macula always has photoreceptors.
            lo, hi = (v / um for v in HOLE_BAND_UM)
            base = rpe if macular else bm
            hole, _ = cavity_columns(
                linear,
                base - hi,
                base - lo,
                base - hi,
                base,
                noise,
                min_rows=max(2, int(round(HOLE_FILL * (hi - lo)))),
                min_cols=max(2, int(round(params.hole_min_width_um / lat))),
                rpe_rows=max(2, int(round(25.0 / um))),
                smooth_px=sigma,
                smoothed=smoothed,
            )
            hole_width = float(_longest_run(hole).max(initial=0) * lat)
        else:
            hole, hole_width = np.zeros(t.shape, bool), float("nan")
        values = {
            "thickness_p05_um": p5,
            "thickness_p50_um": p50,
            "thickness_p95_um": p95,
            "thickness_range_um": p95 - p5,
            "abnormal_fraction": frac,
            "fluid_fraction": fluid,
            "drusen_height_um": drusen_height,
            "hole_width_um": hole_width,
        }
        band = f"{params.normal_min_um:g}-{params.normal_max_um:g} µm"
        thick = f"{frac:.0%} of A-scans outside {band}"
        wet = f"{fluid:.1%} of A-scans cross a cystoid space" if np.isfinite(fluid) else ""
        lin_name = ctx.linear_and_name[1]
        # The cavity level is a fraction of reflectivity above the noise floor; a vendor display
        # map bends that scale, so there the fraction is reported, not flagged. A hole holds
        # vitreous, the noise floor itself, which every display map keeps darkest: graded.
        display = lin_name.startswith("display")
        if display and wet:
            wet = f"{wet} (not graded: {lin_name} intensities)"
        found: list[tuple[str, str, float]] = []
        if np.isfinite(hole_width) and hole_width >= params.hole_min_width_um:
            found.append(
                (
                    "hole_width_um",
                    f"a full-thickness defect {hole_width:.0f} µm wide, nothing above the RPE "
                    f"(flag from {params.hole_min_width_um:g} µm): macular hole",
                    params.hole_min_width_um,
                )
            )
        if np.isfinite(drusen_height) and drusen_height >= params.druse_flag_um:
            found.append(
                (
                    "drusen_height_um",
                    f"RPE lifted {drusen_height:.0f} µm above its floor over "
                    f"{params.druse_min_width_um:g} µm (flag from {params.druse_flag_um:g} µm): "
                    "drusen",
                    params.druse_flag_um,
                )
            )
        if np.isfinite(fluid) and fluid > params.fluid_flag_fraction and not display:
            found.append(
                (
                    "fluid_fraction",
                    f"{wet} (flag above {params.fluid_flag_fraction:.0%}): intraretinal fluid",
                    params.fluid_flag_fraction,
                )
            )
        if frac > params.flag_fraction:
            found.append(("abnormal_fraction", thick, params.flag_fraction))
        passed = [
            f"{thick} (flag above {params.flag_fraction:.0%})",
            f"{wet} (flag above {params.fluid_flag_fraction:.0%})" if wet else "",
            f"drusen: RPE at most {drusen_height:.0f} µm above its floor (flag from "
            f"{params.druse_flag_um:g} µm)"
            if np.isfinite(drusen_height)
            else "",
            f"hole: widest full-thickness defect {hole_width:.0f} µm (flag from "
            f"{params.hole_min_width_um:g} µm)"
            if np.isfinite(hole_width)
            else "",
            f"drusen not searched on {near_wrap.mean():.0%} of A-scans, beside a wrap at the "
            "top (no smooth RPE floor there)"
            if near_wrap.any()
            else "",
        ]
        if found:
            graded, first, level = found[0]
            rest = [f for _, f, _ in found[1:]]
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.WARN,
                reason="; ".join([f"{first}, flagged for review (a human decides)", *rest]),
                graded_by=graded,
                thresholds=(level, level),
            )
        else:
            verdict = CriterionVerdict(
                criterion="R",
                verdict=Verdict.PASS,
                reason="; ".join(p for p in passed if p),
                graded_by="abnormal_fraction",
                thresholds=(params.flag_fraction, params.flag_fraction),
            )
        n = t.shape[0]
        findings = {
            "hole": hole,
            "drusen": druse_cols,
            "fluid": cavity if not display else np.zeros(t.shape, bool),
        }
        score = sum(m.sum(axis=1) * w for m, w in zip(findings.values(), (100, 10, 1), strict=True))
        score = score + (abnormal & ok).sum(axis=1) * 0.1
        k = int(np.argmax(score)) if np.any(score > 0) else ctx.centre_index
        rgb = mark_disc(bscan_with_layers(ctx, k), ctx, k)
        if druse_cols[k].any():
            rgb = pictures.draw_rows(rgb, floor_rows[k], pictures.CYAN)
        for name, colour in (
            ("hole", pictures.RED),
            ("drusen", pictures.ORANGE),
            ("fluid", pictures.MAGENTA),
        ):
            rgb = pictures.mark_runs(rgb, findings[name][k], seg.ilm[k], seg.bm[k], colour, name)
        marked = [
            f"{name} ({c})"
            for name, c in (("hole", "red"), ("drusen", "orange"), ("fluid", "magenta"))
            if findings[name][k].any()
        ]
        panels = [
            pictures.panel(
                crop_to_retina(rgb, ctx, k),
                f"B-scan {k}: ILM (green) to BM (yellow)"
                + (f"; found: {', '.join(marked)}" if marked else "; nothing found"),
            )
        ]
        if n > 1:
            en = pictures.resize(
                pictures.colormap(t, params.normal_min_um, params.normal_max_um), 320, 320
            )
            panels.append(pictures.panel(en, f"thickness map, colour range {band}", width=320))
        panels.append(
            pictures.plot(
                [(t[k], pictures.WHITE, "thickness")],
                title=f"thickness along B-scan {k} against the normal band",
                hlines=[
                    (params.normal_min_um, pictures.RED, f"min {params.normal_min_um:g} µm"),
                    (params.normal_max_um, pictures.RED, f"max {params.normal_max_um:g} µm"),
                ],
                ylabel="µm",
                xlabel="A-scan",
            )
        )
        if macular and np.isfinite(druse[k]).any():
            lift_k = druse[k]
            top_j = int(np.nanargmax(lift_k))
            panels.append(
                pictures.plot(
                    [(lift_k, pictures.ORANGE, "RPE lift over 63 µm")],
                    title=f"RPE above its floor along B-scan {k}",
                    hlines=[
                        (params.druse_flag_um, pictures.RED, f"flag {params.druse_flag_um:g} µm")
                    ],
                    points=[
                        (top_j, float(lift_k[top_j]), pictures.ORANGE, f"{lift_k[top_j]:.0f} µm")
                    ]
                    if druse_cols[k].any()
                    else [],
                    ylabel="µm",
                    xlabel="A-scan",
                )
            )
        return Evaluation(
            values,
            [with_disc_note(verdict, ctx)],
            pictures.stack(panels, title="pathology flag (OSCAR-IB R)"),
        )


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Per B-scan, the longest run of consecutive True A-scans."""
    out = np.zeros(mask.shape[0], int)
    for b, row in enumerate(mask):
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        out[b] = int((ends - starts).max()) if starts.size else 0
    return out


def _climb_to_wrap(wrap: np.ndarray, layer: np.ndarray, smooth_px: int) -> np.ndarray:
    """Per B-scan, the wrapped A-scans and, on each side of every run of them, the A-scans
    over which ``layer`` (rows; a running median over ``smooth_px``, so speckle does not end
    the climb) keeps rising towards the run: the flank of the climb out of the window."""
    out = wrap.copy()
    w = wrap.shape[1]
    for b, row in enumerate(wrap):
        if not row.any():
            continue
        known = np.isfinite(layer[b])
        if not known.any():
            out[b] = True
            continue
        level = np.interp(np.arange(w), np.flatnonzero(known), layer[b, known])
        level = ndimage.median_filter(level, size=max(3, smooth_px), mode="nearest")
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        for a, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            j = a - 1
            while j > 0 and level[j - 1] >= level[j]:  # rows grow downwards: rising = smaller
                j -= 1
            out[b, max(j, 0) : a] = True
            j = e
            while j < w - 1 and level[j + 1] >= level[j]:
                j += 1
            out[b, e : j + 1] = True
    return out

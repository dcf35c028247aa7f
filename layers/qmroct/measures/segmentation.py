"""Segmentation plausibility (OSCAR-IB A): did the layer algorithm stay on its borders?"""

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
from qmroct.measures.verdicts import grade, worst
from qmroct.metrics.plausibility import (
    disagreement_px,
    edge_strength,
    edge_strength_p05,
    gap_fraction,
    jump_fraction,
    order_violation_fraction,
    subilm_gap,
)
from qmroct.oct.model import ScanPattern

LAYERS = ("ilm", "rnfl", "onl_top", "onl_bottom", "bm")


class SegmentationParams(BaseModel):
    max_jump_um: float = Field(50.0, gt=0, le=1000, description="ILM step between A-scans")
    bm_max_jump_um: float = Field(
        100.0, gt=0, le=1000, description="BM step between A-scans (BM ends at the disc)"
    )
    gap_warn: float = Field(0.05, ge=0, le=1)
    gap_fail: float = Field(0.20, ge=0, le=1)
    order_warn: float = Field(0.01, ge=0, le=1)
    order_fail: float = Field(0.05, ge=0, le=1)
    jump_warn: float = Field(0.01, ge=0, le=1, description="ILM jump fraction that warns")
    jump_fail: float = Field(0.03, ge=0, le=1, description="ILM jump fraction that fails")
    bm_jump_warn: float = Field(
        0.02, ge=0, le=1, description="BM jump fraction that warns (clean scans stay below 1%)"
    )
    bm_jump_fail: float = Field(0.06, ge=0, le=1, description="BM jump fraction that fails")
    edge_warn: float = Field(0.35, ge=-1, le=1, description="ILM edge P5 / median that warns")
    edge_fail: float = Field(0.15, ge=-1, le=1, description="ILM edge P5 / median that fails")
    gap_level: float = Field(0.15, ge=0, le=1, description="sub-ILM level that counts as a gap")
    subilm_warn: float = Field(0.01, ge=0, le=1, description="A-scans with a sub-ILM gap: warn")
    subilm_fail: float = Field(0.04, ge=0, le=1, description="A-scans with a sub-ILM gap: fail")
    rnfl_max_jump_um: float = Field(
        30.0, gt=0, le=1000, description="ring: RNFL lower-edge step between A-scans"
    )
    rnfl_jump_warn: float = Field(0.02, ge=0, le=1, description="ring: RNFL jump fraction, warn")
    rnfl_jump_fail: float = Field(0.05, ge=0, le=1, description="ring: RNFL jump fraction, fail")
    rnfl_floor_um: float = Field(
        15.0,
        gt=0,
        le=200,
        description="ring: a thinner RNFL is a missed boundary; even advanced glaucoma keeps "
        "about 50 µm (the floor effect, Mwanza et al., IOVS 2015)",
    )
    rnfl_thin_warn: float = Field(0.05, ge=0, le=1, description="ring: thinner-than-floor, warn")
    rnfl_thin_fail: float = Field(0.15, ge=0, le=1, description="ring: thinner-than-floor, fail")
    device_far_um: float = Field(15.0, gt=0, description="|ours - device| that counts as apart")
    device_warn_um: float = Field(10.0, gt=0, description="mean |ours - device| that warns")
    device_fail_um: float = Field(25.0, gt=0, description="mean |ours - device| that fails")


@register
class SegmentationPlausibility(SuiteMeasure):
    """Plausibility of the ILM, RNFL, ONL and BM boundaries: gaps, out-of-order boundaries,
    jumps between neighbouring A-scans, the weakest 5% of the ILM edge (a boundary off its border
    sits on no edge), a dark vitreous gap just under the ILM (the ILM latched onto a membrane)
    and, when the file carries the device's own segmentation, the mean distance to it.
    Thresholds from the phantom sweep (layer_artefact) and Jammal et al. 2019 practice.

    The optic disc is left out of every check: it has no RPE, BM or ONL to segment, so a gap,
    a jump or a disagreement there is anatomy, not a failed algorithm. Its A-scans are found
    on the SLO (the disc found there and each A-scan's fundus position) or from the device's
    segmentation (ILM without BM over at least 300 µm); ``disc_excluded_fraction`` reports
    their share and the verdict reason names the exclusion (see :mod:`qmroct.metrics.disc`)."""

    name = "segmentation"
    version = "1.2.0"
    criteria = ("A",)
    Params = SegmentationParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "gap_fraction": ("fraction", "lower is better", "A-scans missing ILM or BM"),
        "order_violation_fraction": (
            "fraction",
            "lower is better",
            "A-scans with boundaries out of order",
        ),
        "ilm_jump_fraction": ("fraction", "lower is better", "ILM steps above max_jump_um"),
        "bm_jump_fraction": ("fraction", "lower is better", "BM steps above bm_max_jump_um"),
        "ilm_edge_p05": (
            "",
            "higher is better",
            "5th percentile of the ILM edge step over its median",
        ),
        "device_disagreement_um": (
            "µm",
            "lower is better",
            "mean distance to the device's ILM/BM (worse of the two)",
        ),
        "confidence_mean": ("", "higher is better", "mean segmentation confidence"),
        "rnfl_jump_fraction": (
            "fraction",
            "lower is better",
            "ring scans: A-scan pairs whose RNFL lower edge steps more than rnfl_max_jump_um",
        ),
        "rnfl_thin_fraction": (
            "fraction",
            "lower is better",
            "ring scans: A-scans with an RNFL thinner than rnfl_floor_um (a missed RNFL edge)",
        ),
        "device_ilm_px": ("px", "lower is better", "mean |ours - device| of the ILM (reported)"),
        "device_rnfl_px": (
            "px",
            "lower is better",
            "mean |ours - device| of the RNFL lower edge (reported; files with a device RNFL)",
        ),
        "device_bm_px": ("px", "lower is better", "mean |ours - device| of BM (reported)"),
        "disc_excluded_fraction": (
            "fraction",
            "",
            "A-scans in the optic disc, left out of every check",
        ),
        "top_clipped_fraction": (
            "fraction",
            "lower is better",
            "A-scans whose retina reaches the image top (cut off or wrapped back, as in steep "
            "myopic eyes): the ILM is clamped there and they are left out of every check; "
            "completeness grades them (OSCAR-IB O, cut-off image parts)",
        ),
    }

    def evaluate(self, ctx: ScanContext, params: SegmentationParams) -> Evaluation:  # type: ignore[override]
        s = ctx.segmentation
        axial = ctx.scan.meta.spacing.axial_um
        clipped = s.clipped
        keep = ~ctx.disc.mask & ~clipped

        def graded(layer: np.ndarray) -> np.ndarray:
            # Outside the disc only (nothing to segment below the ILM inside it), and not
            # where the retina reaches the image top: a cut or a wrap is the image's problem,
            # graded by completeness (OSCAR-IB O), not the algorithm's.
            return np.where(clipped, np.nan, outside_disc(ctx, layer))

        ilm, bm = graded(s.ilm), graded(s.bm)
        layers = [getattr(s, name) for name in LAYERS]
        gaps = gap_fraction(s.ilm, s.bm, keep=keep)
        order = order_violation_fraction(layers, keep=keep)
        jumps = jump_fraction(ilm, params.max_jump_um / axial)
        bm_jumps = jump_fraction(bm, params.bm_max_jump_um / axial)
        strength = edge_strength(ctx.display, ilm)
        ref = float(np.nanmedian(strength)) if np.isfinite(strength).any() else float("nan")
        edge = edge_strength_p05(strength, ref)
        device = ctx.scan.segmentation or {}
        dis = [
            disagreement_px(mine, device[theirs]) * axial
            for mine, theirs in ((ilm, "ILM"), (bm, "BM"))
            if theirs in device and device[theirs].shape == mine.shape
        ]
        dis_um = float(np.nanmax(dis)) if dis and np.isfinite(dis).any() else None
        # Agreement per boundary in pixels, as the device's own boundaries are drawn.
        agree = {
            f"device_{name.lower()}_px": disagreement_px(graded(mine), device[name])
            for name, mine in (("ILM", s.ilm), ("RNFL", s.rnfl), ("BM", s.bm))
            if name in device and device[name].shape == mine.shape
        }
        apart = None
        if "ILM" in device and device["ILM"].shape == s.ilm.shape:
            both = np.isfinite(ilm) & np.isfinite(device["ILM"])
            if both.any():
                diff = np.abs(ilm[both] - device["ILM"][both]) * axial
                apart = float(np.mean(diff > params.device_far_um))
        gap_map = subilm_gap(
            ctx.display,
            ilm,
            start_px=max(2, int(round(8.0 / axial))),
            depth_px=max(3, int(round(40.0 / axial))),
        )
        known = np.isfinite(gap_map)
        gap_frac = (
            float(np.mean(gap_map[known] < params.gap_level)) if known.any() else float("nan")
        )
        ring = ctx.scan.meta.pattern is ScanPattern.RING
        rnfl_jumps = rnfl_thin = None
        if ring:
            # OSCAR-IB A was written for rings, where the RNFL is the layer measured: its lower
            # edge must run continuously and stay above the thinnest RNFL an eye keeps.
            rnfl = graded(s.rnfl)
            rnfl_jumps = jump_fraction(rnfl, params.rnfl_max_jump_um / axial)
            thick = (rnfl - ilm) * axial
            ok = np.isfinite(thick)
            rnfl_thin = (
                float(np.mean(thick[ok] < params.rnfl_floor_um)) if ok.any() else float("nan")
            )
        values = {
            "gap_fraction": gaps,
            "order_violation_fraction": order,
            "ilm_jump_fraction": jumps,
            "bm_jump_fraction": bm_jumps,
            "ilm_edge_p05": edge,
            "subilm_gap_fraction": gap_frac,
            "device_disagreement_um": dis_um,
            "device_apart_fraction": apart,
            "rnfl_jump_fraction": rnfl_jumps,
            "rnfl_thin_fraction": rnfl_thin,
            **agree,
            "confidence_mean": float(np.nanmean(s.confidence)),
            "disc_excluded_fraction": ctx.disc.fraction,
            "top_clipped_fraction": float(clipped.mean()) if clipped.size else 0.0,
        }
        gradings = [
            grade(
                "A",
                "gaps",
                gaps,
                graded_by="gap_fraction",
                warn=params.gap_warn,
                fail=params.gap_fail,
                higher_is_better=False,
            ),
            grade(
                "A",
                "order violations",
                order,
                graded_by="order_violation_fraction",
                warn=params.order_warn,
                fail=params.order_fail,
                higher_is_better=False,
            ),
            grade(
                "A",
                "ILM jumps",
                jumps,
                graded_by="ilm_jump_fraction",
                warn=params.jump_warn,
                fail=params.jump_fail,
                higher_is_better=False,
            ),
            grade(
                "A",
                "BM jumps",
                bm_jumps,
                graded_by="bm_jump_fraction",
                warn=params.bm_jump_warn,
                fail=params.bm_jump_fail,
                higher_is_better=False,
            ),
            grade(
                "A",
                "ILM edge P5/median",
                edge,
                graded_by="ilm_edge_p05",
                warn=params.edge_warn,
                fail=params.edge_fail,
                higher_is_better=True,
            ),
        ]
        if dis_um is not None:
            gradings.append(
                grade(
                    "A",
                    "disagreement with device",
                    dis_um,
                    graded_by="device_disagreement_um",
                    warn=params.device_warn_um,
                    fail=params.device_fail_um,
                    higher_is_better=False,
                    unit=" µm",
                )
            )
        if ring:
            gradings += [
                grade(
                    "A",
                    "RNFL jumps",
                    rnfl_jumps,
                    graded_by="rnfl_jump_fraction",
                    warn=params.rnfl_jump_warn,
                    fail=params.rnfl_jump_fail,
                    higher_is_better=False,
                ),
                grade(
                    "A",
                    f"RNFL thinner than {params.rnfl_floor_um:g} µm",
                    rnfl_thin,
                    graded_by="rnfl_thin_fraction",
                    warn=params.rnfl_thin_warn,
                    fail=params.rnfl_thin_fail,
                    higher_is_better=False,
                    source="Mwanza et al., IOVS 2015",
                ),
            ]
        # Show the B-scan with the weakest ILM edge: where a failure would be.
        gaps_per_b = np.nansum(gap_map < params.gap_level, axis=1)
        per_b = np.array(
            [np.nanpercentile(r, 5) if np.isfinite(r).any() else np.inf for r in strength]
        )
        if clipped.any():
            k = int(np.argmax(clipped.sum(axis=1)))
        elif gaps_per_b.any():
            k = int(np.argmax(gaps_per_b))
        else:
            k = int(np.argmin(per_b)) if np.isfinite(per_b).any() else ctx.centre_index
        rgb = bscan_with_layers(ctx, k, LAYERS)
        weak = np.flatnonzero(
            (np.isfinite(strength[k]) & (strength[k] < params.edge_fail * ref))
            | (np.isfinite(gap_map[k]) & (gap_map[k] < params.gap_level))
        )
        gap_cols = np.flatnonzero((~np.isfinite(s.ilm[k]) | ~np.isfinite(s.bm[k])) & keep[k])
        top_row = float(np.nanmax(s.bm[k])) + 10 if np.isfinite(s.bm[k]).any() else 0.0
        rgb = pictures.annotate(
            rgb,
            # Marks just above the ILM (weak edge or a gap under it) and at the BM (missing).
            lines=[(j, s.ilm[k, j] - 14, j, s.ilm[k, j] - 5, pictures.RED) for j in weak]
            + [(j, top_row, j, top_row + 8, pictures.ORANGE) for j in gap_cols]
            # At the image top: the retina reaches it (cut off or wrapped), not graded here.
            + [(j, 0.0, j, 6.0, pictures.MAGENTA) for j in np.flatnonzero(clipped[k])],
        )
        rgb = mark_disc(rgb, ctx, k)
        panels = [
            pictures.panel(
                crop_to_retina(rgb, ctx, k),
                f"B-scan {k}: ILM green, RNFL cyan, ONL magenta, BM yellow; "
                "weak ILM edge or gap under it red, missing boundaries orange"
                + ("; retina at the image top magenta (not graded)" if clipped[k].any() else ""),
            )
        ]
        drawn = [
            (theirs, mine)
            for theirs, mine in (("ILM", s.ilm), ("RNFL", s.rnfl), ("BM", s.bm))
            if theirs in device and device[theirs].shape == mine.shape
        ]
        if drawn:
            drgb = pictures.gray_rgb(ctx.display[k])
            for theirs, mine in drawn:
                drgb = pictures.draw_rows(drgb, device[theirs][k], pictures.CYAN)
                # Not where the retina reaches the top: the clamp there is no boundary.
                drgb = pictures.draw_rows(
                    drgb, np.where(clipped[k], np.nan, mine[k]), pictures.GREEN
                )
            names = ", ".join(
                f"{theirs} {agree[f'device_{theirs.lower()}_px']:.1f} px"
                for theirs, _ in drawn
                if np.isfinite(agree.get(f"device_{theirs.lower()}_px", np.nan))
            )
            panels.append(
                pictures.panel(
                    crop_to_retina(drgb, ctx, k),
                    f"ours (green) against the device's (cyan), mean |difference|: {names}",
                )
            )
        verdict = with_disc_note(worst("A", gradings), ctx)
        if clipped.any():
            verdict = verdict.model_copy(
                update={
                    "reason": f"{verdict.reason}; retina at the image top (cut off or wrapped) "
                    f"on {clipped.mean():.0%} of A-scans, not graded here (OSCAR-IB O)"
                }
            )
        return Evaluation(
            values,
            [verdict],
            pictures.stack(panels, title="segmentation (OSCAR-IB A)"),
        )

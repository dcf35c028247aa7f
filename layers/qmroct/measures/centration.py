"""Centration (OSCAR-IB C): fovea at the grid centre, or the ring on the optic-disc centre."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy.ndimage import median_filter

from qmroct import pictures
from qmroct.errors import NotApplicable
from qmroct.measures.base import register
from qmroct.measures.common import Evaluation, SuiteMeasure, bscan_with_layers, crop_to_retina
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import grade, not_applicable, worst
from qmroct.metrics.centration import (
    disc_candidates,
    fovea_offset_um,
    fovea_position,
    ring_offset_ratio,
)
from qmroct.metrics.geometry import thickness_um
from qmroct.oct.model import ScanPattern


class CentrationParams(BaseModel):
    fovea_warn_um: float = Field(100.0, gt=0, le=3000, description="fovea offset that warns")
    fovea_fail_um: float = Field(
        200.0, gt=0, le=3000, description="fovea offset that fails (Pak et al., IOVS 2013)"
    )
    smoothing_radius_um: float = Field(300.0, gt=0, le=2000, description="AURA disc radius")
    min_pit_depth: float = Field(
        0.1, ge=0, le=1, description="relative thickness dip needed to call a foveal pit"
    )
    ring_warn_ratio: float = Field(0.15, gt=0, le=2, description="ring offset / disc (OCTolyzer)")
    ring_fail_ratio: float = Field(0.30, gt=0, le=2, description="ring offset / disc that fails")
    disc_diameter_um: float = Field(1800.0, gt=100, le=5000, description="expected disc diameter")


@register
class Centration(SuiteMeasure):
    """Centration. Macular scans: distance of the fovea (minimum of the 300 µm-smoothed
    thickness map in the central 35-65%, the AURA method) from the scan centre in µm; fails
    beyond 200 µm (Pak et al. 2013). Ring scans: ring-to-disc offset over disc diameter, with the
    disc found on the SLO near the ring's own centre, bright or dark, passing over bright
    peripapillary atrophy at its margin; warns above 0.15 (OCTolyzer)."""

    name = "centration"
    version = "1.2.0"
    criteria = ("C",)
    Params = CentrationParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "fovea_offset_um": ("µm", "lower is better", "fovea distance from the scan centre"),
        "fovea_dx_um": ("µm", "closer to 0 is better", "lateral offset (positive: right)"),
        "fovea_dy_um": ("µm", "closer to 0 is better", "slow-axis offset"),
        "fovea_bscan": ("index", "", "B-scan of the fovea"),
        "fovea_column": ("column", "", "A-scan of the fovea"),
        "fovea_pit_depth": (
            "fraction",
            "higher is better",
            "thickness dip at the fovea relative to the median",
        ),
        "ring_offset_ratio": (
            "fraction",
            "lower is better",
            "|ring centre - disc centre| / disc diameter",
        ),
        "ring_offset_um": ("µm", "lower is better", "ring-to-disc distance"),
        "disc_x_px": ("SLO px", "", "disc centre x"),
        "disc_y_px": ("SLO px", "", "disc centre y"),
        "disc_diameter_px": ("SLO px", "", "disc diameter"),
        "disc_contrast": ("", "higher is better", "how clearly the disc stands out"),
        "disc_contrast_sd": (
            "SD",
            "higher is better",
            "disc contrast in robust SDs of the SLO's contrast map",
        ),
        "disc_bright": ("", "", "whether the disc found is brighter than the fundus"),
        "atrophy_passed_over": (
            "count",
            "",
            "bright blobs at the disc margin taken for peripapillary atrophy, not the disc",
        ),
    }

    def evaluate(self, ctx: ScanContext, params: CentrationParams) -> Evaluation:  # type: ignore[override]
        if ctx.scan.meta.pattern is ScanPattern.RING:
            return self._ring(ctx, params)
        if ctx.scan.meta.pattern is ScanPattern.RADIAL:
            raise NotApplicable("centration of radial scans is not measured yet")
        return self._fovea(ctx, params)

    def _fovea(self, ctx: ScanContext, params: CentrationParams) -> Evaluation:
        meta = ctx.scan.meta
        sp = meta.spacing
        # BM is smooth anatomy; a running median over the AURA radius keeps its segmentation
        # noise out of the thickness minimum.
        width = max(3, int(round(params.smoothing_radius_um / sp.lateral_um)) | 1)
        bm = ctx.usable_segmentation.bm.astype(np.float64)
        bm_s = median_filter(
            np.where(np.isfinite(bm), bm, np.nanmedian(bm)), size=(1, width), mode="nearest"
        )
        bm_s[~np.isfinite(bm)] = np.nan
        t = thickness_um(ctx.usable_segmentation.ilm, bm_s, sp.axial_um)
        n, w = t.shape
        bscan_um = sp.bscan_um if n > 1 else None
        k, j = fovea_position(t, sp.lateral_um, bscan_um, radius_um=params.smoothing_radius_um)
        if not np.isfinite(j):
            return Evaluation(
                {"fovea_offset_um": None},
                [
                    grade(
                        "C",
                        "fovea offset",
                        None,
                        graded_by="fovea_offset_um",
                        warn=0,
                        fail=0,
                        higher_is_better=False,
                    )
                ],
                None,
                ["no thickness in the central region"],
            )
        dx, dy, dist = fovea_offset_um((k, j), (n, w), sp.lateral_um, bscan_um)
        tmed = float(np.nanmedian(t))
        tmin = float(np.nanmin(t[int(k), max(0, int(j) - 3) : int(j) + 4]))
        depth = (tmed - tmin) / tmed if tmed > 0 else 0.0
        values = {
            "fovea_offset_um": dist,
            "fovea_dx_um": dx,
            "fovea_dy_um": dy,
            "fovea_bscan": k,
            "fovea_column": j,
            "fovea_pit_depth": depth,
        }
        # Without a pit the thickness minimum is no fovea: its offset is not graded, the missing
        # pit is (a macular scan that misses the fovea is off-centre).
        has_pit = bool(np.isfinite(depth) and depth >= params.min_pit_depth / 2)
        offset = (
            grade(
                "C",
                "fovea offset",
                dist,
                graded_by="fovea_offset_um",
                warn=params.fovea_warn_um,
                fail=params.fovea_fail_um,
                higher_is_better=False,
                unit=" µm",
                source="Pak et al., IOVS 2013",
            )
            if has_pit
            else not_applicable(
                "C", f"fovea offset not graded: no pit at the thickness minimum ({dist:.0f} µm off)"
            )
        )
        gradings = [
            offset,
            grade(
                "C",
                "foveal pit depth",
                depth,
                graded_by="fovea_pit_depth",
                warn=params.min_pit_depth,
                fail=params.min_pit_depth / 2,
                higher_is_better=True,
                source="no pit: fovea outside the scan or a non-macular scan",
            ),
        ]
        ki = int(round(k))
        rgb = bscan_with_layers(ctx, ki)
        cx = (w - 1) / 2.0
        # A fovea is marked only where a pit was found; without one the minimum is no fovea.
        lines = [(cx, 0, cx, ctx.height - 1, pictures.CYAN)]
        if has_pit:
            lines.append((j, 0, j, ctx.height - 1, pictures.RED))
        rgb = pictures.annotate(rgb, lines=lines)
        found = f"fovea (red), {dist:.0f} µm" if has_pit else "no foveal pit found"
        panels = [
            pictures.panel(
                crop_to_retina(rgb, ctx, ki), f"B-scan {ki}: scan centre (cyan), {found}"
            )
        ]
        if n > 1:
            lo, hi = np.nanpercentile(t, [1, 99]) if np.isfinite(t).any() else (0, 1)
            en = pictures.resize(pictures.colormap(t, lo, hi), 320, 320)
            sx, sy = 320 / w, 320 / n
            en = pictures.annotate(
                en,
                marks=[(cx * sx, (n - 1) / 2 * sy, pictures.CYAN)]
                + ([(j * sx, k * sy, pictures.RED)] if has_pit else []),
                text=[(4, 4, f"thickness {lo:.0f}-{hi:.0f} µm", pictures.WHITE)],
            )
            panels.append(
                pictures.panel(en, "thickness map: centre (cyan) and fovea (red)", width=320)
            )
        else:
            panels.append(
                pictures.plot(
                    [(t[0], pictures.WHITE, "thickness µm")],
                    title="retinal thickness along the line",
                    xlabel="A-scan",
                    ylabel="µm",
                    vlines=[(cx, pictures.CYAN, "centre")]
                    + ([(j, pictures.RED, "fovea")] if has_pit else []),
                )
            )
        return Evaluation(
            values, [worst("C", gradings)], pictures.stack(panels, title="centration (OSCAR-IB C)")
        )

    def _ring(self, ctx: ScanContext, params: CentrationParams) -> Evaluation:
        meta = ctx.scan.meta
        fundus = ctx.scan.fundus
        if fundus is None or meta.ring is None:
            missing = "no SLO fundus image" if fundus is None else "no ring geometry in the file"
            raise NotApplicable(f"ring centration needs the SLO and the ring centre: {missing}")
        fs = meta.fundus_spacing_um
        if fs is not None:
            expected = params.disc_diameter_um / fs.lateral_um
        else:
            # Without a fundus scale, the ring radius (1.7 mm nominal) sets the scale.
            expected = meta.ring.radius_px * params.disc_diameter_um / 1730.0
        ring = (meta.ring.center.x, meta.ring.center.y)
        # The ring's own centre is the prior (the operator aimed it at the disc), both
        # polarities are tried and bright atrophy at a dark disc's margin is passed over.
        found = disc_candidates(
            fundus, expected_diameter_px=expected, prior=ring, prior_sigma_px=meta.ring.radius_px
        )
        if not found:
            raise NotApplicable("no disc-sized blob on the SLO")
        best = found[0]
        x, y, diam, contrast = best.x, best.y, best.diameter_px, best.contrast
        passed = [k for k in found[1:] if k.atrophy]
        ratio = ring_offset_ratio(ring, (x, y), diam)
        values = {
            "ring_offset_ratio": ratio,
            "ring_offset_um": float(np.hypot(ring[0] - x, ring[1] - y) * fs.lateral_um)
            if fs
            else None,
            "disc_x_px": x,
            "disc_y_px": y,
            "disc_diameter_px": diam,
            "disc_contrast": contrast,
            "disc_contrast_sd": best.z,
            "disc_bright": best.bright,
            "atrophy_passed_over": len(passed),
        }
        verdict = grade(
            "C",
            "ring offset / disc diameter",
            ratio,
            graded_by="ring_offset_ratio",
            warn=params.ring_warn_ratio,
            fail=params.ring_fail_ratio,
            higher_is_better=False,
            source="OCTolyzer",
        )
        rgb = pictures.gray_rgb(fundus)
        rgb = pictures.annotate(
            rgb,
            circles=[
                (ring[0], ring[1], meta.ring.radius_px, pictures.GREEN),
                (x, y, diam / 2.0, pictures.YELLOW),
            ],
            marks=[(ring[0], ring[1], pictures.GREEN), (x, y, pictures.YELLOW)]
            + [(k.x, k.y, pictures.ORANGE) for k in passed],
        )
        panels = [
            pictures.panel(
                rgb,
                f"SLO: ring (green), {'bright' if best.bright else 'dark'} disc found (yellow), "
                f"offset {ratio:.2f} of the disc"
                + (", atrophy passed over (orange)" if passed else ""),
            ),
            pictures.panel(crop_to_retina(bscan_with_layers(ctx, 0), ctx, 0), "ring B-scan"),
        ]
        return Evaluation(
            values, [verdict], pictures.stack(panels, title="ring centration (OSCAR-IB C)")
        )

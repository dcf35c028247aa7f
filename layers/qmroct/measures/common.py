"""The shape shared by the suite's measures: build the context, check for a retina, evaluate.

A suite measure implements ``evaluate(ctx, params) -> Evaluation``. ``compute`` wraps it so that
a scan without a detectable retina fails with that reason, and a scan the measure does not
apply to (:class:`~qmroct.errors.NotApplicable`) gives not_applicable, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from qmroct import pictures
from qmroct.errors import NotApplicable
from qmroct.measures.base import Measure
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import failed, not_applicable
from qmroct.oct.model import Scan
from qmroct.results import CriterionVerdict, MeasureOutput, Value


@dataclass
class Evaluation:
    values: dict[str, Value]
    verdicts: list[CriterionVerdict]
    picture: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def clean(values: dict[str, object]) -> dict[str, Value]:
    """JSON-safe values: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    out: dict[str, Value] = {}
    for k, v in values.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v  # type: ignore[assignment]
        if isinstance(v, float):
            out[k] = round(v, 6)
    return out


class SuiteMeasure(Measure):
    """A measure of the OSCAR-IB suite (see the module docstring for the contract)."""

    requires = ("segmentation",)
    #: value name -> (unit, direction, meaning); the report and docs/measures.md read it.
    values_doc: dict[str, tuple[str, str, str]] = {}
    #: values every suite measure records alongside its own.
    common_values_doc: dict[str, tuple[str, str, str]] = {
        "scale_used": ("", "", "display map the intensity metrics used"),
        "pattern": ("", "", "scan pattern"),
        "device": ("", "", "device name from the file"),
        "retina_fraction": ("fraction", "higher is better", "A-scans with ILM and BM found"),
        "spacing_assumed": (
            "",
            "",
            "pixel spacings the file did not give and the reader assumed (e.g. 'lateral,bscan'); "
            "absent when the file gives them all",
        ),
    }
    #: Whether the measure's values or thresholds are in physical units (µm, degrees): then an
    #: assumed spacing is named in every graded verdict's reason.
    uses_spacing: bool = True
    #: Whether the measure needs a detected retina (all but a few do).
    needs_retina: bool = True

    def evaluate(self, ctx: ScanContext, params: BaseModel) -> Evaluation:  # pragma: no cover
        raise NotImplementedError

    def compute(
        self, scan: Scan, params: BaseModel, inputs: dict[str, object] | None = None
    ) -> MeasureOutput:
        ctx = ScanContext.build(scan, inputs)
        # inputs["png"] False: leave the picture as pixels, unencoded (a validation sweep grades
        # a thousand phantoms and looks at none of their pictures; PNG encoding is a tenth of
        # a measure's time).
        png = bool((inputs or {}).get("png", True))
        base: dict[str, Value] = {
            "scale_used": ctx.scale_used,
            "pattern": scan.meta.pattern.value,
            "device": scan.meta.device,
            "retina_fraction": round(ctx.retina_fraction, 4),
        }
        if self.needs_retina and not ctx.has_retina:
            reason = ctx.no_retina_reason()
            picture = pictures.panel(
                pictures.gray_rgb(ctx.display[ctx.centre_index]), f"{self.name}: {reason}"
            )
            return self._output(
                base, [failed(c, reason) for c in self.criteria], picture, [reason], png
            )
        try:
            ev = self.evaluate(ctx, params)
        except NotApplicable as exc:
            reason = str(exc)
            return self._output(
                base, [not_applicable(c, reason) for c in self.criteria], None, [reason], png
            )
        verdicts = ev.verdicts
        assumed = scan.meta.extra.get("spacing_assumed")
        if assumed:
            base["spacing_assumed"] = str(assumed)
            if self.uses_spacing:
                s = scan.meta.spacing
                note = (
                    f"assumed {assumed} spacing, not in the file (lateral {s.lateral_um:g} µm, "
                    f"axial {s.axial_um:g} µm per pixel)"
                )
                verdicts = [
                    v.model_copy(update={"reason": f"{v.reason}; {note}"}) for v in verdicts
                ]
        return self._output({**base, **ev.values}, verdicts, ev.picture, ev.notes, png)

    def _output(
        self,
        values: dict[str, object],
        verdicts: list[CriterionVerdict],
        picture: np.ndarray | None,
        notes: list[str],
        png: bool = True,
    ) -> MeasureOutput:
        return MeasureOutput(
            measure=self.name,
            version=self.version,
            values=clean(values),
            verdicts=verdicts,
            notes=notes,
            picture_png=(pictures.to_png(picture) if picture is not None and png else None),
            picture_rgb=picture,
        )


def bscan_with_layers(
    ctx: ScanContext, k: int, layers: tuple[str, ...] = ("ilm", "bm"), *, enhanced: bool = False
) -> np.ndarray:
    """B-scan ``k`` (display scale) with segmentation boundaries drawn over it."""
    img = ctx.display[k]
    rgb = pictures.background_enhanced(img) if enhanced else pictures.gray_rgb(img)
    colours = {
        "ilm": pictures.GREEN,
        "rnfl": pictures.CYAN,
        "onl_top": pictures.MAGENTA,
        "onl_bottom": pictures.MAGENTA,
        "bm": pictures.YELLOW,
    }
    for name in layers:
        rgb = pictures.draw_rows(rgb, getattr(ctx.usable_segmentation, name)[k], colours[name])
    return rgb


def sample_indices(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` B-scan indices spread evenly over ``n`` (all of them when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def column_mean(a: np.ndarray) -> np.ndarray:
    """Mean over B-scans per column, NaN where a column has no value (no warning)."""
    ok = np.isfinite(a)
    total = np.where(ok, a, 0.0).sum(axis=0)
    count = ok.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def crop_to_retina(rgb: np.ndarray, ctx: ScanContext, k: int, pad_px: int = 40) -> np.ndarray:
    """Rows from above the highest ILM to below the deepest BM of B-scan ``k`` (with a margin):
    the part of the B-scan a reader looks at, with scale bars in µm. The whole image when no
    boundary was found."""
    s = ctx.usable_segmentation
    top, bottom = s.ilm[k], s.bm[k]
    sp = ctx.scan.meta.spacing
    out = rgb
    if np.isfinite(top).any() and np.isfinite(bottom).any():
        h = rgb.shape[0]
        r0 = max(0, int(np.nanmin(top)) - pad_px)
        r1 = min(h, int(np.nanmax(bottom)) + 2 * pad_px)
        out = rgb[r0:r1] if r1 - r0 > 20 else rgb
    # Bars and labels drawn at the size the panel shows, not enlarged with a small B-scan.
    out, zoom = pictures.panel_size(out)
    return pictures.scale_bar(out, sp.lateral_um / zoom, sp.axial_um / zoom)


def outside_disc(ctx: ScanContext, layer: np.ndarray) -> np.ndarray:
    """A copy of a boundary (n, w) with the optic-disc A-scans set to NaN (see ``ctx.disc``)."""
    if not ctx.disc.any:
        return layer
    return np.where(ctx.disc.mask, np.nan, layer)


def with_disc_note(verdict: CriterionVerdict, ctx: ScanContext) -> CriterionVerdict:
    """The verdict with the optic-disc exclusion named in its reason (unchanged without one)."""
    note = ctx.disc.note()
    if not note:
        return verdict
    return verdict.model_copy(update={"reason": f"{verdict.reason}; {note}"})


def mark_disc(rgb: np.ndarray, ctx: ScanContext, k: int) -> np.ndarray:
    """B-scan ``k`` with its optic-disc A-scans boxed in grey and labelled."""
    cols = np.flatnonzero(ctx.disc.mask[k]) if ctx.disc.any else np.array([], dtype=int)
    if cols.size == 0:
        return rgb
    breaks = np.flatnonzero(np.diff(cols) > 1)
    starts = np.concatenate([[cols[0]], cols[breaks + 1]])
    ends = np.concatenate([cols[breaks], [cols[-1]]])
    h = rgb.shape[0]
    s = ctx.usable_segmentation
    # Inside the rows crop_to_retina keeps, so the box survives the crop.
    top = max(1.0, float(np.nanmin(s.ilm[k])) - 35) if np.isfinite(s.ilm[k]).any() else 1.0
    bottom = min(h - 2.0, float(np.nanmax(s.bm[k])) + 70) if np.isfinite(s.bm[k]).any() else h - 2
    return pictures.annotate(
        rgb,
        boxes=[(a, top, b, bottom, pictures.GREY) for a, b in zip(starts, ends, strict=True)],
        text=[(a + 3, top + 3, "disc: not graded", pictures.GREY) for a in starts],
    )

"""Signal strength (OSCAR-IB S): QI, mTCI, SNR and CNR, and the device's own quality value."""

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
    sample_indices,
)
from qmroct.measures.context import ScanContext
from qmroct.measures.verdicts import grade, not_applicable, worst
from qmroct.metrics.contrast import cnr, peak_snr_db, snr_db
from qmroct.metrics.histogram import (
    MTCI_DEFAULT_CONSTANT,
    MTCI_DEVICE_CONSTANT,
    mtci,
    quality_index,
)
from qmroct.metrics.intensity import valid_values
from qmroct.results import Verdict

#: Device quality floors with a published source: OSCAR-IB S (Tewarie et al. 2012) names only
#: Spectralis (Q below 15 dB is poor). Other kinds (Topcon FAST_Q2, Cirrus signal strength in a
#: file without a cited floor) are reported, and the letter names why they are not graded.
DEVICE_FLOOR: dict[str, tuple[float, str]] = {
    "spectralis_q": (15.0, "OSCAR-IB, Tewarie 2012"),
}


class SignalParams(BaseModel):
    peak_snr_warn_db: float = Field(
        20.0,
        ge=-20,
        le=80,
        description="peak SNR below this warns (phantom: clean 25, moderate 15)",
    )
    peak_snr_fail_db: float = Field(
        14.0, ge=-20, le=80, description="peak SNR below this fails (phantom: severe loss 7)"
    )
    max_bscans: int = Field(32, ge=1, le=1024, description="B-scans sampled for the histograms")
    c_dev: float | None = Field(
        None, gt=0, lt=1, description="mTCI device constant; None: from the device name"
    )


def _device_constant(device: str | None) -> float:
    name = (device or "").lower()
    for key, c in MTCI_DEVICE_CONSTANT.items():
        if key in name:
            return c
    return MTCI_DEFAULT_CONSTANT


@register
class Signal(SuiteMeasure):
    """Signal strength. The peak SNR (P95 of the retina over the vitreous noise floor, dB, on
    reflectivity) grades the letter; QI, mTCI, the variance SNR and CNR are reported with it, and the device's own value (Spectralis Q < 15 dB fails, OSCAR-IB) when the file has
    one. Low values mean a weak, noisy image: cataract, dry cornea, poor alignment."""

    name = "signal"
    uses_spacing = False  # ratios of intensities or fractions of A-scans
    version = "1.2.0"
    criteria = ("S",)
    Params = SignalParams
    #: value name -> (unit, direction, meaning); drives the report and docs/measures.md
    values_doc = {
        "qi": ("", "higher is better", "Quality Index, median over sampled B-scans (Stein 2006)"),
        "qi_min": ("", "higher is better", "lowest B-scan QI"),
        "mtci": ("", "higher is better", "maximum tissue contrast index, median (Huang 2012)"),
        "mtci_c_dev": ("", "", "device constant used for mTCI"),
        "snr_db": ("dB", "higher is better", "10 log10(mean retina^2 / var vitreous)"),
        "peak_snr_db": (
            "dB",
            "higher is better",
            "P95 retina over the median of the positive vitreous values (a floor clipped at 0 "
            "by the device keeps its scale), linear estimate; grades S",
        ),
        "peak_snr_db_min": ("dB", "higher is better", "lowest B-scan peak SNR"),
        "intensity_map": ("", "", "linear estimate used for the peak SNR"),
        "cnr": (
            "",
            "higher is better",
            "|mu_ret - mu_bg| / sqrt(var_ret + var_bg), background = vitreous",
        ),
        "device_quality": (
            "device units",
            "higher is better",
            "the device's own quality value (mean)",
        ),
        "device_quality_kind": ("", "", "what device_quality means"),
    }

    def evaluate(self, ctx: ScanContext, params: SignalParams) -> Evaluation:  # type: ignore[override]
        scan = ctx.scan
        idx = sample_indices(scan.shape[0], params.max_bscans)
        c_dev = params.c_dev or _device_constant(scan.meta.device)
        valid = [valid_values(ctx.display[k]) for k in idx]
        qis = np.array([quality_index(v) for v in valid])
        mtcis = np.array([mtci(v, c_dev=c_dev) for v in valid])
        linear, lin_name = ctx.linear_and_name
        peaks = np.array([peak_snr_db(linear[k], ctx.retina[k], ctx.vitreous[k]) for k in idx])
        peak = float(np.nanmedian(peaks)) if np.isfinite(peaks).any() else float("nan")
        # Every B-scan sampled (the usual volume): the arrays themselves, not copies of them.
        every = idx.size == scan.shape[0]
        display, retina, vitreous = (
            (ctx.display, ctx.retina, ctx.vitreous)
            if every
            else (ctx.display[idx], ctx.retina[idx], ctx.vitreous[idx])
        )
        snr = snr_db(display, retina, vitreous)
        contrast = cnr(display, retina, vitreous)
        dq = [q for q in (scan.meta.device_quality or []) if q is not None]
        values: dict[str, object] = {
            "qi": float(np.nanmedian(qis)) if np.isfinite(qis).any() else None,
            "qi_min": float(np.nanmin(qis)) if np.isfinite(qis).any() else None,
            "mtci": float(np.nanmedian(mtcis)) if np.isfinite(mtcis).any() else None,
            "mtci_c_dev": c_dev,
            "snr_db": snr,
            "peak_snr_db": peak,
            "peak_snr_db_min": float(np.nanmin(peaks)) if np.isfinite(peaks).any() else None,
            "intensity_map": lin_name,
            "cnr": contrast,
            "device_quality": float(np.mean(dq)) if dq else None,
            "device_quality_kind": scan.meta.device_quality_kind,
        }
        if lin_name.startswith("display"):
            # Thresholds are calibrated on reflectivity; a vendor display map is not invertible.
            gradings = [
                not_applicable("S", f"peak SNR {peak:.1f} dB not graded: {lin_name} intensities")
            ]
        else:
            gradings = [
                grade(
                    "S",
                    "peak SNR",
                    peak,
                    graded_by="peak_snr_db",
                    warn=params.peak_snr_warn_db,
                    fail=params.peak_snr_fail_db,
                    higher_is_better=True,
                    unit=" dB",
                    source="phantom calibration",
                )
            ]
        kind = scan.meta.device_quality_kind or ""
        floor = DEVICE_FLOOR.get(kind)
        if dq and floor is not None:
            gradings.append(
                grade(
                    "S",
                    f"device quality ({kind})",
                    min(dq),
                    graded_by="device_quality",
                    warn=floor[0],
                    fail=floor[0],
                    higher_is_better=True,
                    source=floor[1],
                )
            )
        elif dq:
            gradings.append(
                not_applicable(
                    "S",
                    f"device quality {float(np.mean(dq)):.3g} ({kind or 'unknown kind'}) not "
                    "graded: no published floor for this device in OSCAR-IB",
                )
            )
        verdict = worst("S", gradings)
        skipped = [g.reason for g in gradings if g.verdict is Verdict.NOT_APPLICABLE]
        if skipped and verdict.verdict is not Verdict.NOT_APPLICABLE:
            verdict = verdict.model_copy(update={"reason": "; ".join([verdict.reason, *skipped])})
        return Evaluation(values, [verdict], self._picture(ctx, idx, peaks, params))

    def _picture(
        self, ctx: ScanContext, idx: np.ndarray, snrs: np.ndarray, params: SignalParams
    ) -> np.ndarray:
        k = ctx.centre_index
        rgb = bscan_with_layers(ctx, k)
        v = valid_values(ctx.display[k])
        hist, edges = np.histogram(v, bins=100, range=(0.0, 1.0))
        p1, p75, p99 = np.percentile(v, [1, 75, 99]) if v.size else (0, 0, 0)
        at = lambda x: float(x) * 99.0  # noqa: E731 - histogram bin position of a value
        hplot = pictures.plot(
            [(hist / max(hist.max(), 1), pictures.WHITE, "pdf")],
            title=f"histogram of B-scan {k} (display scale {ctx.scale_used})",
            vlines=[
                (at(p1), pictures.CYAN, "P1"),
                (at(p75), pictures.YELLOW, "P75"),
                (at(p99), pictures.RED, "P99"),
            ],
            ylim=(0, 1.05),
            xlabel="display intensity, 0 to 1",
            ylabel="relative count",
        )
        panels = [
            pictures.panel(
                crop_to_retina(rgb, ctx, k),
                f"B-scan {k}: retina between ILM (green) and BM (yellow)",
            ),
            hplot,
        ]
        if len(idx) > 1:
            panels.append(
                pictures.plot(
                    [(snrs, pictures.GREEN, "peak SNR dB")],
                    title="peak SNR per sampled B-scan",
                    xlabel="sampled B-scan",
                    ylabel="dB",
                    hlines=[
                        (
                            params.peak_snr_warn_db,
                            pictures.YELLOW,
                            f"warn {params.peak_snr_warn_db:g} dB",
                        ),
                        (
                            params.peak_snr_fail_db,
                            pictures.RED,
                            f"fail {params.peak_snr_fail_db:g} dB",
                        ),
                    ],
                )
            )
        return pictures.stack(panels, title="signal strength (OSCAR-IB S)")

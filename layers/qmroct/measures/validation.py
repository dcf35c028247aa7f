"""Validation of the suite on phantoms with injected defects, and on the real samples.

For each measure, its *probes* name the defect it must catch and the value that must respond
(oriented so that larger means worse). The sweep builds phantoms over severities and seeds,
segments them, runs the measures, and reports per measure:

- the response curve: the median probe value at each severity, which must be monotonic
  (non-decreasing; a dip smaller than the seed spread, the median absolute deviation across
  seeds, or 2% of the curve's span, is noise);
- the AUC of clean (severity 0) against **moderate** (severity 0.5) phantoms, Mann-Whitney;
  target >= 0.95;
- the cross-talk row: for every other defect at moderate severity, the fraction of phantoms
  the measure flags (warn or fail), against its rate on clean phantoms. Cross-talk that physics
  explains is listed in :data:`EXPECTED_CROSS_TALK`; anything else is reported as unexpected.

The real-sample check: the signal values must order the real scans of one device the way the
device's own quality values order them (the graded value, ``peak_snr_db``, must agree; the
others are reported).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from qmroct.measures.runner import run_suite
from qmroct.oct.phantom import DEFECTS, make_phantom
from qmroct.oct.segmentation import segment
from qmroct.results import MeasureOutput, Verdict

MODERATE = 0.5
#: The signal values compared with the device quality; the first grades OSCAR-IB S.
SIGNAL_VALUES = ("peak_snr_db", "snr_db", "qi", "mtci", "cnr")
#: Smaller B-scans are format fixtures (synthetic or shrunk), not real acquisitions.
MIN_REAL_SIDE = 128
FULL_SEVERITIES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
QUICK_SEVERITIES = (0.0, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Probe:
    measure: str
    defect: str
    value: str
    sign: float  # +1: larger is worse; -1: smaller is worse
    pattern: str = "volume"


PROBES: tuple[Probe, ...] = (
    Probe("signal", "low_signal", "peak_snr_db", -1),
    Probe("sharpness", "blur", "ilm_edge_width_um", +1),
    Probe("completeness", "cutoff_top", "cut_top_fraction", +1),
    Probe("completeness", "cutoff_bottom", "cut_bottom_fraction", +1),
    Probe("blink_motion", "blink", "blink_count", +1),
    Probe("blink_motion", "axial_motion", "axial_motion_um", +1),
    Probe("blink_motion", "lateral_motion", "lateral_motion_um", +1),
    Probe("centration", "decentration", "fovea_offset_um", +1),
    Probe("centration", "ring_offset", "ring_offset_ratio", +1, "ring"),
    Probe("segmentation", "layer_artefact", "subilm_gap_fraction", +1),
    Probe("illumination", "vignetting", "edge_centre_ratio", -1),
    Probe("illumination", "shadowing", "weakest_sector_deficit_db", +1),
    Probe("beam_placement", "tilt", "tilt_abs_max_deg", +1),
    Probe("pathology_flag", "oedema", "thickness_p95_um", +1),
)

#: Cross-talk that follows from the physics of the defect, not from a flaw of the measure.
EXPECTED_CROSS_TALK: dict[tuple[str, str], str] = {
    ("signal", "blink"): "a blink is a B-scan without signal",
    ("signal", "shadowing"): "a shadow removes signal from part of the scan",
    ("signal", "vignetting"): "vignetting removes signal at the edges",
    ("signal", "low_signal"): "own defect",
    ("illumination", "blink"): "a dark B-scan is the largest possible gain spread",
    ("illumination", "low_signal"): "the weakest sector sinks with the whole scan",
    ("illumination", "cutoff_top"): "cut retina leaves columns without retinal signal",
    ("illumination", "cutoff_bottom"): "cut retina leaves columns without retinal signal",
    ("blink_motion", "low_signal"): "noise lowers the similarity of neighbouring B-scans",
    ("blink_motion", "blur"): "blur changes ILM detection along the slow axis",
    ("blink_motion", "shadowing"): "a shadow moves the ILM found under it",
    ("completeness", "axial_motion"): "a saccade moves the retina towards an image edge",
    ("completeness", "tilt"): "a tilted retina reaches the image edge at one side",
    ("centration", "layer_artefact"): "a wrong ILM makes a wrong thickness map, so a wrong fovea",
    ("centration", "lateral_motion"): "a lateral saccade moves the fovea within the scan",
    ("centration", "cutoff_top"): "the thickness map loses the cut part",
    ("segmentation", "blink"): "no retina to segment in a blink",
    ("segmentation", "low_signal"): "segmentation degrades with signal",
    ("segmentation", "shadowing"): "no edge under a dense shadow",
    ("segmentation", "cutoff_top"): "the ILM is outside the image",
    ("segmentation", "cutoff_bottom"): "BM is outside the image",
    ("segmentation", "blur"): "a blurred ILM loses its edge",
    ("segmentation", "ring_offset"): "an off-centre ring crosses the disc rim, where layers end",
    ("segmentation", "decentration"): "a decentred macular scan reaches the disc",
    ("completeness", "blink"): "the segmentation of a blink B-scan lands on the image edge",
    ("centration", "blink"): "a blink removes B-scans from the thickness map",
    ("beam_placement", "shadowing"): "a shadow on one side unbalances the ONL",
    ("beam_placement", "vignetting"): "uneven illumination unbalances the ONL",
    ("beam_placement", "decentration"): "an off-centre fovea puts the thick ONL on one side",
    ("beam_placement", "layer_artefact"): "a wrong ILM shifts the ONL band",
    ("centration", "oedema"): "fluid fills the foveal pit, so the thickness minimum that "
    "locates the fovea wanders (AURA's method assumes a pit)",
    ("pathology_flag", "cutoff_top"): "cut retina reads thin",
    ("pathology_flag", "cutoff_bottom"): "cut retina reads thin",
    ("pathology_flag", "blink"): "no thickness in a blink",
    ("sharpness", "low_signal"): "noise flattens the mean ILM edge",
}


class MeasureValidation(BaseModel):
    measure: str
    probes: list[dict] = Field(default_factory=list)
    auc: float | None = Field(None, description="lowest AUC of its probes, clean vs moderate")
    monotonic: bool | None = None
    clean_flag_rate: float | None = None
    cross_talk: dict[str, float] = Field(
        default_factory=dict, description="defect -> fraction flagged at moderate severity"
    )
    expected_cross_talk: dict[str, str] = Field(default_factory=dict)
    unexpected_cross_talk: list[str] = Field(default_factory=list)
    note: str = ""


class OrderingCheck(BaseModel):
    kind: str
    scans: list[dict]
    agrees: dict[str, bool]


def auc(clean: Iterable[float], defect: Iterable[float]) -> float:
    """P(defect scores worse than clean) + 0.5 P(tie): the Mann-Whitney AUC."""
    c = np.asarray([v for v in clean if np.isfinite(v)], float)
    d = np.asarray([v for v in defect if np.isfinite(v)], float)
    if c.size == 0 or d.size == 0:
        return float("nan")
    greater = (d[:, None] > c[None, :]).sum()
    ties = (d[:, None] == c[None, :]).sum()
    return float((greater + 0.5 * ties) / (c.size * d.size))


def is_monotonic(
    medians: list[float], spreads: list[float] | None = None, tolerance: float = 0.02
) -> bool:
    """Non-decreasing, allowing a dip smaller than the seed spread at either severity (the
    median absolute deviation across seeds) or ``tolerance`` times the span of the curve."""
    m = np.asarray(medians, float)
    if not np.all(np.isfinite(m)):
        return False
    span = float(m.max() - m.min())
    sp = np.zeros_like(m) if spreads is None else np.nan_to_num(np.asarray(spreads, float))
    allowed = np.maximum(tolerance * span, np.maximum(sp[:-1], sp[1:])) + 1e-12
    return bool(np.all(np.diff(m) >= -allowed))


def _mad(values: list[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    return float(np.median(np.abs(v - np.median(v)))) if v.size else 0.0


def _score(out: MeasureOutput, probe: Probe) -> float:
    v = out.values.get(probe.value)
    return probe.sign * float(v) if isinstance(v, int | float) else float("nan")


def _flagged(out: MeasureOutput) -> bool:
    return any(v.verdict in (Verdict.WARN, Verdict.FAIL) for v in out.verdicts)


def _run(job: tuple[str, tuple[tuple[str, float], ...], int, tuple[str, ...] | None]):
    pattern, defects, seed, only = job
    scan, _, _ = make_phantom(pattern, defects=dict(defects) or None, seed=seed)
    run = run_suite(scan, only=list(only) if only else None, segmentation=segment(scan))
    for o in run.outputs:
        o.picture_png = None  # pictures are not compared; do not ship them between processes
    return {o.measure: o for o in run.outputs}


def _run_all(jobs: list, workers: int) -> list[dict[str, MeasureOutput]]:
    if workers <= 1:
        return [_run(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        return list(pool.map(_run, jobs, chunksize=2))


def sweep(
    *,
    quick: bool = False,
    seeds: int | None = None,
    severities: tuple[float, ...] | None = None,
    cross_talk: bool = True,
    measures: list[str] | None = None,
    workers: int | None = None,
) -> dict[str, MeasureValidation]:
    """Run the phantom sweep; return one :class:`MeasureValidation` per measure."""
    import os

    sev = severities or (QUICK_SEVERITIES if quick else FULL_SEVERITIES)
    if MODERATE not in sev:
        sev = tuple(sorted({*sev, MODERATE}))
    n_seeds = seeds or (3 if quick else 8)
    probes = [p for p in PROBES if not measures or p.measure in measures]
    names = sorted({p.measure for p in probes} | set(measures or ()))
    if cross_talk and not measures:
        names = sorted({*names, "pathology_flag"})
    only = tuple(names) if measures else None
    pattern_of = {p.defect: p.pattern for p in PROBES}
    own_defects = {p.defect for p in probes}
    defects = sorted(own_defects | (set(DEFECTS) if cross_talk else set()))
    patterns = sorted({p.pattern for p in probes} | {"volume"})
    keys: list[tuple[str, str, float]] = [(pat, "", 0.0) for pat in patterns]
    for d in defects:
        for s_ in sev[1:] if d in own_defects else (MODERATE,):
            keys.append((pattern_of.get(d, "volume"), d, s_))
    jobs = [
        (pat, ((d, s_),) if d else (), seed, only) for pat, d, s_ in keys for seed in range(n_seeds)
    ]
    outs = _run_all(jobs, workers or min(os.cpu_count() or 1, 4))
    grouped = {key: outs[i * n_seeds : (i + 1) * n_seeds] for i, key in enumerate(keys)}
    clean = {pat: grouped[(pat, "", 0.0)] for pat in patterns}
    runs = {(d, s_): grouped[(pat, d, s_)] for pat, d, s_ in keys if d}
    result: dict[str, MeasureValidation] = {}
    for name in names:
        mv = MeasureValidation(measure=name)
        aucs, monos = [], []
        for p in (p for p in probes if p.measure == name):
            base = [_score(r[name], p) for r in clean[p.pattern]]
            curve, spread = [float(np.nanmedian(base))], [_mad(base)]
            for s in sev[1:]:
                vals = [_score(r[name], p) for r in runs[(p.defect, s)]]
                curve.append(float(np.nanmedian(vals)))
                spread.append(_mad(vals))
            a = auc(base, [_score(r[name], p) for r in runs[(p.defect, MODERATE)]])
            mono = is_monotonic(curve, spread)
            aucs.append(a)
            monos.append(mono)
            mv.probes.append(
                {
                    "defect": p.defect,
                    "value": p.value,
                    "direction": "larger is worse" if p.sign > 0 else "smaller is worse",
                    "severities": list(sev),
                    "response": [p.sign * v for v in curve],
                    "auc": a,
                    "monotonic": mono,
                }
            )
        if aucs:
            mv.auc = float(np.nanmin(aucs))
            mv.monotonic = all(monos)
        else:
            mv.note = "no phantom defect for this letter: AUC not defined (flag for a human)"
        if cross_talk:
            vol_clean = clean["volume"]
            mv.clean_flag_rate = float(np.mean([_flagged(r[name]) for r in vol_clean]))
            own = {p.defect for p in probes if p.measure == name}
            for d in DEFECTS:
                if d in own or (d, MODERATE) not in runs:
                    continue
                rate = float(np.mean([_flagged(r[name]) for r in runs[(d, MODERATE)]]))
                mv.cross_talk[d] = rate
                if rate - mv.clean_flag_rate >= 0.5:
                    why = EXPECTED_CROSS_TALK.get((name, d))
                    if why:
                        mv.expected_cross_talk[d] = why
                    else:
                        mv.unexpected_cross_talk.append(d)
        result[name] = mv
    return result


def ordering_on_samples(root: Path) -> list[OrderingCheck]:
    """Compare the signal values with the device quality on the real samples, per device kind."""
    from qmroct.errors import QmroctError
    from qmroct.oct.readers import read_scan

    rows: dict[str, list[dict]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() != ".md"):
        try:
            scan = read_scan(path, name=path.name)
        except (QmroctError, ValueError):
            continue
        q = [v for v in (scan.meta.device_quality or []) if v is not None]
        if not q or not scan.meta.device_quality_kind or min(scan.shape[1:]) < MIN_REAL_SIDE:
            continue
        out = run_suite(scan, only=["signal"]).outputs[0]
        rows.setdefault(scan.meta.device_quality_kind, []).append(
            {
                "scan": str(path.relative_to(root)),
                "device_quality": float(np.mean(q)),
                **{k: out.values.get(k) for k in SIGNAL_VALUES},
            }
        )
    checks = []
    for kind, scans in rows.items():
        if len(scans) < 2:
            checks.append(OrderingCheck(kind=kind, scans=scans, agrees={}))
            continue
        order = np.argsort([s["device_quality"] for s in scans])
        agrees = {}
        for key in SIGNAL_VALUES:
            vals = [s[key] if s[key] is not None else np.nan for s in scans]
            agrees[key] = bool(np.all(np.diff(np.asarray(vals, float)[order]) > 0))
        checks.append(OrderingCheck(kind=kind, scans=scans, agrees=agrees))
    return checks

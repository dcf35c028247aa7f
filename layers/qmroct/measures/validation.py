"""Validation of the suite on phantoms with injected defects, and on the real samples.

For each measure, its *probes* name the defect it must catch and the value that must respond
(oriented so that larger means worse). The sweep builds phantoms over severities and seeds,
segments them, runs the measures, and reports per measure:

- the response curve: the median probe value at each severity, which must be monotonic
  (non-decreasing; a dip smaller than the seed spread, the median absolute deviation across
  seeds, or 2% of the curve's span, is noise);
- the AUC of clean (severity 0) against phantoms at the defect's **fail severity** (where an
  OSCAR-IB grader would call a fail, :data:`GRADER_SEVERITY`, each with its reason), Mann-Whitney,
  with a 95% stratified bootstrap confidence interval; target >= 0.9. Every phantom seed is a
  different healthy eye (:class:`qmroct.oct.phantom.Anatomy`), so the clean values spread as
  real eyes do;
- severity sweeps start where a grader would notice the defect, not at an invisible 0.1;
- the cross-talk row: for every other defect at moderate severity, the fraction of phantoms
  the measure flags (warn or fail), against its rate on clean phantoms. Cross-talk that physics
  explains is listed in :data:`EXPECTED_CROSS_TALK`; anything else is reported as unexpected.

The checks on real samples (repeat pairs, S ordering, leave-one-out) are in
:mod:`qmroct.measures.real_samples`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from qmroct.measures.runner import run_suite
from qmroct.oct.phantom import DEFECTS, make_phantom
from qmroct.oct.segmentation import segment
from qmroct.results import MeasureOutput, Verdict

MODERATE = 0.5
BOOTSTRAP = 2000
FULL_SEVERITIES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
QUICK_SEVERITIES = (0.0, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class GraderSeverity:
    """Where a grader first notices a defect and where they would call the letter failed."""

    notice: float
    fail: float
    why: str


#: Per defect, the severities (see qmroct.oct.phantom.DEFECT_DOCS for the physical units) at
#: which an OSCAR-IB grader notices the defect and fails the scan, and why.
GRADER_SEVERITY: dict[str, GraderSeverity] = {
    "low_signal": GraderSeverity(
        0.25,
        0.5,
        "10 dB loss: healthy Spectralis scans have Q 25-35 dB (Balk et al., PLoS One "
        "2012), so 10 dB brings a good scan to the Q 15 dB floor of OSCAR-IB S",
    ),
    "blur": GraderSeverity(
        0.25,
        0.5,
        "a defocus PSF of sigma 1.75 px merges the thin OPL/ELM bands: poor focus, OSCAR-IB O",
    ),
    "decentration": GraderSeverity(
        0.1,
        0.2,
        "200 um: thickness errors become significant (Pak et al., IOVS 2013)",
    ),
    "ring_offset": GraderSeverity(
        0.3,
        0.6,
        "ring offset 15% of the disc noticed (OCTolyzer), 30% fails: RNFL errors "
        "beyond test-retest (Gabriele et al., IOVS 2008)",
    ),
    "tilt": GraderSeverity(
        0.5,
        1.0,
        "12 degrees: thickness errors exceed 5% from 13 degrees (Uji et al., TVST 2017)",
    ),
    "cutoff_top": GraderSeverity(
        0.1,
        0.25,
        "any retina outside the image fails OSCAR-IB O; 15 um over a stretch of "
        "A-scans is what a grader sees",
    ),
    "cutoff_bottom": GraderSeverity(
        0.1,
        0.25,
        "any retina outside the image fails OSCAR-IB O; 15 um over a stretch of "
        "A-scans is what a grader sees",
    ),
    "blink": GraderSeverity(0.1, 0.1, "one missing B-scan already fails OSCAR-IB O"),
    "axial_motion": GraderSeverity(
        0.25,
        0.5,
        "a 75 um axial step, several layer thicknesses, breaks the volume's surface",
    ),
    "lateral_motion": GraderSeverity(
        0.25,
        0.5,
        "200 um of repeated or skipped tissue, more than a major vessel's width",
    ),
    "vignetting": GraderSeverity(
        0.5,
        0.75,
        "edge A-scans about 5 dB darker: edge layers lost in noise (OSCAR-IB I)",
    ),
    "shadowing": GraderSeverity(
        0.5,
        0.75,
        "a shadow of about 5 dB over a fifth of the scan hides the layers under it",
    ),
    "layer_artefact": GraderSeverity(
        0.1,
        0.25,
        "a segmentation off its border over a third of the width fails OSCAR-IB A",
    ),
    "oedema": GraderSeverity(
        0.1,
        0.25,
        "37% thickening, far beyond the +-16% (2 SD) normal central thickness "
        "(Grover et al., Ophthalmology 2009): pathology for OSCAR-IB R",
    ),
    "drusen": GraderSeverity(
        0.1,
        0.25,
        "drusen over 125 um wide are large drusen, the sign of intermediate AMD (Beckman "
        "classification, Ferris et al., Ophthalmology 2013): pathology for OSCAR-IB R",
    ),
    "macular_hole": GraderSeverity(
        0.1,
        0.25,
        "a full-thickness hole of about 260 um, a medium hole (IVTS, Duker et al., "
        "Ophthalmology 2013); any full-thickness hole is pathology for OSCAR-IB R",
    ),
}


def probe_severities(defect: str, quick: bool) -> tuple[float, ...]:
    """0, then from where a grader notices the defect up to 1."""
    g = GRADER_SEVERITY[defect]
    steps = (
        (g.notice, g.fail, 1.0) if quick else (g.notice, (g.notice + g.fail) / 2, g.fail, 0.75, 1.0)
    )
    return (0.0, *sorted({round(v, 3) for v in steps if v >= g.notice}))


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
    Probe("pathology_flag", "oedema", "fluid_fraction", +1),
    Probe("pathology_flag", "drusen", "drusen_height_um", +1),
    # The small volume's B-scans pass 200 um either side of the fovea, so a line through it.
    Probe("pathology_flag", "macular_hole", "hole_width_um", +1, "line"),
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
    auc: float | None = Field(
        None, description="lowest AUC of its probes, clean against the fail severity"
    )
    auc_ci95: tuple[float, float] | None = Field(
        None,
        description="95% distribution-free interval of that AUC (auc_ci_exact; informative at "
        "perfect separation)",
    )
    auc_ci95_bootstrap: tuple[float, float] | None = Field(
        None, description="95% stratified bootstrap interval of that AUC (collapses at 1)"
    )
    fail_severity: float | None = Field(None, description="severity of that probe's AUC")
    monotonic: bool | None = None
    clean_flag_rate: float | None = None
    cross_talk: dict[str, float] = Field(
        default_factory=dict, description="defect -> fraction flagged at its fail severity"
    )
    expected_cross_talk: dict[str, str] = Field(default_factory=dict)
    unexpected_cross_talk: list[str] = Field(default_factory=list)
    note: str = ""


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


#: One phantom to grade: pattern, ((defect, severity),), seed, measures (None: all), repeat.
Job = tuple[str, tuple[tuple[str, float], ...], int, "tuple[str, ...] | None", int]


def _run(job: Job) -> dict[str, MeasureOutput]:
    pattern, defects, seed, only, repeat = job
    scan, _, _ = make_phantom(pattern, defects=dict(defects) or None, seed=seed, repeat=repeat)
    run = run_suite(scan, only=list(only) if only else None, segmentation=segment(scan), png=False)
    for o in run.outputs:
        # Pictures are not compared; do not ship their pixels between processes.
        o.picture_png = o.picture_rgb = None
    return {o.measure: o for o in run.outputs}


def default_workers(quick: bool = False) -> int:
    """One process per core for a full sweep; in process for --quick (tests run it, and a
    pool's start-up is not worth it for a hundred phantoms)."""
    import os

    return 1 if quick else max(1, os.cpu_count() or 1)


def _run_all(
    jobs: list[Job], workers: int, progress: Callable[[int, int], None] | None = None
) -> list[dict[str, MeasureOutput]]:
    """Grade every job, in order of ``jobs`` whatever order they finish in. Each phantom is
    made and graded from its job alone, so a pool gives the same outputs as one process."""
    out: list[dict[str, MeasureOutput] | None] = [None] * len(jobs)
    if workers <= 1 or len(jobs) <= 1:
        for i, j in enumerate(jobs):
            out[i] = _run(j)
            if progress:
                progress(i + 1, len(jobs))
        return out  # type: ignore[return-value]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        futures = {pool.submit(_run, j): i for i, j in enumerate(jobs)}
        for done, f in enumerate(as_completed(futures), 1):
            out[futures[f]] = f.result()
            if progress:
                progress(done, len(jobs))
    return out  # type: ignore[return-value]


def auc_ci(
    clean: Iterable[float], defect: Iterable[float], *, n_boot: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the AUC by stratified bootstrap (clean and defect phantoms
    resampled separately, as they were drawn separately). With perfect separation every
    resample separates too, so the interval collapses to [1, 1]: it then says only that no
    resample overlapped (:func:`auc_ci_exact` does not collapse)."""
    c = np.asarray([v for v in clean if np.isfinite(v)], float)
    d = np.asarray([v for v in defect if np.isfinite(v)], float)
    if c.size == 0 or d.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ci = rng.integers(0, c.size, (n_boot, c.size))
    di = rng.integers(0, d.size, (n_boot, d.size))
    cs, ds = c[ci], d[di]
    greater = (ds[:, :, None] > cs[:, None, :]).sum(axis=(1, 2))
    ties = (ds[:, :, None] == cs[:, None, :]).sum(axis=(1, 2))
    boot = (greater + 0.5 * ties) / (c.size * d.size)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def auc_ci_exact(a: float, n_clean: int, n_defect: int, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval of the AUC ``a`` of ``n_clean`` against ``n_defect``
    phantoms that stays informative at perfect separation: the Clopper-Pearson interval of a
    proportion ``a`` on ``N = min(n_clean, n_defect)`` trials.

    Why N trials: Birnbaum and Klose (Ann. Math. Statist. 28, 1957) bound the variance of the
    Mann-Whitney estimate of P(defect ranks worse) by ``A (1 - A) / min(m, n)`` over all
    continuous distributions, the variance of a proportion on ``min(m, n)`` trials (see also
    Bamber, J. Math. Psychol. 12, 1975, on the AUC as that statistic). The ``m x n`` pairs are
    not independent trials (every clean eye sits in ``n`` of them), so a Clopper-Pearson bound
    on ``m n`` pairs would be far too narrow. At ``a = 1`` the lower end is
    ``(alpha / 2) ** (1 / N)``, and that is attained: if a fraction ``1 - A`` of defect eyes
    ranked below every clean eye and the rest above, the AUC would be ``A`` and ``N`` defect
    eyes would all rank above with probability ``A ** N``. DeLong's (Biometrics 1988) and
    Hanley and McNeil's (Radiology 1982) standard errors are both 0 at perfect separation, so
    their intervals collapse as the bootstrap does. The interval is conservative elsewhere
    (the variance bound is the largest possible); read the bootstrap next to it.
    """
    from scipy.stats import beta

    n = min(int(n_clean), int(n_defect))
    if n <= 0 or not np.isfinite(a):
        return float("nan"), float("nan")
    alpha = 1.0 - level
    x = float(a) * n  # successes; not always whole with ties or unequal sizes
    lo = 0.0 if x <= 0 else float(beta.ppf(alpha / 2, x, n - x + 1))
    hi = 1.0 if x >= n else float(beta.ppf(1 - alpha / 2, x + 1, n - x))
    return lo, hi


@dataclass(frozen=True)
class _SweepPlan:
    """The phantoms of a sweep: per key (pattern, defect, severity; defect "" for clean) the
    jobs of its seeds, in order."""

    keys: list[tuple[str, str, float]]
    jobs: list[Job]
    n_seeds: int
    names: list[str]
    probes: list[Probe]
    severities: dict[str, tuple[float, ...]]
    cross_talk: bool


def _plan_sweep(
    quick: bool,
    seeds: int | None,
    severities: tuple[float, ...] | None,
    cross_talk: bool,
    measures: list[str] | None,
) -> _SweepPlan:
    n_seeds = seeds or (6 if quick else 16)
    probes = [p for p in PROBES if not measures or p.measure in measures]
    names = sorted({p.measure for p in probes} | set(measures or ()))
    if cross_talk and not measures:
        names = sorted({*names, "pathology_flag"})
    only = tuple(names) if measures else None
    pattern_of = {p.defect: p.pattern for p in PROBES}
    own_defects = {p.defect for p in probes}

    def sevs(defect: str) -> tuple[float, ...]:
        fail = GRADER_SEVERITY[defect].fail
        if severities:
            return tuple(sorted({0.0, *severities, fail}))
        return tuple(sorted({*probe_severities(defect, quick), fail}))

    defects = sorted(own_defects | (set(DEFECTS) if cross_talk else set()))
    patterns = sorted({p.pattern for p in probes} | {"volume"})
    keys: list[tuple[str, str, float]] = [(pat, "", 0.0) for pat in patterns]
    for d in defects:
        for s_ in sevs(d)[1:] if d in own_defects else (GRADER_SEVERITY[d].fail,):
            keys.append((pattern_of.get(d, "volume"), d, s_))
    jobs: list[Job] = [
        (pat, ((d, s_),) if d else (), seed, only, 0)
        for pat, d, s_ in keys
        for seed in range(n_seeds)
    ]
    return _SweepPlan(
        keys, jobs, n_seeds, names, probes, {d: sevs(d) for d in own_defects}, cross_talk
    )


def _summarise_sweep(
    plan: _SweepPlan, outs: list[dict[str, MeasureOutput]]
) -> dict[str, MeasureValidation]:
    n_seeds, probes, cross_talk = plan.n_seeds, plan.probes, plan.cross_talk
    grouped = {key: outs[i * n_seeds : (i + 1) * n_seeds] for i, key in enumerate(plan.keys)}
    clean = {pat: grouped[(pat, d, s_)] for pat, d, s_ in plan.keys if not d}
    runs = {(d, s_): grouped[(pat, d, s_)] for pat, d, s_ in plan.keys if d}
    result: dict[str, MeasureValidation] = {}
    for name in plan.names:
        mv = MeasureValidation(measure=name)
        aucs, monos = [], []
        for p in (p for p in probes if p.measure == name):
            sev = plan.severities[p.defect]
            fail = GRADER_SEVERITY[p.defect].fail
            base = [_score(r[name], p) for r in clean[p.pattern]]
            curve, spread = [float(np.nanmedian(base))], [_mad(base)]
            for s in sev[1:]:
                vals = [_score(r[name], p) for r in runs[(p.defect, s)]]
                curve.append(float(np.nanmedian(vals)))
                spread.append(_mad(vals))
            at_fail = [_score(r[name], p) for r in runs[(p.defect, fail)]]
            a = auc(base, at_fail)
            n_c, n_d = int(np.isfinite(base).sum()), int(np.isfinite(at_fail).sum())
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
                    "fail_severity": fail,
                    "fail_severity_why": GRADER_SEVERITY[p.defect].why,
                    "notice_severity": GRADER_SEVERITY[p.defect].notice,
                    "auc": a,
                    "auc_ci95": list(auc_ci_exact(a, n_c, n_d)),
                    "auc_ci95_bootstrap": list(auc_ci(base, at_fail)),
                    "n_clean": n_c,
                    "n_defect": n_d,
                    "monotonic": mono,
                }
            )
        if aucs:
            k = int(np.nanargmin(aucs))
            mv.auc = float(aucs[k])
            mv.auc_ci95 = tuple(mv.probes[k]["auc_ci95"])  # type: ignore[assignment]
            mv.auc_ci95_bootstrap = tuple(mv.probes[k]["auc_ci95_bootstrap"])  # type: ignore[assignment]
            mv.fail_severity = mv.probes[k]["fail_severity"]
            mv.monotonic = all(monos)
        else:
            mv.note = "no phantom defect for this letter: AUC not defined (flag for a human)"
        if cross_talk:
            vol_clean = clean["volume"]
            mv.clean_flag_rate = float(np.mean([_flagged(r[name]) for r in vol_clean]))
            own = {p.defect for p in probes if p.measure == name}
            for d in DEFECTS:
                at = (d, GRADER_SEVERITY[d].fail)
                if d in own or at not in runs:
                    continue
                rate = float(np.mean([_flagged(r[name]) for r in runs[at]]))
                mv.cross_talk[d] = rate
                if rate - mv.clean_flag_rate >= 0.5:
                    why = EXPECTED_CROSS_TALK.get((name, d))
                    if why:
                        mv.expected_cross_talk[d] = why
                    else:
                        mv.unexpected_cross_talk.append(d)
        result[name] = mv
    return result


def sweep(
    *,
    quick: bool = False,
    seeds: int | None = None,
    severities: tuple[float, ...] | None = None,
    cross_talk: bool = True,
    measures: list[str] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, MeasureValidation]:
    """Run the phantom sweep; return one :class:`MeasureValidation` per measure.

    Each probe sweeps its own severities (:func:`probe_severities`), or ``severities`` when
    given, always with the defect's fail severity; cross-talk is taken at each other defect's
    fail severity. ``progress(done, total)`` is called as phantoms finish. ``workers``
    processes (default :func:`default_workers`) give the same result as one.
    """
    result, _ = validate_phantoms(
        quick=quick,
        seeds=seeds,
        severities=severities,
        cross_talk=cross_talk,
        measures=measures,
        retest_eyes=0,
        workers=workers,
        progress=progress,
    )
    return result


#: Repeat scans differ by under 10% on every value that grades a letter (issue #14).
RETEST_LIMIT = 0.10


class RetestAtNotice(BaseModel):
    """Repeats of eyes with a defect at the severity where a grader notices it."""

    defect: str
    severity: float
    max_relative_difference: float
    max_abs_difference: float
    eyes: int


class RetestRow(BaseModel):
    letter: str
    graded_by: str
    max_relative_difference: float = Field(description="largest over the eyes")
    median_relative_difference: float
    max_abs_difference: float = Field(0.0, description="largest |a - b|, in the value's units")
    eyes: int
    noise_floor: bool = Field(
        False,
        description="every eye's two values lie under the warn threshold: the relative "
        "difference is then taken over the threshold and measures the value's noise floor",
    )
    at_notice: RetestAtNotice | None = Field(
        None,
        description="for a value at its floor with more than the limit: the same on eyes with "
        "its probe's defect at the severity a grader notices, where the verdict is decided",
    )
    within_limit: bool | None = Field(
        None, description="under RETEST_LIMIT where it counts; None: no way to tell on phantoms"
    )
    note: str = ""


def relative_difference(a: float, b: float, warn: float | None = None) -> float:
    """|a - b| over their mean magnitude, or over the warn threshold when the values sit below
    it: a fovea 10 um off in one scan and 25 um in the other agree as far as grading goes
    (both far under the 100 um warning), though one is 2.5 times the other. 0 when a = b."""
    scale = max((abs(a) + abs(b)) / 2.0, abs(warn or 0.0))
    return 0.0 if scale == 0 else abs(a - b) / scale


RETEST_PATTERNS = ("volume", "ring", "line")


def _retest_jobs(patterns: tuple[str, ...], eyes: int) -> list[Job]:
    """Per pattern and eye, the scan and its repeat (repeat 0 is the eye's clean phantom, the
    same job as the sweep's, so a combined run grades it once)."""
    return [(pat, (), seed, None, r) for pat in patterns for seed in range(eyes) for r in (0, 1)]


def _summarise_retest(
    patterns: tuple[str, ...], eyes: int, outs: list[dict[str, MeasureOutput]]
) -> dict[str, list[RetestRow]]:
    from qmroct.measures.suite import oscar_ib_summary

    out: dict[str, list[RetestRow]] = {}
    it = iter(outs)
    for pattern in patterns:
        pairs: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
        for _ in range(eyes):
            s0, s1 = (oscar_ib_summary(list(next(it).values())) for _ in (0, 1))
            for letter, v in s0.letters.items():
                g0, g1 = v.gradings, s1.letters[letter].gradings
                for key in dict.fromkeys([*g0, *g1]):
                    a = g0[key].value if key in g0 else None
                    b = g1[key].value if key in g1 else None
                    if a is not None and b is not None:
                        th = (g0.get(key) or g1[key]).thresholds
                        pairs.setdefault((letter, key), []).append((a, b, th[0] if th else None))
        rows = []
        for (letter, by), ps in sorted(pairs.items()):
            d = [relative_difference(a, b, w) for a, b, w in ps]
            floor = all(w is not None and max(abs(a), abs(b)) < abs(w) for a, b, w in ps)
            rows.append(
                RetestRow(
                    letter=letter,
                    graded_by=by,
                    max_relative_difference=float(np.max(d)),
                    median_relative_difference=float(np.median(d)),
                    max_abs_difference=float(max(abs(a - b) for a, b, _ in ps)),
                    eyes=len(d),
                    noise_floor=floor,
                    within_limit=bool(np.max(d) < RETEST_LIMIT) if not floor else None,
                )
            )
        out[pattern] = rows
    return out


def _notice_probe(row: RetestRow) -> Probe | None:
    """The probe whose value grades ``row``, when its clean repeats sit at their floor over
    the limit (so its repeatability must be read where the defect shows)."""
    if not row.noise_floor or row.max_relative_difference < RETEST_LIMIT:
        return None
    measure, _, value = row.graded_by.partition(".")
    return next((p for p in PROBES if p.measure == measure and p.value == value), None)


def _notice_jobs(repeats: dict[str, list[RetestRow]], eyes: int) -> list[Job]:
    jobs: list[Job] = []
    for pattern, rows in repeats.items():
        for row in rows:
            p = _notice_probe(row)
            if p is None:
                continue
            at = ((p.defect, GRADER_SEVERITY[p.defect].notice),)
            jobs += [(pattern, at, seed, None, r) for seed in range(eyes) for r in (0, 1)]
    return list(dict.fromkeys(jobs))


def _judge_floor(
    repeats: dict[str, list[RetestRow]], eyes: int, graded: dict[Job, dict[str, MeasureOutput]]
) -> None:
    """Settle the rows at their floor: a relative difference over the warn threshold there
    measures the floor statistic (a maximum over sub-pixel registrations, a count of one or two
    A-scans), not the noise where the verdict is decided. Such a row is judged on repeats of
    eyes with its probe's defect at the severity a grader notices (near the warn threshold);
    without a probe, its absolute repeatability is what is reported."""
    for pattern, rows in repeats.items():
        for row in rows:
            if not row.noise_floor:
                continue
            p = _notice_probe(row)
            if row.max_relative_difference < RETEST_LIMIT:
                row.within_limit = True
                continue
            if p is None:
                row.note = (
                    f"at its floor on clean eyes (both under the warn threshold); absolute "
                    f"repeatability {row.max_abs_difference:.4g}; no phantom defect raises it to "
                    "the threshold"
                )
                continue
            sev = GRADER_SEVERITY[p.defect].notice
            rel, ab = [], []
            for seed in range(eyes):
                a, b = (
                    _graded(graded[(pattern, ((p.defect, sev),), seed, None, r)], row)
                    for r in (0, 1)
                )
                if a is not None and b is not None:
                    rel.append(relative_difference(a[0], b[0], a[1] if a[1] is not None else b[1]))
                    ab.append(abs(a[0] - b[0]))
            if not rel:
                continue
            row.at_notice = RetestAtNotice(
                defect=p.defect,
                severity=sev,
                max_relative_difference=float(max(rel)),
                max_abs_difference=float(max(ab)),
                eyes=len(rel),
            )
            row.within_limit = row.at_notice.max_relative_difference < RETEST_LIMIT
            row.note = (
                f"at its floor on clean eyes (absolute repeatability "
                f"{row.max_abs_difference:.4g}); with {p.defect} at {sev:g}, where a grader "
                f"notices it: {row.at_notice.max_relative_difference:.1%}"
            )


def _graded(outputs: dict[str, MeasureOutput], row: RetestRow) -> tuple[float, float | None] | None:
    """The value ``row`` follows as graded into its letter, and its warn threshold."""
    from qmroct.measures.suite import oscar_ib_summary

    letter = oscar_ib_summary(list(outputs.values())).letters.get(row.letter)
    g = letter.gradings.get(row.graded_by) if letter else None
    if g is None or g.value is None:
        return None
    return float(g.value), (float(g.thresholds[0]) if g.thresholds else None)


def retest(
    *,
    patterns: tuple[str, ...] = RETEST_PATTERNS,
    eyes: int = 4,
    workers: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[RetestRow]]:
    """Repeat scans of the same phantom eyes (same anatomy, new speckle and noise): per pattern
    and letter, how much each value graded into the letter (its ``gradings``, in either scan)
    differs between the two scans."""
    _, repeats = validate_phantoms(
        with_sweep=False,
        retest_eyes=eyes,
        retest_patterns=patterns,
        workers=workers,
        progress=progress,
    )
    return repeats


def validate_phantoms(
    *,
    quick: bool = False,
    seeds: int | None = None,
    severities: tuple[float, ...] | None = None,
    cross_talk: bool = True,
    measures: list[str] | None = None,
    retest_eyes: int = 0,
    retest_patterns: tuple[str, ...] = RETEST_PATTERNS,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    with_sweep: bool = True,
) -> tuple[dict[str, MeasureValidation], dict[str, list[RetestRow]]]:
    """The sweep (:func:`sweep`; skipped with ``with_sweep=False``) and the phantom
    test-retest (:func:`retest`, on ``retest_eyes`` eyes; none when 0) in one run: every
    distinct phantom is graded once (the retest's first scans are the sweep's clean eyes), over
    ``workers`` processes. Values at their floor over the limit are then re-tested where their
    defect shows (:func:`_judge_floor`)."""
    plan = _plan_sweep(quick, seeds, severities, cross_talk, measures)
    n_workers = default_workers(quick) if workers is None else workers
    graded: dict[Job, dict[str, MeasureOutput]] = {}

    def grade_all(jobs: list[Job]) -> list[dict[str, MeasureOutput]]:
        todo = [j for j in dict.fromkeys(jobs) if j not in graded]
        graded.update(zip(todo, _run_all(todo, n_workers, progress), strict=True))
        return [graded[j] for j in jobs]

    r_jobs = _retest_jobs(retest_patterns, retest_eyes) if retest_eyes else []
    s_jobs = plan.jobs if with_sweep else []
    outs = grade_all(s_jobs + r_jobs)
    result = _summarise_sweep(plan, outs[: len(s_jobs)]) if with_sweep else {}
    repeats: dict[str, list[RetestRow]] = {}
    if retest_eyes:
        repeats = _summarise_retest(retest_patterns, retest_eyes, outs[len(s_jobs) :])
        grade_all(_notice_jobs(repeats, retest_eyes))
        _judge_floor(repeats, retest_eyes, graded)
    return result, repeats

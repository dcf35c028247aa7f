"""Checks of the suite on the real samples: repeat pairs, S ordering, leave-one-out.

Nothing here tunes the suite: every threshold and every graded value comes from a citation or
from phantoms (see :mod:`qmroct.measures.validation`). The real files then *check*:

- **test-retest**: repeat scans are found by what the files say (:func:`repeat_reason`); per
  letter, every value graded into it (its ``gradings``) must agree between the two scans
  within :data:`RETEST_LIMIT` (:func:`~qmroct.measures.validation.relative_difference`);
- **S ordering**: the value that grades S (:data:`S_VALUE`) must order the scans of one device
  kind like the device's own quality; pairs whose device qualities differ by less than the
  device's own repeat noise (:func:`tie_margin`) are ties and are not counted;
- **leave-one-out**: the only figure derived from the real set is that tie margin (from the
  repeat pairs). Leaving each file out, the margin, the ordering and the retest are recomputed
  on the rest; each file's own verdicts cannot change, since no threshold comes from the files,
  and the report says so next to each file's verdicts and the values that graded them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from itertools import combinations
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from qmroct.measures.runner import run_suite
from qmroct.measures.validation import RETEST_LIMIT, relative_difference

#: Smaller B-scans are format fixtures (synthetic or shrunk), not real acquisitions.
MIN_REAL_SIDE = 128
#: The device-independent value that grades OSCAR-IB S (the device's own floor is a second,
#: device-specific grading of the same letter).
S_VALUE = "signal.peak_snr_db"
#: Other signal values, reported beside the S value in the ordering table.
SIGNAL_VALUES = ("snr_db", "qi", "mtci", "cnr")
#: A repeat is taken in one sitting: the exam times lie within this many minutes.
REPEAT_MINUTES = 10.0
#: Pixel sizes of a repeat agree to 1% (the device writes the same protocol's numbers).
SPACING_TOLERANCE = 0.01
#: Scan positions of a repeat agree within this many SLO pixels (the device stores them in mm
#: on its SLO; its tracker places a repeat on the same spot, so two pixels leave only rounding).
POSITION_TOLERANCE_PX = 2.0
#: Ties in device quality: at least this many device units, or twice the largest difference
#: between the repeat scans found (the device's own noise, measured on the same eye).
MIN_TIE_MARGIN = 1.0
WHERE_TO_GET_A_REPEAT = (
    "a repeat pair (two scans of one eye in one sitting, same pattern and position): the "
    "public repository halirutan/spectralis-raw-data (MIT), test-data/Willis_B_716_2.vol and "
    "test-data/Willis_B_716_4.vol; copy them into the samples folder (QMROCT_SAMPLES), never "
    "into the repository"
)


class RealScan(BaseModel):
    """One real sample, what its file says about the acquisition, and its OSCAR-IB grading."""

    scan: str = Field(description="path relative to the samples folder")
    format: str
    pattern: str
    laterality: str | None
    shape: tuple[int, int, int]
    lateral_um: float
    axial_um: float
    exam_time: str | None
    positions_px: list[tuple[float, float, float, float]] = Field(
        default_factory=list, description="B-scan start and end on the SLO, pixels"
    )
    slo_px_um: float | None = None
    device_quality: float | None = None
    device_quality_kind: str | None = None
    signal_values: dict[str, float | None] = Field(
        default_factory=dict, description="the signal measure's other values, for comparison"
    )
    letters: dict[str, dict] = Field(
        default_factory=dict,
        description="letter -> verdict, graded_by, graded_value, gradings {value: {value, "
        "verdict, thresholds}}",
    )


class RetestValue(BaseModel):
    value: str
    a: float | None
    b: float | None
    warn: float | None
    relative_difference: float | None
    within_limit: bool


class RetestPair(BaseModel):
    a: str
    b: str
    why: str = Field(description="what the files say that makes them a repeat")
    letters: dict[str, list[RetestValue]]
    verdicts: dict[str, tuple[str, str]]
    worst: float | None = Field(None, description="largest relative difference of the pair")
    passed: bool


class OrderingResult(BaseModel):
    kind: str
    value: str
    margin: float
    margin_why: str
    rows: list[dict] = Field(description="scan, device_quality, graded S value")
    concordant: int
    discordant: int
    ties: int
    concordance: float | None = Field(None, description="concordant / (concordant + discordant)")


class LeaveOneOut(BaseModel):
    scan: str
    letters: dict[str, str] = Field(description="letter -> 'verdict by <measure>.<value> = v'")
    margin_without: float
    ordering_without: dict[str, float | None] = Field(
        description="device kind -> S concordance on the other files"
    )
    retest_pairs_without: int
    retest_passed_without: bool | None


class RealReport(BaseModel):
    samples: str
    scans: list[RealScan]
    skipped: list[str] = Field(default_factory=list, description="files not graded, and why")
    repeats: list[RetestPair]
    repeat_note: str = ""
    ordering: list[OrderingResult]
    leave_one_out: list[LeaveOneOut]
    derived_from_real: list[str]
    leave_one_out_note: str = (
        "no threshold and no choice of graded value comes from the real files, so each file's "
        "verdicts are the same with or without the others; what is recomputed without each "
        "file is what the real set does decide: the tie margin, the S ordering and the retest"
    )


def _letters(summary) -> dict[str, dict]:
    out = {}
    for letter, v in summary.letters.items():
        out[letter] = {
            "verdict": v.verdict.value,
            "graded_by": v.graded_by,
            "graded_value": v.graded_value,
            "gradings": {k: g.model_dump(mode="json") for k, g in v.gradings.items()},
        }
    return out


def grade_samples(
    root: Path, progress: Callable[[str], None] | None = None
) -> tuple[list[RealScan], list[str]]:
    """Read every real acquisition under ``root`` and grade it with the whole suite."""
    from qmroct.errors import QmroctError
    from qmroct.oct.readers import read_scan

    scans, skipped, unread = [], [], 0
    for path in sample_files(root):
        rel = str(path.relative_to(root))
        try:
            scan = read_scan(path, name=path.name)
        except (QmroctError, ValueError):
            unread += 1  # pictures, texts, licences: not scans
            continue
        if min(scan.shape[1:]) < MIN_REAL_SIDE:
            skipped.append(f"{rel}: {scan.shape} is a format fixture, not an acquisition")
            continue
        if progress:
            progress(rel)
        run = run_suite(scan)
        m = scan.meta
        dq = [q for q in (m.device_quality or []) if q is not None]
        scans.append(
            RealScan(
                scan=rel,
                format=m.format,
                pattern=m.pattern.value,
                laterality=m.laterality,
                shape=scan.shape,
                lateral_um=m.spacing.lateral_um,
                axial_um=m.spacing.axial_um,
                exam_time=str(m.extra["exam_time"]) if m.extra.get("exam_time") else None,
                positions_px=[
                    (p.start.x, p.start.y, p.end.x, p.end.y) for p in (m.bscan_positions or [])
                ],
                slo_px_um=m.fundus_spacing_um.lateral_um if m.fundus_spacing_um else None,
                device_quality=float(np.mean(dq)) if dq else None,
                device_quality_kind=m.device_quality_kind,
                signal_values={
                    k: out.values.get(k)
                    for out in run.outputs
                    if out.measure == "signal"
                    for k in SIGNAL_VALUES
                    if isinstance(out.values.get(k), int | float)
                },
                letters=_letters(run.summary),
            )
        )
    if unread:
        skipped.append(f"{unread} files in no scan format (pictures, texts, licences)")
    return scans, skipped


def sample_files(root: Path) -> list[Path]:
    """Every file under ``root``, following linked folders (a samples folder may link to the
    shared one and add files of its own)."""
    found = []
    for folder, _, files in os.walk(root, followlinks=True):
        found += [Path(folder) / f for f in files]
    return sorted(found)


def repeat_reason(a: RealScan, b: RealScan) -> tuple[bool, str]:
    """Whether two scans are a repeat of one acquisition, and what says so (or what differs).

    A repeat: same format, pattern, eye, image size, pixel size (1%), scan positions on the
    SLO (:data:`POSITION_TOLERANCE_PX`), exam times within :data:`REPEAT_MINUTES`. A file
    without an exam time or positions cannot be shown to be a repeat.
    """
    if (a.format, a.pattern, a.shape) != (b.format, b.pattern, b.shape):
        return False, "format, pattern or image size differ"
    if not a.laterality or a.laterality != b.laterality:
        return False, "not the same eye (laterality missing or different)"
    for x, y, what in ((a.lateral_um, b.lateral_um, "lateral"), (a.axial_um, b.axial_um, "axial")):
        if abs(x - y) > SPACING_TOLERANCE * max(x, y):
            return False, f"{what} pixel size {x:.2f} vs {y:.2f} µm"
    if not (a.exam_time and b.exam_time):
        return False, "no exam time in the file"
    dt = abs(
        (datetime.fromisoformat(a.exam_time) - datetime.fromisoformat(b.exam_time)).total_seconds()
    )
    if dt > REPEAT_MINUTES * 60:
        return False, f"exam times {dt / 60:.0f} min apart"
    if not a.positions_px or len(a.positions_px) != len(b.positions_px):
        return False, "no scan positions to compare"
    shift = float(np.max(np.abs(np.subtract(a.positions_px, b.positions_px))))
    if shift > POSITION_TOLERANCE_PX:
        return False, f"scan positions {shift:.1f} SLO px apart"
    return True, (
        f"{a.laterality}, {a.pattern} {a.shape[2]}x{a.shape[1]}, {a.lateral_um:.2f} µm lateral, "
        f"positions within {shift:.2f} SLO px, exam times {dt:.0f} s apart"
    )


def retest_pair(a: RealScan, b: RealScan, why: str) -> RetestPair:
    """Per letter, every value graded into it in either scan, compared between the two."""
    letters: dict[str, list[RetestValue]] = {}
    worst = None
    for letter in a.letters:
        ga = a.letters[letter]["gradings"]
        gb = b.letters.get(letter, {}).get("gradings", {})
        rows = []
        for key in dict.fromkeys([*ga, *gb]):
            va = ga.get(key, {}).get("value")
            vb = gb.get(key, {}).get("value")
            th = (ga.get(key) or gb.get(key) or {}).get("thresholds")
            warn = th[0] if th else None
            if va is None or vb is None:
                # Computed in one scan only, or in neither: agreement only if neither has it.
                rd, ok = None, va is None and vb is None
            else:
                rd = relative_difference(va, vb, warn)
                ok = rd < RETEST_LIMIT
                worst = rd if worst is None else max(worst, rd)
            rows.append(
                RetestValue(
                    value=key, a=va, b=vb, warn=warn, relative_difference=rd, within_limit=ok
                )  # fmt: skip
            )
        letters[letter] = rows
    return RetestPair(
        a=a.scan,
        b=b.scan,
        why=why,
        letters=letters,
        verdicts={
            L: (a.letters[L]["verdict"], b.letters.get(L, {}).get("verdict", "")) for L in a.letters
        },
        worst=worst,
        passed=all(r.within_limit for rows in letters.values() for r in rows),
    )


def find_repeats(scans: list[RealScan]) -> list[RetestPair]:
    pairs = []
    for a, b in combinations(scans, 2):
        ok, why = repeat_reason(a, b)
        if ok:
            pairs.append(retest_pair(a, b, why))
    return pairs


def tie_margin(scans: list[RealScan], pairs: list[RetestPair]) -> tuple[float, str]:
    """Device-quality differences below this are ties: twice the largest difference between
    repeat scans (the device's own noise on one eye), at least :data:`MIN_TIE_MARGIN`."""
    dq = {s.scan: s.device_quality for s in scans}
    diffs = [
        abs(dq[p.a] - dq[p.b]) for p in pairs if dq.get(p.a) is not None and dq.get(p.b) is not None
    ]
    if not diffs:
        return MIN_TIE_MARGIN, f"{MIN_TIE_MARGIN:g} device units (no repeat pair to measure on)"
    m = max(MIN_TIE_MARGIN, 2 * max(diffs))
    return m, (
        f"{m:.2g} device units: twice the largest difference between repeat scans of one eye "
        f"({max(diffs):.2f}), at least {MIN_TIE_MARGIN:g}"
    )


def s_ordering(scans: list[RealScan], margin: float, why: str) -> list[OrderingResult]:
    """Pairwise concordance of :data:`S_VALUE` with the device quality, per device kind."""
    kinds: dict[str, list[dict]] = {}
    for s in scans:
        v = s.letters.get("S", {}).get("gradings", {}).get(S_VALUE, {}).get("value")
        if s.device_quality is None or not s.device_quality_kind or v is None:
            continue
        kinds.setdefault(s.device_quality_kind, []).append(
            {"scan": s.scan, "device_quality": s.device_quality, S_VALUE: v, **s.signal_values}
        )
    out = []
    for kind, rows in sorted(kinds.items()):
        rows.sort(key=lambda r: -r["device_quality"])
        con = dis = ties = 0
        for r1, r2 in combinations(rows, 2):
            d = r1["device_quality"] - r2["device_quality"]
            if abs(d) < margin:
                ties += 1
            elif np.sign(d) == np.sign(r1[S_VALUE] - r2[S_VALUE]):
                con += 1
            else:
                dis += 1
        out.append(
            OrderingResult(
                kind=kind,
                value=S_VALUE,
                margin=margin,
                margin_why=why,
                rows=rows,
                concordant=con,
                discordant=dis,
                ties=ties,
                concordance=con / (con + dis) if con + dis else None,
            )
        )
    return out


def _verdict_line(v: dict) -> str:
    val = v.get("graded_value")
    shown = f" = {val:.4g}" if isinstance(val, int | float) else ""
    return f"{v['verdict']} by {v.get('graded_by')}{shown}" if v.get("graded_by") else v["verdict"]


def leave_one_out(scans: list[RealScan]) -> list[LeaveOneOut]:
    """For each file: the figures derived from the real set, recomputed without it."""
    out = []
    for s in scans:
        rest = [r for r in scans if r.scan != s.scan]
        pairs = find_repeats(rest)
        margin, why = tie_margin(rest, pairs)
        ordering = s_ordering(rest, margin, why)
        out.append(
            LeaveOneOut(
                scan=s.scan,
                letters={L: _verdict_line(v) for L, v in s.letters.items()},
                margin_without=margin,
                ordering_without={o.kind: o.concordance for o in ordering},
                retest_pairs_without=len(pairs),
                retest_passed_without=all(p.passed for p in pairs) if pairs else None,
            )
        )
    return out


def check_samples(root: Path, progress: Callable[[str], None] | None = None) -> RealReport:
    """Grade every real sample, find the repeats, order S, and leave each file out once."""
    scans, skipped = grade_samples(root, progress)
    pairs = find_repeats(scans)
    margin, why = tie_margin(scans, pairs)
    return RealReport(
        samples=str(root),
        scans=scans,
        skipped=skipped,
        repeats=pairs,
        repeat_note=""
        if pairs
        else f"no repeat pair among the samples; for one, get {WHERE_TO_GET_A_REPEAT}",
        ordering=s_ordering(scans, margin, why),
        leave_one_out=leave_one_out(scans),
        derived_from_real=[f"the S-ordering tie margin: {why}"],
    )

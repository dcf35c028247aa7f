"""The OSCAR-IB measure suite: importing this module registers every measure, and
:func:`oscar_ib_summary` folds their verdicts into one verdict per letter and overall.

| measure | letter | what it checks |
|---|---|---|
| signal | S | signal strength: SNR, QI, mTCI, CNR, device quality |
| sharpness | O | focus: width of the ILM edge |
| completeness | O | retina cut at the top or bottom |
| blink_motion | O | blinks, axial and lateral motion (volumes) |
| centration | C | fovea offset, or ring-to-disc offset |
| segmentation | A | plausibility of the layer boundaries |
| illumination | I | vignetting, shadows, uneven gain |
| beam_placement | B | tilt, ONL left/right brightness |
| pathology_flag | R | thickness outside the normal range (flag) |
"""

from __future__ import annotations

from pydantic import BaseModel

from qmroct.measures import (  # noqa: F401 - imported to register
    beam_placement,
    blink_motion,
    centration,
    completeness,
    illumination,
    pathology_flag,
    segmentation,
    sharpness,
    signal,
)
from qmroct.measures.verdicts import own_gradings, worst
from qmroct.results import Criterion, CriterionVerdict, MeasureOutput, Verdict

LETTERS: tuple[Criterion, ...] = ("O", "S", "C", "A", "R", "I", "B")
#: Hard criteria exclude a scan when failed; soft ones only when a reader agrees (Tewarie 2012).
HARD: frozenset[str] = frozenset({"O", "C", "A", "R"})

SUITE_ORDER = (
    "signal",
    "sharpness",
    "completeness",
    "blink_motion",
    "centration",
    "segmentation",
    "illumination",
    "beam_placement",
    "pathology_flag",
)


class OscarIbSummary(BaseModel):
    """One scan's OSCAR-IB result: a verdict per letter and overall pass/fail."""

    letters: dict[str, CriterionVerdict]
    passed: bool
    failed_letters: list[str]
    warned_letters: list[str]


def oscar_ib_summary(outputs: list[MeasureOutput]) -> OscarIbSummary:
    """Combine the measures' verdicts: per letter the worst; overall failed if any letter fails.

    Each letter's ``graded_by`` names the value that decided it, ``"<measure>.<value>"``
    (across measures as within one: :func:`~qmroct.measures.verdicts.worst`), and its
    ``gradings`` every value graded into the letter.

    A soft letter (S, I, B) that fails counts as a failure too: automated grading has no reader
    to overrule it, and APOSTEL 2.0 asks to report which criterion failed.
    """
    by_letter: dict[str, list[CriterionVerdict]] = {c: [] for c in LETTERS}
    for out in outputs:
        for v in out.verdicts:
            by = f"{out.measure}.{v.graded_by}" if v.graded_by else None
            # A verdict built without grade() (a flag) names its value but does not carry it.
            gradings = {
                k: g
                if g.value is not None
                else g.model_copy(update={"value": _number(out.values.get(k))})
                for k, g in own_gradings(v).items()
            }
            value = v.graded_value
            if value is None and v.graded_by:
                value = _number(out.values.get(v.graded_by))
            by_letter[v.criterion].append(
                v.model_copy(
                    update={
                        "reason": f"{out.measure}: {v.reason}",
                        "graded_by": by,
                        "graded_value": value,
                        "gradings": {f"{out.measure}.{k}": g for k, g in gradings.items()},
                    }
                )
            )
    letters = {c: worst(c, vs) for c, vs in by_letter.items()}
    failed = [c for c, v in letters.items() if v.verdict is Verdict.FAIL]
    warned = [c for c, v in letters.items() if v.verdict is Verdict.WARN]
    return OscarIbSummary(
        letters=letters, passed=not failed, failed_letters=failed, warned_letters=warned
    )


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

"""Turning values into OSCAR-IB verdicts, with the threshold and its source in the reason."""

from __future__ import annotations

import math

from qmroct.results import Criterion, CriterionVerdict, Grading, Verdict


def grade(
    criterion: Criterion,
    name: str,
    value: float | None,
    *,
    warn: float,
    fail: float,
    higher_is_better: bool,
    unit: str = "",
    source: str = "",
    graded_by: str | None = None,
) -> CriterionVerdict:
    """pass / warn / fail for one value against two thresholds (NaN: fail, value unknown).

    ``graded_by`` is the key of the value in the measure's values; it travels with the verdict
    so the letter names what graded it.
    """
    verdict = _grade(criterion, name, value, warn=warn, fail=fail,
                     higher_is_better=higher_is_better, unit=unit, source=source)  # fmt: skip
    known = value is not None and math.isfinite(value)
    return verdict.model_copy(
        update={
            "graded_by": graded_by,
            "thresholds": (warn, fail),
            "graded_value": float(value) if known else None,
            "threshold_position": threshold_position(value, warn, fail, higher_is_better)
            if known
            else None,
            "gradings": {
                graded_by: Grading(
                    value=float(value) if known else None,
                    verdict=verdict.verdict,
                    thresholds=(warn, fail),
                )
            }
            if graded_by
            else {},
        }
    )


def threshold_position(value: float, warn: float, fail: float, higher_is_better: bool) -> float:
    """Where ``value`` sits on its scale: 0 at the warn threshold, 1 at the fail threshold,
    negative while it passes. With one threshold for both (a floor), the unit is the threshold's
    magnitude, so 1.0 means twice as far as the threshold from zero."""
    sign = -1.0 if higher_is_better else 1.0
    span = abs(fail - warn) or abs(warn) or 1.0
    return sign * (value - warn) / span


def _grade(
    criterion: Criterion,
    name: str,
    value: float | None,
    *,
    warn: float,
    fail: float,
    higher_is_better: bool,
    unit: str,
    source: str,
) -> CriterionVerdict:
    src = f" ({source})" if source else ""
    if value is None or not math.isfinite(value):
        return CriterionVerdict(
            criterion=criterion, verdict=Verdict.FAIL, reason=f"{name} could not be computed"
        )
    shown = f"{name} = {value:.3g}{unit}"
    if higher_is_better:
        if value < fail:
            return CriterionVerdict(
                criterion=criterion, verdict=Verdict.FAIL, reason=f"{shown} < {fail:g}{unit}{src}"
            )
        if value < warn:
            return CriterionVerdict(
                criterion=criterion, verdict=Verdict.WARN, reason=f"{shown} < {warn:g}{unit}{src}"
            )
        return CriterionVerdict(
            criterion=criterion, verdict=Verdict.PASS, reason=f"{shown} >= {warn:g}{unit}{src}"
        )
    if value > fail:
        return CriterionVerdict(
            criterion=criterion, verdict=Verdict.FAIL, reason=f"{shown} > {fail:g}{unit}{src}"
        )
    if value > warn:
        return CriterionVerdict(
            criterion=criterion, verdict=Verdict.WARN, reason=f"{shown} > {warn:g}{unit}{src}"
        )
    return CriterionVerdict(
        criterion=criterion, verdict=Verdict.PASS, reason=f"{shown} <= {warn:g}{unit}{src}"
    )


_ORDER = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


def worst(criterion: Criterion, verdicts: list[CriterionVerdict]) -> CriterionVerdict:
    """Combine several gradings of the same letter: the worst one wins, its reasons listed.

    ``graded_by`` names the value that decided the letter. For a warn or fail, of the values at
    that verdict the one furthest along its own scale (:func:`threshold_position`: a fail 25
    times its threshold span beyond decides over one just past it); a value that could not be
    computed decides a fail first. A pass is decided by no single value: it names the primary
    one (the gradings' order is their priority), the value the letter is defined by.
    ``gradings`` keeps every value graded into the letter.
    """
    graded = [v for v in verdicts if v.verdict in _ORDER]
    if not graded:
        reasons = "; ".join(v.reason for v in verdicts) or "nothing to grade"
        return CriterionVerdict(criterion=criterion, verdict=Verdict.NOT_APPLICABLE, reason=reasons)
    top = max(graded, key=lambda v: _ORDER[v.verdict])
    bad = [v for v in graded if v.verdict == top.verdict]
    named = [v for v in bad if v.graded_by]
    if top.verdict is Verdict.PASS:
        by = named[0] if named else None
    else:
        by = max(named, key=_decides, default=None)  # max keeps the first of equals
    gradings: dict[str, Grading] = {}
    for v in verdicts:
        gradings.update(own_gradings(v))
    return CriterionVerdict(
        criterion=criterion,
        verdict=top.verdict,
        reason="; ".join(v.reason for v in bad),
        graded_by=by.graded_by if by else None,
        thresholds=by.thresholds if by else None,
        graded_value=by.graded_value if by else None,
        threshold_position=by.threshold_position if by else None,
        gradings=gradings,
    )


def own_gradings(v: CriterionVerdict) -> dict[str, Grading]:
    """A verdict's gradings; one built by hand (a flag) has only its graded_by."""
    if v.gradings or not v.graded_by or v.verdict not in _ORDER:
        return dict(v.gradings)
    return {v.graded_by: Grading(value=v.graded_value, verdict=v.verdict, thresholds=v.thresholds)}


def _decides(v: CriterionVerdict) -> float:
    if v.threshold_position is not None:
        return v.threshold_position
    # Not computed: the strongest reason for a fail; otherwise (a flag without a scale) last.
    return math.inf if v.verdict is Verdict.FAIL else -math.inf


def not_applicable(criterion: Criterion, reason: str) -> CriterionVerdict:
    return CriterionVerdict(criterion=criterion, verdict=Verdict.NOT_APPLICABLE, reason=reason)


def failed(criterion: Criterion, reason: str) -> CriterionVerdict:
    return CriterionVerdict(criterion=criterion, verdict=Verdict.FAIL, reason=reason)

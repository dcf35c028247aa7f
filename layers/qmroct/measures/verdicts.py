"""Turning values into OSCAR-IB verdicts, with the threshold and its source in the reason."""

from __future__ import annotations

import math

from qmroct.results import Criterion, CriterionVerdict, Verdict


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
    return verdict.model_copy(update={"graded_by": graded_by, "thresholds": (warn, fail)})


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

    ``graded_by`` is the first value at the worst verdict (the gradings' order is their
    priority: the primary value comes first).
    """
    graded = [v for v in verdicts if v.verdict in _ORDER]
    if not graded:
        reasons = "; ".join(v.reason for v in verdicts) or "nothing to grade"
        return CriterionVerdict(criterion=criterion, verdict=Verdict.NOT_APPLICABLE, reason=reasons)
    top = max(graded, key=lambda v: _ORDER[v.verdict])
    bad = [v for v in graded if v.verdict == top.verdict]
    by = next((v for v in bad if v.graded_by), None)
    return CriterionVerdict(
        criterion=criterion,
        verdict=top.verdict,
        reason="; ".join(v.reason for v in bad),
        graded_by=by.graded_by if by else None,
        thresholds=by.thresholds if by else None,
    )


def not_applicable(criterion: Criterion, reason: str) -> CriterionVerdict:
    return CriterionVerdict(criterion=criterion, verdict=Verdict.NOT_APPLICABLE, reason=reason)


def failed(criterion: Criterion, reason: str) -> CriterionVerdict:
    return CriterionVerdict(criterion=criterion, verdict=Verdict.FAIL, reason=reason)

"""record-result: the end of every ``run-<measure>`` sequence.

It validates what the measure (or derive) action returned, stores it through the ledger (which
archives the superseded value and refuses stale leases), queues the XNAT push when XNAT is
configured, and fills the freed slot at once with the scheduler's own claim-and-start step
(:func:`qmroct.orchestration.scheduler.fill`), waking the scheduler only if that fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from qmroct.orchestration.context import ActionContext
from qmroct.orchestration.invoking import wake_scheduler
from qmroct.orchestration.models import ActionOutcome, DeriveActionResult
from qmroct.results import MeasureActionResult, ResultStatus, StoredResult
from qmroct.storage.ledger import LedgerError, StaleLease
from qmroct.storage.records import JobKind

log = logging.getLogger(__name__)


def _push_to_xnat(ctx: ActionContext, stored: StoredResult | None) -> None:
    if ctx.xnat_enabled and stored is not None and stored.current:
        # rearm: a re-run of the same version must be pushed again under the same key.
        ctx.ledger.enqueue(
            JobKind.XNAT,
            stored.scan_hash,
            stored.measure,
            stored.version,
            action="xnat-callback",
            rearm=True,
        )


def record_result(
    ctx: ActionContext, args: Mapping[str, Any], *, activation: str | None = None
) -> ActionOutcome:
    """Store one action's result. A stale or unknown lease is refused, not raised: the job was
    re-driven and its current holder will record the result."""
    activation = activation or os.environ.get("__OW_ACTIVATION_ID") or None
    key, token = str(args.get("job_key", "")), str(args.get("lease_token", ""))
    job = ctx.ledger.job(key)
    if job is None:
        return ActionOutcome(job_key=key, state="refused", detail="no such job")
    try:
        if job.kind is JobKind.DERIVE:
            outcome = _record_derived(ctx, DeriveActionResult.model_validate(dict(args)))
        else:
            outcome = _record_measure(
                ctx, MeasureActionResult.model_validate(dict(args)), activation
            )
    except ValidationError as exc:
        # The action answered something that is not a result: a failed attempt, with the reason.
        reason = f"invalid result from {job.action or job.measure}: {exc.errors()[:3]}"
        try:
            state = ctx.ledger.fail(key, token, reason[:2000])
        except StaleLease as stale:
            return ActionOutcome(job_key=key, state="refused", detail=stale.reason)
        outcome = ActionOutcome(job_key=key, state=state.value, detail=reason[:500])
    except StaleLease as exc:
        return ActionOutcome(job_key=key, state="refused", detail=exc.reason)
    except LedgerError as exc:
        return ActionOutcome(job_key=key, state="refused", detail=exc.reason)
    _fill_freed_slot(ctx, outcome)
    return outcome


def _fill_freed_slot(ctx: ActionContext, outcome: ActionOutcome) -> None:
    """Start the next jobs in the slot this result freed; the outcome says how many."""
    if ctx.ow is None:
        return
    from qmroct.orchestration.scheduler import fill

    try:
        report = fill(ctx)
    except Exception as exc:  # noqa: BLE001 - the result is stored; the scheduler starts the rest
        log.warning("could not start the next jobs (%s); waking the scheduler", exc)
        wake_scheduler(ctx)
        return
    outcome.started = report.invoked + report.xnat_invoked
    outcome.claim_ms = report.claim_ms


def _record_measure(
    ctx: ActionContext, res: MeasureActionResult, activation: str | None
) -> ActionOutcome:
    if res.status is ResultStatus.FAILED:
        error = res.failure or "the measure failed without saying why"
        state = ctx.ledger.fail(res.job_key, res.lease_token, error, result=res)
        if state.value == "dead":
            _push_to_xnat(ctx, ctx.ledger.catalog.current_result(res.scan_hash, res.measure))
        return ActionOutcome(job_key=res.job_key, state=state.value, detail=error[:500])
    stored = ctx.ledger.complete(res.job_key, res.lease_token, res, activation_id=activation)
    _push_to_xnat(ctx, stored)
    return ActionOutcome(
        job_key=res.job_key,
        state="done",
        current=stored.current if stored else None,
        detail="" if stored is None or stored.current else stored.superseded_reason or "",
    )


def _record_derived(ctx: ActionContext, res: DeriveActionResult) -> ActionOutcome:
    if res.status is not ResultStatus.OK or not res.output_key:
        error = res.failure or f"{res.measure} was not produced"
        state = ctx.ledger.fail(res.job_key, res.lease_token, error)
        return ActionOutcome(job_key=res.job_key, state=state.value, detail=error[:500])
    ctx.ledger.complete_derived(
        res.job_key, res.lease_token, bucket=res.output_bucket, object_key=res.output_key
    )
    return ActionOutcome(job_key=res.job_key, state="done")

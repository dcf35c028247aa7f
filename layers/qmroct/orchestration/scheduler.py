"""The scheduler tick, and the claim-and-start step (:func:`fill`) that record-result also runs.

One tick, run by the alarm trigger every minute and woken by record-result and the event
actions:

1. re-drive expired leases, queue failed jobs whose backoff passed, dead-letter jobs whose
   required product can no longer be derived;
2. reconcile in-flight jobs with activation records: an activation that ended without its
   result recorded (a crash, a timeout, a lost record-result) fails its job, so it is retried;
3. claim up to ``cap - in_flight`` jobs, presign the URLs each needs, and invoke
   ``run-<measure>`` (or ``run-derive-<product>``) non-blocking. A 429 releases the job and
   every later claim of the tick without counting an attempt: back-pressure is never a failure;
4. the same for XNAT pushes (``xnat-callback``), under their own cap.

A job holds its slot from its claim until record-result has stored its result. record-result
then runs :func:`fill` itself before returning (one scheduler activation per finished job
would double the activations of a drain), so the next ``run-<measure>`` can start a few
milliseconds before the previous sequence's record ends; the measure activations themselves
never exceed the cap, since every claim counts the leases in the same transaction.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from qmroct.orchestration import resync
from qmroct.orchestration.context import ActionContext
from qmroct.orchestration.invoking import (
    activation_id,
    field,
    not_found_error,
    throttled_error,
)
from qmroct.orchestration.models import DeriveInvocation, product_file
from qmroct.results import MeasureInvocation
from qmroct.storage.buckets import DERIVED_BUCKET, RESULTS_BUCKET, result_key
from qmroct.storage.ledger import StaleLease
from qmroct.storage.records import Claim, JobKind

log = logging.getLogger(__name__)

#: Seconds after an activation's end before its job counts as lost (record-result runs inside
#: the sequence, so it has finished by then; the margin covers clock skew).
RECONCILE_GRACE_S = 30.0
#: Seconds a released job waits before it is claimable again.
RELEASE_DELAY_S = 1.0


class TickReport(BaseModel):
    reclaimed: int = 0
    retried: int = 0
    unsatisfiable: int = 0
    lost: int = 0
    resynced: int = 0
    claimed: int = 0
    invoked: int = 0
    throttled: int = 0
    xnat_invoked: int = 0
    claim_ms: float = Field(0.0, description="time spent in the ledger's claim calls")
    errors: list[str] = Field(default_factory=list)


def _presign_s(ctx: ActionContext) -> timedelta:
    # URLs outlive the lease a little; after that the job is re-driven with fresh URLs.
    return timedelta(seconds=ctx.ledger.policy.lease_s + 60)


def invocation_params(ctx: ActionContext, claim: Claim) -> dict[str, Any]:
    """The parameters of one activation: presigned URLs for one scan and its own outputs."""
    job, store, expires = claim.job, ctx.store, _presign_s(ctx)
    scan = ctx.ledger.catalog.scan(job.scan_hash)
    if scan is None:
        raise LookupError(f"scan {job.scan_hash} is not in the catalog")
    inputs: dict[str, str] = {}
    for product in job.needs:  # a claimed job comes with its needs
        d = ctx.ledger.catalog.derived(product, job.scan_hash)
        if d is None:
            raise LookupError(f"derived product {product} of {job.scan_hash} is missing")
        inputs[product] = store.presign_get(d.bucket, d.key, expires=expires)
    common = {
        "job_key": job.job_key,
        "lease_token": claim.lease_token,
        "scan_hash": job.scan_hash,
        "scan_url": store.presign_get(
            scan.bucket, scan.key, expires=expires, version_id=scan.version_id
        ),
        "scan_name": posixpath.basename(scan.key),
        "inputs": inputs,
        "measure": job.measure,
        "version": job.version,
        "params": job.params,
    }
    if job.kind is JobKind.DERIVE:
        out_key = result_key(job.scan_hash, job.measure, job.version, product_file(job.measure))
        inv: MeasureInvocation = DeriveInvocation(
            **common,
            output_url=store.presign_put(
                DERIVED_BUCKET, out_key, expires=expires, content_type="application/octet-stream"
            ),
            output_bucket=DERIVED_BUCKET,
            output_key=out_key,
        )
    else:
        published = ctx.ledger.catalog.measure(job.measure, job.version)
        common["code_digest"] = published.code_digest if published else ""
        pic = result_key(job.scan_hash, job.measure, job.version, "picture.png")
        dcm = result_key(job.scan_hash, job.measure, job.version, "picture.dcm")
        inv = MeasureInvocation(
            **common,
            picture_url=store.presign_put(
                RESULTS_BUCKET, pic, expires=expires, content_type="image/png"
            ),
            dicom_url=store.presign_put(
                RESULTS_BUCKET, dcm, expires=expires, content_type="application/dicom"
            ),
        )
    return inv.model_dump(mode="json")


def _action_name(claim: Claim) -> str:
    job = claim.job
    if job.action:
        return job.action
    return f"run-derive-{job.measure}" if job.kind is JobKind.DERIVE else f"run-{job.measure}"


def reconcile(ctx: ActionContext, *, now: float | None = None) -> int:
    """Fail in-flight jobs whose activation ended without recording a result.

    Only a leased job can be stale, and only one leased more than ``RECONCILE_GRACE_S`` ago:
    its activation started after the claim, so it cannot have ended long enough before. Each
    such job's record is fetched by its activation id (``GET .../activations/{id}``, which
    answers 404 while the activation runs: the controller stores the record when it ends), so
    a tick costs O(jobs in flight), never O(activation records).
    """
    if ctx.ow is None:
        return 0
    now = time.time() if now is None else now
    cutoff = now - RECONCILE_GRACE_S
    jobs = [
        j
        for j in ctx.ledger.leased()
        if j.activation_id and (j.leased_at is None or j.leased_at <= cutoff)
    ]
    not_found = not_found_error()
    lost = 0
    for job in jobs:
        try:
            rec = ctx.ow.activation(job.activation_id or "")
        except not_found:
            continue  # still running, or its record not written yet
        except Exception as exc:  # noqa: BLE001 - one unreadable record must not stop the tick
            log.warning("activation %s of %s unreadable: %s", job.activation_id, job.job_key, exc)
            continue
        end = field(rec, "end") if rec is not None else None
        if not end or now - float(end) / 1000.0 < RECONCILE_GRACE_S:
            continue
        response = field(rec, "response", default={}) or {}
        code = field(response, "statusCode", "status_code", default="?")
        result = field(response, "result", default={}) or {}
        error = field(result, "error", default="") or field(response, "status", default="")
        try:
            ctx.ledger.fail(
                job.job_key,
                job.lease_token or "",
                f"activation {job.activation_id} ended (statusCode {code}) without a recorded"
                f" result: {error}"[:2000],
            )
            lost += 1
        except StaleLease:
            continue  # recorded meanwhile
    return lost


def _start(ctx: ActionContext, claims: list[Claim], report: TickReport, *, xnat: bool) -> None:
    throttled = throttled_error()
    ow = ctx.require_ow()
    for i, claim in enumerate(claims):
        key, token = claim.job.job_key, claim.lease_token
        try:
            if xnat:
                name = ctx.action("xnat-callback")
                params = {"job_key": key, "lease_token": token, "scan_hash": claim.job.scan_hash}
            else:
                name = ctx.action(_action_name(claim))
                params = invocation_params(ctx, claim)
            response = ow.invoke(name, params, blocking=False)
        except throttled as exc:
            for rest in claims[i:]:
                ctx.ledger.release(
                    rest.job.job_key,
                    rest.lease_token,
                    delay_s=RELEASE_DELAY_S,
                    reason=f"429: {exc}",
                )
            report.throttled += len(claims) - i
            return
        except Exception as exc:  # an invoke that failed is an attempt, retried with backoff
            report.errors.append(f"{key}: {exc}")
            ctx.ledger.fail(key, token, f"could not start the activation: {exc}")
            continue
        aid = activation_id(response)
        if aid:
            # StaleLease: a fast activation already recorded its result.
            with contextlib.suppress(StaleLease):
                ctx.ledger.set_activation(key, token, aid)
        if xnat:
            report.xnat_invoked += 1
        else:
            report.invoked += 1


def tick(ctx: ActionContext) -> TickReport:
    """One scheduler tick (see the module docstring)."""
    led = ctx.ledger
    report = TickReport(
        reclaimed=len(led.reclaim_expired()),
        retried=led.retry_due(),
        unsatisfiable=led.fail_unsatisfiable(),
    )
    report.lost = reconcile(ctx)
    if resync.due(ctx):
        found = resync.resync(ctx)
        report.resynced = found.scans + found.publications
    return fill(ctx, report)


def fill(ctx: ActionContext, report: TickReport | None = None) -> TickReport:
    """Steps 3 and 4 of a tick: claim up to the caps and start what was claimed.

    record-result runs this too when it has freed a slot, so a queue drains with one
    record-result per job and no scheduler activation per job; the alarm tick keeps the
    re-drives, retries and reconciliation.
    """
    report = report or TickReport()
    t0 = time.perf_counter()
    claims = ctx.ledger.claim(cap=ctx.max_inflight)
    report.claim_ms += (time.perf_counter() - t0) * 1000
    report.claimed += len(claims)
    _start(ctx, claims, report, xnat=False)
    if ctx.xnat_enabled:
        t0 = time.perf_counter()
        xclaims = ctx.ledger.claim(cap=ctx.max_inflight, kinds=[JobKind.XNAT])
        report.claim_ms += (time.perf_counter() - t0) * 1000
        report.claimed += len(xclaims)
        _start(ctx, xclaims, report, xnat=True)
    report.claim_ms = round(report.claim_ms, 3)
    return report

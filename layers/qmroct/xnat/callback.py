"""xnat-callback: publish one scan's quality results in XNAT, as a job of the ledger.

The job (kind ``xnat``) names the scan by content hash. The callback registers the scan in XNAT
if this hash is not there yet, then writes every current value, verdict, picture, report and
the superseded versions (see :mod:`qmroct.xnat.sync`). Outcomes for the ledger:

- done: ``complete``;
- XNAT unreachable or answering a transient status (502/503/504, 429) after the client's
  retries: ``release`` with a delay, so the job stays queued without spending an attempt, for
  as long as XNAT is down;
- XNAT refusing (any other 4xx or 5xx), a scan unknown to the catalog or whose bytes do not
  match its hash: ``fail`` without retry, so the job is dead at once and its row carries the
  scan, the call and XNAT's message. Repeating a deterministic refusal changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qmroct.clients.xnat import XnatClient, XnatError, XnatUnavailable
from qmroct.errors import QmroctError
from qmroct.objectstore.base import ObjectStore
from qmroct.results import ResultStatus
from qmroct.storage.buckets import RESULTS_BUCKET, parse_scan_key, result_key
from qmroct.storage.tokens import XnatTokens
from qmroct.xnat.sync import PushReport, ScanPlace, XnatSync
from qmroct.xnat.token import open_with_best_token, renew_if_due

RELEASE_DELAY_S = 60.0


class XnatCallbackParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_key: str = Field(min_length=1)
    lease_token: str = Field(min_length=1)
    scan_hash: str = Field(min_length=16)
    xnat_url: str = Field(min_length=1)
    xnat_alias: str = Field(min_length=1)
    xnat_secret: str = Field(min_length=1)
    xnat_project: str = Field("", description="overrides the project label of the object key")
    results_bucket: str = RESULTS_BUCKET


class CallbackOutcome(BaseModel):
    job_key: str
    status: str = Field(description="done, queued (XNAT down) or failed")
    reason: str | None = None
    push: PushReport | None = None


def _pictures(store: ObjectStore, bucket: str, results: list[Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for r in results:
        if r.current and r.status == ResultStatus.OK and r.picture_stored:
            try:
                out[r.measure] = store.get(bucket, result_key(r.scan_hash, r.measure, r.version))
            except QmroctError:
                continue  # a picture that is not there is left out, not fatal
    return out


def publish_scan(
    ledger: Any,
    store: ObjectStore,
    client: XnatClient,
    scan_hash: str,
    *,
    project: str = "",
    results_bucket: str = RESULTS_BUCKET,
) -> PushReport:
    """Register the scan (once per hash) and push its results. Raises XnatError, QmroctError."""
    record = ledger.catalog.scan(scan_hash)
    if record is None:
        raise QmroctError(f"scan {scan_hash}: not in the catalog")
    parts = parse_scan_key(record.key)
    place = ScanPlace(
        project=project or record.project or parts.project,
        subject=record.subject or parts.subject,
        session=record.session or parts.session,
        scan=record.scan or parts.scan,
        ext=parts.ext,
        scan_hash=scan_hash,
        format=record.format,
        pattern=record.pattern,
    )
    results = ledger.results(scan_hash, history=True)
    sync = XnatSync(client)
    registered = sync.register_scan_lazy(
        place, lambda: store.get(record.bucket, record.key, version_id=record.version_id)
    )
    report = sync.push_results(place, results, _pictures(store, results_bucket, results))
    report.registered = registered
    return report


def run_callback(
    ledger: Any,
    store: ObjectStore,
    args: Mapping[str, Any],
    *,
    client: XnatClient | None = None,
    now: Callable[[], float] = time.time,
) -> CallbackOutcome:
    """The xnat-callback action's work: publish, then settle the job in the ledger.

    XNAT down (no answer, 502/503/504, 429 after the client's retries): the job is released to
    run again later without spending an attempt. Any other refusal (4xx, 500) is XNAT's answer
    to this very request and would be the same next time: the job fails, its row saying why."""
    p = XnatCallbackParams.model_validate(dict(args))
    client = client or XnatClient(p.xnat_url, p.xnat_alias, p.xnat_secret)
    tokens = XnatTokens(ledger.db)
    try:
        open_with_best_token(client, tokens, (p.xnat_alias, p.xnat_secret))
        try:
            renew_if_due(client, tokens, now())
            report = publish_scan(
                ledger,
                store,
                client,
                p.scan_hash,
                project=p.xnat_project,
                results_bucket=p.results_bucket,
            )
        finally:
            client.close()
    except XnatUnavailable as exc:
        ledger.release(p.job_key, p.lease_token, delay_s=RELEASE_DELAY_S, reason=str(exc)[:2000])
        return CallbackOutcome(job_key=p.job_key, status="queued", reason=str(exc))
    except (XnatError, QmroctError) as exc:
        reason = f"xnat-callback for scan {p.scan_hash}: {exc}"
        ledger.fail(p.job_key, p.lease_token, reason[:2000], retry=False)
        return CallbackOutcome(job_key=p.job_key, status="failed", reason=reason)
    ledger.complete(p.job_key, p.lease_token)
    return CallbackOutcome(job_key=p.job_key, status="done", push=report)

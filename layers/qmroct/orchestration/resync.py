"""Re-drive what an event never started: the buckets are compared with the catalog.

OpenWhisk drops a rule's activation silently when the action is throttled, while the trigger
fire still answered 202, so MinIO has no reason to retry. An upload or a publication can
therefore arrive without its on-image-stored or on-measure-published ever running. The
scheduler's alarm tick calls :func:`resync` every ``sweep_s`` seconds: each object in the
ingest bucket that the catalog does not know is catalogued (with its jobs), and each measure
descriptor whose state the registry does not hold is applied. Both paths are the event
handlers' own functions, so a sweep and a late event agree, and both are idempotent.

A sweep lists whole buckets, so its cost grows with the number of stored scans. Run every
``sweep_s`` whatever that number, it would make the scheduler's cost per scan grow with the
archive (a backfill of N scans would cost O(N^2)). The interval therefore stretches with the
last listing: at least ``sweep_s``, and at least the objects listed divided by
``SWEEP_OBJECTS_PER_S``, so sweeping never reads more than that many objects a second on
average, however large the archive. A dropped event is then found within about
``max(sweep_s, stored scans / SWEEP_OBJECTS_PER_S)`` seconds (100 s at 10,000 scans).
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, Field

from qmroct.errors import InvalidKey, QmroctError
from qmroct.events import ObjectEvent
from qmroct.orchestration.context import ActionContext
from qmroct.orchestration.ingest import catalog_object, content_hash
from qmroct.orchestration.publication import apply_publication, read_publication
from qmroct.storage.buckets import INGEST_BUCKET, MEASURES_BUCKET

log = logging.getLogger(__name__)

#: Objects a second the sweep may list on average (see the module docstring).
SWEEP_OBJECTS_PER_S = 100.0

# Per container: the alarm ticks every minute in production; a sweep lists whole buckets,
# so it runs at most once per sweep interval however often the scheduler is woken.
_LAST_SWEEP: dict[str, float] = {}
# Objects the container's last sweep listed, which sets the next interval.
_LAST_LISTED: dict[str, int] = {}


class ResyncReport(BaseModel):
    scans: int = 0
    publications: int = 0
    skipped: list[str] = Field(default_factory=list)


def interval_s(ctx: ActionContext) -> float:
    """Seconds until the next sweep: ``sweep_s``, or longer after a long listing."""
    listed = _LAST_LISTED.get(str(id(ctx.ledger)), 0)
    return max(ctx.sweep_s, listed / SWEEP_OBJECTS_PER_S)


def due(ctx: ActionContext, *, now: float | None = None) -> bool:
    now = time.monotonic() if now is None else now
    key = str(id(ctx.ledger))
    last = _LAST_SWEEP.get(key)
    if last is not None and now - last < interval_s(ctx):
        return False
    _LAST_SWEEP[key] = now
    return True


def resync(ctx: ActionContext) -> ResyncReport:
    report = ResyncReport()
    catalog = ctx.ledger.catalog
    known = catalog.object_keys(INGEST_BUCKET)
    listed = 0
    for info in ctx.store.list(INGEST_BUCKET):
        listed += 1
        if info.key in known:
            continue
        obj = ObjectEvent(
            bucket=INGEST_BUCKET, key=info.key, size=info.size, etag=info.etag,
            version_id=info.version_id, event_name="s3:ObjectCreated:Put",
            metadata=info.metadata,
        )  # fmt: skip
        try:
            new, _ = catalog_object(ctx.ledger, obj, content_hash(ctx, obj))
        except (InvalidKey, ValueError, QmroctError) as exc:
            report.skipped.append(f"{INGEST_BUCKET}/{info.key}: {exc}")
            continue
        report.scans += int(new)
    registry = {(m.name, m.version): m.state.value for m in catalog.measures()}
    for info in ctx.store.list(MEASURES_BUCKET):
        listed += 1
        if not info.key.endswith(".json"):
            continue
        try:
            pub = read_publication(ctx.store, MEASURES_BUCKET, info.key, info.version_id)
        except QmroctError as exc:
            report.skipped.append(f"{MEASURES_BUCKET}/{info.key}: {exc}")
            continue
        if registry.get((pub.name, pub.version)) != pub.state:
            apply_publication(ctx.ledger, pub)
            report.publications += 1
    _LAST_LISTED[str(id(ctx.ledger))] = listed
    if report.scans or report.publications:
        log.warning(
            "resync: %d scans and %d publications had no event handled", report.scans,
            report.publications,
        )  # fmt: skip
    return report

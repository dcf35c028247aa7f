"""on-image-stored: catalog a stored scan by content hash and enqueue its jobs.

MinIO delivers events at least once, so everything here is idempotent: the scan's identity is
the SHA-256 of its bytes and every job key is deterministic.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from qmroct.errors import InvalidKey, QmroctError
from qmroct.events import EventLog, ObjectEvent
from qmroct.orchestration.context import ActionContext
from qmroct.orchestration.invoking import wake_scheduler
from qmroct.orchestration.models import product_version
from qmroct.storage.buckets import INGEST_BUCKET, parse_scan_key
from qmroct.storage.catalog import Catalog
from qmroct.storage.ledger import PRIORITY_UPLOAD, JobSpec, Ledger
from qmroct.storage.records import JobKind, MeasureVersion, ScanRecord, check_hash
from qmroct.triggers.filters import Route, classify

log = logging.getLogger(__name__)

_HASH_METADATA = ("sha256", "x-amz-meta-sha256")


class IngestReport(BaseModel):
    scans: list[str] = Field(default_factory=list)
    new_scans: int = 0
    jobs_enqueued: int = 0
    skipped: list[str] = Field(default_factory=list)


def metadata_hash(metadata: Mapping[str, str]) -> str | None:
    """The gateway's SHA-256 from user metadata, whatever the header case."""
    lower = {k.lower(): v for k, v in metadata.items()}
    for name in _HASH_METADATA:
        value = lower.get(name, "").strip().lower()
        if value:
            return check_hash(value)
    return None


class EventMismatch(ValueError):
    """An event says something about its object that the object contradicts."""


def content_hash(ctx: ActionContext, obj: ObjectEvent) -> str:
    """The scan's identity, computed from the object's bytes at the event's version.

    An event is a claim, not a proof: a forged, replayed or late event may name a key that
    does not exist (the store raises ObjectNotFound) or carry a ``sha256`` that is not the
    object's. The object is read and hashed, and a claimed hash that differs is refused, so a
    scan is never catalogued under a hash its bytes do not have.
    """
    claimed = metadata_hash(obj.metadata)
    data = ctx.store.get(obj.bucket, obj.key, version_id=obj.version_id)
    computed = hashlib.sha256(data).hexdigest()
    if claimed and claimed != computed:
        raise EventMismatch(
            f"{obj.bucket}/{obj.key}: the event claims sha256 {claimed[:16]}..., the object's"
            f" bytes hash to {computed[:16]}..."
        )
    return computed


def _user_meta(metadata: Mapping[str, str], name: str) -> str:
    """One user-metadata value, as the event names it (``X-Amz-Meta-Pattern``) or bare."""
    for k, v in metadata.items():
        if k.lower().removeprefix("x-amz-meta-") == name:
            return v
    return ""


def jobs_for_scan(
    scan_hash: str, measures: list[MeasureVersion], *, priority: int = PRIORITY_UPLOAD
) -> list[JobSpec]:
    """One job per measure version, and one derive job per product they require."""
    specs: list[JobSpec] = []
    products: set[str] = set()
    for m in measures:
        specs.append(
            JobSpec(
                kind=JobKind.MEASURE,
                scan_hash=scan_hash,
                measure=m.name,
                version=m.version,
                action=m.action,
                params=m.params,
                priority=priority,
                needs=m.requires,
            )
        )
        products.update(m.requires)
    for p in sorted(products):
        specs.append(
            JobSpec(
                kind=JobKind.DERIVE,
                scan_hash=scan_hash,
                measure=p,
                version=product_version(p),
                action=f"run-derive-{p}",
                priority=priority,
            )
        )
    return specs


def catalog_object(ledger: Ledger, obj: ObjectEvent, scan_hash: str) -> tuple[bool, int]:
    """Record the scan and enqueue its jobs; return (new scan?, jobs enqueued)."""
    parts = parse_scan_key(obj.key)
    catalog: Catalog = ledger.catalog
    new = catalog.add_scan(
        ScanRecord(
            scan_hash=scan_hash,
            bucket=obj.bucket,
            key=obj.key,
            version_id=obj.version_id,
            size=obj.size,
            format=parts.ext.lower(),
            pattern=_user_meta(obj.metadata, "pattern"),
            project=parts.project,
            subject=parts.subject,
            session=parts.session,
            scan=parts.scan,
            stored_at=datetime.now(UTC),
        )
    )
    enqueued = ledger.enqueue_many(jobs_for_scan(scan_hash, catalog.active_measures()))
    return new, enqueued


def on_image_stored(
    ctx: ActionContext, event: Mapping[str, Any], *, bucket: str = INGEST_BUCKET
) -> IngestReport:
    """Handle one MinIO event body (the trigger's parameters)."""
    report = IngestReport()
    route = Route(bucket=bucket, trigger="image-stored")
    for obj, matched, reason in classify(EventLog.model_validate(dict(event)), [route]):
        where = f"{obj.bucket}/{obj.key}"
        if matched is None:
            report.skipped.append(f"{where}: {reason}")
            continue
        try:
            scan_hash = content_hash(ctx, obj)
            new, enqueued = catalog_object(ctx.ledger, obj, scan_hash)
        except (InvalidKey, ValueError, QmroctError) as exc:
            report.skipped.append(f"{where}: {exc}")
            continue
        report.scans.append(scan_hash)
        report.new_scans += int(new)
        report.jobs_enqueued += enqueued
    if report.jobs_enqueued:
        wake_scheduler(ctx)
    return report

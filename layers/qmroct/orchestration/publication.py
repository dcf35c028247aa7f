"""Measure publication: the descriptor in s3://oct-measures/{name}/{version}.json, and what the
on-measure-published action does with it.

Publishing a version registers it and enqueues one low-priority backfill job per stored scan.
Retiring (the same object written again with ``state: retired``) stops new jobs, cancels the
version's waiting jobs and keeps every result.

The algebra, whatever the order, repetition or crashes of publish, update and retire events:
each measure's active version is its highest published one; every scan gets a job of it
(cancelled jobs of it are revived), its latest value is current wherever it exists
(:meth:`Ledger.promote`), and every other value is archived, never deleted. A descriptor older
than the registry's retirement of its version is stale (a replayed or late event) and changes
nothing. One publication is applied in one transaction, so a crash leaves the registry as it
was and the resync sweep applies it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from qmroct.errors import QmroctError
from qmroct.events import EventLog
from qmroct.objectstore.base import ObjectStore
from qmroct.orchestration.context import ActionContext
from qmroct.orchestration.ingest import jobs_for_scan
from qmroct.orchestration.invoking import wake_scheduler
from qmroct.storage.buckets import MEASURES_BUCKET, measure_key
from qmroct.storage.ledger import PRIORITY_BACKFILL, Ledger
from qmroct.storage.records import MeasureState, MeasureVersion, version_key
from qmroct.triggers.filters import Route, classify

log = logging.getLogger(__name__)


class PublicationError(QmroctError):
    """A measure descriptor object could not be used (``key`` names it)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class MeasurePublication(BaseModel):
    """The JSON object at ``oct-measures/{name}/{version}.json``."""

    name: str
    version: str
    state: Literal["published", "retired"] = "published"
    action: str = ""
    code_digest: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    requires: list[str] = Field(default_factory=list)
    published_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def registry_entry(self) -> MeasureVersion:
        # The retirement time is the descriptor's own (its write), so a replayed older
        # "published" descriptor is recognisably older than the retirement.
        retired = self.state == "retired"
        return MeasureVersion(
            name=self.name,
            version=self.version,
            action=self.action or f"run-{self.name}",
            code_digest=self.code_digest,
            params_schema=self.params_schema,
            params=self.params,
            requires=self.requires,
            state=MeasureState.RETIRED if retired else MeasureState.PUBLISHED,
            published_at=self.published_at,
            retired_at=self.published_at if retired else None,
        )


def describe_measure(name: str) -> dict[str, Any]:
    """What the measure registry in code says about ``name``: requires, params schema, digest.

    The digest is the SHA-256 of the measure's module source, so a code change shows in every
    result's ``code_digest``. Unknown names give an empty description.
    """
    from qmroct.measures.action import code_digest
    from qmroct.measures.base import registry

    cls = registry().get(name)
    if cls is None:
        return {}
    return {
        "requires": list(cls.requires),
        "params_schema": cls.Params.model_json_schema(),
        "code_digest": code_digest(cls()),
    }


def publish_measure(
    store: ObjectStore,
    name: str,
    version: str,
    *,
    state: Literal["published", "retired"] = "published",
    bucket: str = MEASURES_BUCKET,
    describe: bool = True,
    **fields: Any,
) -> MeasurePublication:
    """Write the descriptor that publishes (or retires) one measure version.

    Fields not given come from the measure's class when ``describe`` is set and it is known.
    Only the descriptor is written (``s3:PutObject``, all the measure-developer role holds):
    creating the bucket and its versioning is the admin's setup (``infra/minio/setup.sh``).
    """
    known = describe_measure(name) if describe else {}
    pub = MeasurePublication(name=name, version=version, state=state, **{**known, **fields})
    body = pub.model_dump_json(indent=2).encode()
    store.put(bucket, measure_key(name, version), body, content_type="application/json")
    return pub


class PublicationReport(BaseModel):
    name: str
    version: str
    state: str
    active: bool
    backfill_enqueued: int = 0
    cancelled: int = 0


def is_stale(known: MeasureVersion | None, pub: MeasurePublication) -> bool:
    """A descriptor written before the registry's retirement of its version (a replayed or late
    event carrying an older copy) must not undo the retirement."""
    if known is None or known.state is not MeasureState.RETIRED or known.retired_at is None:
        return False
    return pub.state == "published" and pub.published_at <= known.retired_at


def apply_publication(ledger: Ledger, pub: MeasurePublication) -> PublicationReport:
    """Register the version; backfill when it is the active one; on retirement, stop its jobs.

    All of it in one transaction (see the module docstring)."""
    with ledger.db.transaction():
        return _apply(ledger, pub)


def _apply(ledger: Ledger, pub: MeasurePublication) -> PublicationReport:
    catalog = ledger.catalog
    stale = is_stale(catalog.measure(pub.name, pub.version), pub)
    if not stale:
        catalog.put_measure(pub.registry_entry())
    active = catalog.active_version(pub.name)
    report = PublicationReport(
        name=pub.name,
        version=pub.version,
        state="stale" if stale else pub.state,
        active=active is not None and active.version == pub.version,
    )
    if stale:
        return report
    if pub.state == "retired":
        report.cancelled = ledger.cancel(pub.name, pub.version, f"{pub.name} {pub.version} retired")
    elif report.active:
        # Waiting jobs of older versions would only produce values that get archived at once.
        for older in catalog.measures(MeasureState.PUBLISHED):
            if older.name == pub.name and version_key(older.version) < version_key(pub.version):
                report.cancelled += ledger.cancel(
                    older.name, older.version, f"superseded by {pub.name} {pub.version}"
                )
    if active is not None:
        # The active version (new, or the previous one after a retirement) covers every scan:
        # keys already present are no-ops, cancelled ones run again, and values it already
        # computed become current again.
        report.backfill_enqueued = _backfill(ledger, active)
        ledger.promote(active.name, active.version)
    return report


def _backfill(ledger: Ledger, m: MeasureVersion, batch: int = 500) -> int:
    total, chunk = 0, []
    for scan in ledger.catalog.scans():
        chunk.extend(jobs_for_scan(scan.scan_hash, [m], priority=PRIORITY_BACKFILL))
        if len(chunk) >= batch:
            total += ledger.enqueue_many(chunk, revive_cancelled=True)
            chunk = []
    return total + ledger.enqueue_many(chunk, revive_cancelled=True)


def read_publication(
    store: ObjectStore, bucket: str, key: str, version_id: str | None
) -> MeasurePublication:
    where = f"{bucket}/{key}"
    try:
        pub = MeasurePublication.model_validate(
            json.loads(store.get(bucket, key, version_id=version_id))
        )
    except (ValueError, TypeError) as exc:
        raise PublicationError(where, f"not a measure descriptor: {exc}") from exc
    if measure_key(pub.name, pub.version) != key:
        raise PublicationError(where, f"describes {pub.name} {pub.version}, not its own key")
    return pub


def on_measure_published(
    ctx: ActionContext, event: Mapping[str, Any], *, bucket: str = MEASURES_BUCKET
) -> list[PublicationReport]:
    """Handle one MinIO event body from the measures bucket."""
    reports: list[PublicationReport] = []
    route = Route(bucket=bucket, trigger="measure-published", suffixes=(".json",))
    for obj, matched, _reason in classify(EventLog.model_validate(dict(event)), [route]):
        if matched is None:
            continue
        # The descriptor as it is now, not the version the event names: a replayed or late
        # event then applies the latest state (idempotent), never an older one.
        reports.append(
            apply_publication(ctx.ledger, read_publication(ctx.store, obj.bucket, obj.key, None))
        )
    if any(r.backfill_enqueued for r in reports):
        wake_scheduler(ctx)
    return reports

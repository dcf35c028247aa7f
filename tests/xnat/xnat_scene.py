"""A ledger, a folder store and scans with measured results, for the XNAT tests."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime

from qmroct.results import MeasureActionResult, ResultStatus
from qmroct.storage.buckets import RESULTS_BUCKET, result_key
from qmroct.storage.ledger import Ledger, job_key
from qmroct.storage.records import ScanRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def add_scan(ledger: Ledger, store, key: str, data: bytes, *, gzipped: bool = False) -> str:  # noqa: ANN001
    """Store a scan under its ingest key (gzip-encoded, as the gateway sends it when that pays)
    and catalog it; returns its content hash, the hash of the plain bytes."""
    scan_hash = hashlib.sha256(data).hexdigest()
    info = store.put("oct-ingest", key, gzip.compress(data) if gzipped else data)
    ledger.catalog.add_scan(
        ScanRecord(
            scan_hash=scan_hash,
            bucket="oct-ingest",
            key=key,
            version_id=info.version_id,
            size=len(data),
            format="heyex_vol",
            pattern="line",
            stored_at=T0,
        )
    )
    return scan_hash


def record_measure(
    ledger: Ledger,
    store,
    scan_hash: str,
    version: str,
    snr: float,
    measure: str = "signal",  # noqa: ANN001
) -> None:
    """Run one measure job through the ledger: its picture in the results bucket, its result."""
    ledger.enqueue("measure", scan_hash, measure, version)
    key = job_key("measure", scan_hash, measure, version)
    (c,) = [c for c in ledger.claim(cap=10) if c.job.job_key == key]
    store.put(
        RESULTS_BUCKET,
        result_key(scan_hash, measure, version),
        f"PNG {scan_hash[:8]} {version}".encode(),
        content_type="image/png",
    )
    ledger.complete(
        key,
        c.lease_token,
        MeasureActionResult(
            job_key=key,
            lease_token=c.lease_token,
            scan_hash=scan_hash,
            measure=measure,
            version=version,
            status=ResultStatus.OK,
            values={"snr_db": snr},
            picture_stored=True,
            started_at=T0,
            ended_at=T0,
        ),
    )

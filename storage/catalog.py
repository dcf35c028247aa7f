"""The catalog: stored scans, the measure registry, derived products, and result queries.

Results are written only through the ledger (``Ledger.complete``), which holds the rule on
archiving; the catalog reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from qmroct.results import StoredResult
from qmroct.storage.db import Database, Row
from qmroct.storage.records import (
    DerivedProduct,
    MeasureState,
    MeasureVersion,
    ScanRecord,
    epoch,
    from_epoch,
    version_key,
)


def _scan(row: Row) -> ScanRecord:
    return ScanRecord(
        scan_hash=row["scan_hash"],
        bucket=row["bucket"],
        key=row["object_key"],
        version_id=row["version_id"],
        size=row["size"],
        format=row["format"],
        pattern=row["pattern"],
        project=row["project_id"],
        subject=row["subject_id"],
        session=row["session_id"],
        scan=row["scan_id"],
        stored_at=from_epoch(row["stored_at"]),
    )


def _measure(row: Row) -> MeasureVersion:
    return MeasureVersion(
        name=row["name"],
        version=row["version"],
        action=row["action"],
        code_digest=row["code_digest"],
        params_schema=json.loads(row["params_schema"]),
        params=json.loads(row["params"]),
        requires=json.loads(row["requires"]),
        state=MeasureState(row["state"]),
        published_at=from_epoch(row["published_at"]),
        retired_at=from_epoch(row["retired_at"]),
    )


def result_from_row(row: Row) -> StoredResult:
    return StoredResult(
        id=row["id"],
        job_key=row["job_key"],
        lease_token=row["lease_token"],
        scan_hash=row["scan_hash"],
        measure=row["measure"],
        version=row["version"],
        status=row["status"],
        values=json.loads(row["result_values"]),
        verdicts=json.loads(row["verdicts"]),
        notes=json.loads(row["notes"]),
        failure=row["error"],
        picture_stored=bool(row["picture_stored"]),
        dicom_stored=bool(row["dicom_stored"]),
        started_at=from_epoch(row["started_at"]),
        ended_at=from_epoch(row["ended_at"]),
        cpu_s=row["cpu_s"],
        max_rss_mb=row["max_rss_mb"],
        params=json.loads(row["params"]),
        code_digest=row["code_digest"],
        activation_id=row["activation_id"],
        current=bool(row["is_current"]),
        recorded_at=from_epoch(row["recorded_at"]),
        superseded_at=from_epoch(row["superseded_at"]),
        superseded_by=row["superseded_by"],
        superseded_reason=row["superseded_reason"],
    )


class Catalog:
    """Scans, measures, derived products and results in the ledger database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- scans ----
    def object_keys(self, bucket: str) -> set[str]:
        """The object keys of ``bucket`` the catalog holds a scan for (the resync sweep)."""
        rows = self.db.query("SELECT object_key FROM scans WHERE bucket = :b", {"b": bucket})
        return {r["object_key"] for r in rows}

    def add_scan(self, scan: ScanRecord) -> bool:
        """Record a scan; return False when its content hash is already known (first copy wins)."""
        n = self.db.execute(
            "INSERT INTO scans (scan_hash, bucket, object_key, version_id, size, format, pattern,"
            " project_id, subject_id, session_id, scan_id, stored_at)"
            " VALUES (:h, :b, :k, :v, :size, :fmt, :pat, :p, :s, :ses, :sc, :t)"
            " ON CONFLICT (scan_hash) DO NOTHING",
            {
                "h": scan.scan_hash,
                "b": scan.bucket,
                "k": scan.key,
                "v": scan.version_id,
                "size": scan.size,
                "fmt": scan.format,
                "pat": scan.pattern,
                "p": scan.project,
                "s": scan.subject,
                "ses": scan.session,
                "sc": scan.scan,
                "t": epoch(scan.stored_at),
            },
        )
        return n > 0

    def scan(self, scan_hash: str) -> ScanRecord | None:
        row = self.db.query_one("SELECT * FROM scans WHERE scan_hash = :h", {"h": scan_hash})
        return _scan(row) if row else None

    def find_scans(self, ref: str) -> list[ScanRecord]:
        """Scans matching a content-hash prefix, or an object key (``bucket/key`` or ``key``)."""
        rows = self.db.query(
            "SELECT * FROM scans WHERE scan_hash LIKE :prefix OR object_key = :ref"
            " OR bucket || '/' || object_key = :ref ORDER BY stored_at",
            {"prefix": ref.lower().replace("%", "").replace("_", "") + "%", "ref": ref},
        )
        return [_scan(r) for r in rows]

    def scans(self, *, batch: int = 500) -> Iterator[ScanRecord]:
        """Every stored scan, in hash order, fetched in batches (keyset pagination)."""
        last = ""
        while True:
            rows = self.db.query(
                "SELECT * FROM scans WHERE scan_hash > :last ORDER BY scan_hash LIMIT :n",
                {"last": last, "n": batch},
            )
            yield from (_scan(r) for r in rows)
            if len(rows) < batch:
                return
            last = rows[-1]["scan_hash"]

    def scan_count(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM scans")
        return int(row["n"]) if row else 0

    # ---- measure registry ----
    def put_measure(self, m: MeasureVersion) -> None:
        """Insert or update one measure version (all fields as given)."""
        params = {
            "name": m.name,
            "version": m.version,
            "action": m.action,
            "digest": m.code_digest,
            "schema": json.dumps(m.params_schema, sort_keys=True),
            "params": json.dumps(m.params, sort_keys=True),
            "requires": json.dumps(m.requires),
            "state": m.state.value,
            "now": time.time(),
            "pub": epoch(m.published_at),
            "ret": epoch(m.retired_at),
        }
        self.db.execute(
            "INSERT INTO measures (name, version, action, code_digest, params_schema, params,"
            " requires, state, registered_at, published_at, retired_at)"
            " VALUES (:name, :version, :action, :digest, :schema, :params, :requires, :state,"
            " :now, :pub, :ret)"
            " ON CONFLICT (name, version) DO UPDATE SET action = excluded.action,"
            " code_digest = excluded.code_digest, params_schema = excluded.params_schema,"
            " params = excluded.params, requires = excluded.requires, state = excluded.state,"
            " published_at = COALESCE(measures.published_at, excluded.published_at),"
            " retired_at = excluded.retired_at",
            params,
        )

    def measure(self, name: str, version: str) -> MeasureVersion | None:
        row = self.db.query_one(
            "SELECT * FROM measures WHERE name = :n AND version = :v", {"n": name, "v": version}
        )
        return _measure(row) if row else None

    def measures(self, state: MeasureState | None = None) -> list[MeasureVersion]:
        if state is None:
            rows = self.db.query("SELECT * FROM measures ORDER BY name")
        else:
            rows = self.db.query(
                "SELECT * FROM measures WHERE state = :s ORDER BY name", {"s": state.value}
            )
        return sorted((_measure(r) for r in rows), key=lambda m: (m.name, version_key(m.version)))

    def active_measures(self) -> list[MeasureVersion]:
        """The version each new scan runs: per measure name, the highest published version.

        Older published versions keep their results but get no new jobs; retiring the newest
        makes the previous published version active again.
        """
        best: dict[str, MeasureVersion] = {}
        for m in self.measures(MeasureState.PUBLISHED):
            cur = best.get(m.name)
            if cur is None or version_key(m.version) > version_key(cur.version):
                best[m.name] = m
        return [best[n] for n in sorted(best)]

    def active_version(self, name: str) -> MeasureVersion | None:
        return next((m for m in self.active_measures() if m.name == name), None)

    # ---- derived products ----
    def add_derived(self, product: DerivedProduct) -> bool:
        n = self.db.execute(
            "INSERT INTO derived (name, scan_hash, bucket, object_key, created_at, job_key)"
            " VALUES (:n, :h, :b, :k, :t, :j) ON CONFLICT (name, scan_hash) DO NOTHING",
            {
                "n": product.name,
                "h": product.scan_hash,
                "b": product.bucket,
                "k": product.key,
                "t": epoch(product.created_at),
                "j": product.job_key,
            },
        )
        return n > 0

    def derived(self, name: str, scan_hash: str) -> DerivedProduct | None:
        row = self.db.query_one(
            "SELECT * FROM derived WHERE name = :n AND scan_hash = :h", {"n": name, "h": scan_hash}
        )
        if row is None:
            return None
        return DerivedProduct(
            name=row["name"],
            scan_hash=row["scan_hash"],
            bucket=row["bucket"],
            key=row["object_key"],
            created_at=from_epoch(row["created_at"]),
            job_key=row["job_key"],
        )

    # ---- results (read side) ----
    def results(
        self, scan_hash: str, measure: str | None = None, *, history: bool = False
    ) -> list[StoredResult]:
        """The current results of a scan; with ``history``, every archived value too.

        Ordered by measure, then newest first.
        """
        sql = "SELECT * FROM results WHERE scan_hash = :h"
        params: dict[str, Any] = {"h": scan_hash}
        if measure is not None:
            sql += " AND measure = :m"
            params["m"] = measure
        if not history:
            sql += " AND is_current = 1"
        sql += " ORDER BY measure, is_current DESC, recorded_at DESC, id DESC"
        return [result_from_row(r) for r in self.db.query(sql, params)]

    def current_result(self, scan_hash: str, measure: str) -> StoredResult | None:
        found = self.results(scan_hash, measure)
        return found[0] if found else None

"""The web view's search index: one row per scan with its facets and OSCAR-IB letters, one row
per numeric value, one per current result (tables ``web_scans``, ``web_values``,
``web_results``, migrations ``020_web.sql`` and ``021_web_ids``), keyed by a small integer
``sid`` given in catalog order.

It is derived data. :meth:`SearchIndex.refresh` follows the catalog and the results table by
their own keys (new scans by anti-join, new results by ``results.id`` above a watermark kept in
``web_state``), so it is incremental, idempotent, and can be rebuilt from nothing with
``qmroct web index --rebuild``. Nothing in the pipeline writes here: the web view never slows
``record-result`` down, and a crash mid-refresh only repeats work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel
from qmroct.measures.verdicts import worst
from qmroct.results import CriterionVerdict
from qmroct.storage.db import Database

LETTERS = ("O", "S", "C", "A", "R", "I", "B")
VERDICT_COLUMNS = {c: f"v_{c.lower()}" for c in LETTERS}
_BATCH = 500


class RefreshStats(BaseModel):
    new_scans: int = 0
    reindexed: int = 0
    headers_read: int = 0
    watermark: int = 0


def numeric(value: Any) -> float | None:
    """A value the range filters can compare: numbers and booleans; NaN and text are not."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def letters_of(results: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The OSCAR-IB verdict per letter over a scan's current results: the worst one wins, as
    :func:`qmroct.measures.suite.oscar_ib_summary` combines them."""
    by_letter: dict[str, list[CriterionVerdict]] = {c: [] for c in LETTERS}
    for r in results:
        for v in json.loads(r["verdicts"]):
            cv = CriterionVerdict.model_validate(v)
            by_letter[cv.criterion].append(cv)
    out = {}
    for c, vs in by_letter.items():
        out[c] = worst(c, vs).verdict.value if vs else ""
    return out


def overall_of(letters: dict[str, str]) -> str:
    if not any(letters.values()):
        return ""
    return "fail" if "fail" in letters.values() else "pass"


class SearchIndex:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- state ----
    def _get_state(self, name: str, default: str = "") -> str:
        row = self.db.query_one("SELECT value FROM web_state WHERE name = :n", {"n": name})
        return row["value"] if row else default

    def _set_state(self, name: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO web_state (name, value) VALUES (:n, :v)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            {"n": name, "v": value},
        )

    # ---- refresh ----
    def refresh(self, *, progress: Callable[[str], None] | None = None) -> RefreshStats:
        """Bring the index up to date with the catalog and the results table."""
        stats = RefreshStats()
        stats.new_scans = self.db.execute(
            "INSERT INTO web_scans (scan_hash, project_id, subject_id, session_id, scan_id,"
            " object_key, pattern, stored_at)"
            " SELECT s.scan_hash, s.project_id, s.subject_id, s.session_id, s.scan_id,"
            " s.object_key, s.pattern, s.stored_at FROM scans s"
            " WHERE NOT EXISTS (SELECT 1 FROM web_scans w WHERE w.scan_hash = s.scan_hash)"
            # Ids follow the catalog's order, so "newest first" is "highest id first".
            " ORDER BY s.stored_at, s.scan_hash"
        )
        mark = int(self._get_state("results_watermark", "0"))
        while True:
            rows = self.db.query(
                "SELECT id, scan_hash FROM results WHERE id > :m ORDER BY id LIMIT :n",
                {"m": mark, "n": _BATCH * 4},
            )
            if not rows:
                break
            hashes = sorted({r["scan_hash"] for r in rows})
            for i in range(0, len(hashes), _BATCH):
                self.reindex(hashes[i : i + _BATCH])
            stats.reindexed += len(hashes)
            mark = int(rows[-1]["id"])
            self._set_state("results_watermark", str(mark))
            if progress:
                progress(f"\rindexed results up to id {mark} ({stats.reindexed} scans)")
        stats.watermark = mark
        return stats

    def reindex(self, hashes: list[str]) -> None:
        """Recompute the index rows of these scans from their current results."""
        if not hashes:
            return
        names = {f"h{i}": h for i, h in enumerate(hashes)}
        inn = "(" + ", ".join(f":{n}" for n in names) + ")"
        sids = {
            r["scan_hash"]: r["sid"]
            for r in self.db.query(
                f"SELECT sid, scan_hash FROM web_scans WHERE scan_hash IN {inn}", names
            )
        }
        rows = self.db.query(
            "SELECT scan_hash, measure, version, status, result_values, verdicts FROM results"
            f" WHERE is_current = 1 AND scan_hash IN {inn}",
            names,
        )
        by_scan: dict[str, list[dict[str, Any]]] = {h: [] for h in hashes if h in sids}
        for r in rows:
            if r["scan_hash"] in by_scan:
                by_scan[r["scan_hash"]].append(r)
        values: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        facets: list[dict[str, Any]] = []
        for h, rs in by_scan.items():
            sid = sids[h]
            device = ""
            pattern = ""
            for r in rs:
                results.append({"i": sid, "m": r["measure"], "v": r["version"], "s": r["status"]})
                vals = json.loads(r["result_values"])
                device = device or str(vals.get("device") or "")
                pattern = pattern or str(vals.get("pattern") or "")
                for k, v in vals.items():
                    num = numeric(v)
                    if num is not None:
                        values.append({"i": sid, "m": r["measure"], "n": k, "x": num})
            letters = letters_of(rs)
            facet = {VERDICT_COLUMNS[c]: letters[c] for c in LETTERS}
            facet.update(i=sid, overall=overall_of(letters), device=device, pattern=pattern)
            facets.append(facet)
        ids = {f"i{k}": sid for k, sid in enumerate(sids.values())}
        in_ids = "(" + ", ".join(f":{n}" for n in ids) + ")"
        with self.db.transaction():
            if ids:
                self.db.execute(f"DELETE FROM web_values WHERE sid IN {in_ids}", ids)
                self.db.execute(f"DELETE FROM web_results WHERE sid IN {in_ids}", ids)
            self.db.execute_many(
                "INSERT INTO web_values (sid, measure, name, num) VALUES (:i, :m, :n, :x)",
                values,
            )
            self.db.execute_many(
                "INSERT INTO web_results (sid, measure, version, status) VALUES (:i, :m, :v, :s)",
                results,
            )
            sets = ", ".join(f"{col} = :{col}" for col in VERDICT_COLUMNS.values())
            # The device and pattern measured from the file fill what the catalog left empty;
            # a header read later (read_headers) is more precise and is kept.
            self.db.execute_many(
                f"UPDATE web_scans SET {sets}, overall = :overall,"
                " device = CASE WHEN header_read = 1 THEN device ELSE :device END,"
                " pattern = CASE WHEN pattern = '' THEN :pattern ELSE pattern END"
                " WHERE sid = :i",
                facets,
            )

    def read_headers(self, fetch: Callable[[str], Any | None], *, limit: int = 50) -> int:
        """Fill device, laterality and acquisition date from the scans' own headers.

        ``fetch(scan_hash)`` returns the scan's metadata (:class:`qmroct.oct.model.ScanMeta`) or
        None when it cannot be read; such a scan is marked (``header_read = 2``) and not retried.
        """
        rows = self.db.query(
            "SELECT scan_hash FROM web_scans WHERE header_read = 0 LIMIT :n", {"n": limit}
        )
        for r in rows:
            meta = fetch(r["scan_hash"])
            if meta is None:
                self.db.execute(
                    "UPDATE web_scans SET header_read = 2 WHERE scan_hash = :h",
                    {"h": r["scan_hash"]},
                )
                continue
            self.db.execute(
                "UPDATE web_scans SET header_read = 1, device = :d, laterality = :l,"
                " acquired_on = :a, pattern = :p WHERE scan_hash = :h",
                {
                    "h": r["scan_hash"],
                    "d": meta.device or "",
                    "l": meta.laterality or "",
                    "a": meta.acquisition_date.isoformat() if meta.acquisition_date else "",
                    "p": meta.pattern.value,
                },
            )
        return len(rows)

    def rebuild(self) -> RefreshStats:
        """Drop every derived row and index again from the catalog."""
        with self.db.transaction():
            for table in ("web_values", "web_results", "web_scans"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("DELETE FROM web_state WHERE name = 'results_watermark'")
        return self.refresh()

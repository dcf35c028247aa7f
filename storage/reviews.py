"""Measure reviews: the tests a developer's deployed measure passed or failed on the test set,
and the approvals that sent a version to production (who, what, when). Never deleted."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from qmroct.storage.db import Database, Row


class ReviewState(StrEnum):
    TESTED = "tested"
    FAILED = "failed"
    APPROVED = "approved"


class MeasureReview(BaseModel):
    measure: str
    version: str
    code_sha256: str
    code_digest: str = ""
    state: ReviewState
    #: where the code came from: "folder" (qmroct measure test) or "sweep" (wsk action update)
    source: str
    summary: dict[str, Any] = Field(default_factory=dict)
    tested_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _review(row: Row) -> MeasureReview:
    return MeasureReview(
        measure=row["measure"],
        version=row["version"],
        code_sha256=row["code_sha256"],
        code_digest=row["code_digest"],
        state=ReviewState(row["state"]),
        source=row["source"],
        summary=json.loads(row["summary"] or "{}"),
        tested_at=_ts(row["tested_at"]),  # type: ignore[arg-type]
        approved_by=row["approved_by"],
        approved_at=_ts(row["approved_at"]),
    )


class Reviews:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record_test(
        self,
        measure: str,
        version: str,
        code_sha256: str,
        *,
        passed: bool,
        code_digest: str,
        source: str,
        summary: dict[str, Any],
    ) -> MeasureReview:
        """Record a test run; an approved row keeps its approval (a re-test adds nothing)."""
        state = ReviewState.TESTED if passed else ReviewState.FAILED
        key = {"m": measure, "v": version, "c": code_sha256}
        with self.db.transaction():
            old = self.get(measure, version, code_sha256)
            if old is not None and old.state is ReviewState.APPROVED:
                return old
            params = {
                **key,
                "d": code_digest,
                "s": state.value,
                "src": source,
                "sum": json.dumps(summary, sort_keys=True, default=str),
                "t": time.time(),
            }
            if old is None:
                self.db.execute(
                    "INSERT INTO measure_reviews (measure, version, code_sha256, code_digest, "
                    "state, source, summary, tested_at) VALUES (:m, :v, :c, :d, :s, :src, :sum, :t)",
                    params,
                )
            else:
                self.db.execute(
                    "UPDATE measure_reviews SET code_digest = :d, state = :s, source = :src, "
                    "summary = :sum, tested_at = :t "
                    "WHERE measure = :m AND version = :v AND code_sha256 = :c",
                    params,
                )
        return self.get(measure, version, code_sha256)  # type: ignore[return-value]

    def approve(self, measure: str, version: str, code_sha256: str, by: str) -> MeasureReview:
        """Mark a passed test as approved by ``by``; ValueError unless it passed."""
        with self.db.transaction():
            old = self.get(measure, version, code_sha256)
            if old is None or old.state is ReviewState.FAILED:
                raise ValueError(
                    f"{measure} {version} (code {code_sha256[:12]}) has no passed test to approve"
                )
            if old.state is not ReviewState.APPROVED:
                self.db.execute(
                    "UPDATE measure_reviews SET state = :s, approved_by = :b, approved_at = :t "
                    "WHERE measure = :m AND version = :v AND code_sha256 = :c",
                    {
                        "s": ReviewState.APPROVED.value,
                        "b": by,
                        "t": time.time(),
                        "m": measure,
                        "v": version,
                        "c": code_sha256,
                    },
                )
        return self.get(measure, version, code_sha256)  # type: ignore[return-value]

    def get(self, measure: str, version: str, code_sha256: str) -> MeasureReview | None:
        row = self.db.query_one(
            "SELECT * FROM measure_reviews WHERE measure = :m AND version = :v AND code_sha256 = :c",
            {"m": measure, "v": version, "c": code_sha256},
        )
        return _review(row) if row else None

    def latest(
        self, measure: str, code_sha256: str, state: ReviewState | None = None
    ) -> MeasureReview | None:
        """The most recent review of this code (optionally in ``state``)."""
        sql = "SELECT * FROM measure_reviews WHERE measure = :m AND code_sha256 = :c"
        params: dict[str, Any] = {"m": measure, "c": code_sha256}
        if state is not None:
            sql += " AND state = :s"
            params["s"] = state.value
        rows = self.db.query(sql + " ORDER BY tested_at DESC", params)
        return _review(rows[0]) if rows else None

    def list(self, measure: str | None = None) -> list[MeasureReview]:
        sql = "SELECT * FROM measure_reviews"
        params: dict[str, Any] = {}
        if measure:
            sql += " WHERE measure = :m"
            params["m"] = measure
        return [_review(r) for r in self.db.query(sql + " ORDER BY tested_at", params)]

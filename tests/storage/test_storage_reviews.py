"""Measure reviews: tests recorded by code, approvals only of passed code, never lost."""

from __future__ import annotations

import pytest
from qmroct.storage.db import connect
from qmroct.storage.reviews import Reviews, ReviewState

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_tests_and_approvals_are_recorded(ledger_url: str) -> None:
    db = connect(ledger_url)
    try:
        reviews = Reviews(db)
        failed = reviews.record_test(
            "m", "1.0.0", SHA_A, passed=False, code_digest="", source="folder",
            summary={"statuses": {"failed": 3}},
        )  # fmt: skip
        assert failed.state is ReviewState.FAILED
        with pytest.raises(ValueError, match="no passed test"):
            reviews.approve("m", "1.0.0", SHA_A, "dr-x")
        with pytest.raises(ValueError, match="no passed test"):
            reviews.approve("m", "1.0.0", SHA_B, "dr-x")
        # The fixed code passes; the same version label, another code.
        ok = reviews.record_test(
            "m", "1.0.0", SHA_B, passed=True, code_digest="sha256:x", source="sweep",
            summary={"statuses": {"ok": 3}},
        )  # fmt: skip
        assert ok.state is ReviewState.TESTED and ok.summary == {"statuses": {"ok": 3}}
        assert reviews.latest("m", SHA_B, ReviewState.TESTED) == ok
        assert reviews.latest("m", SHA_A, ReviewState.TESTED) is None
        done = reviews.approve("m", "1.0.0", SHA_B, "dr-x")
        assert done.state is ReviewState.APPROVED and done.approved_by == "dr-x"
        assert done.approved_at is not None and done.approved_at >= done.tested_at
        # A later failing re-test of approved code does not undo the approval.
        again = reviews.record_test(
            "m", "1.0.0", SHA_B, passed=False, code_digest="sha256:x", source="sweep", summary={}
        )
        assert again.state is ReviewState.APPROVED and again.approved_by == "dr-x"
        assert [(r.code_sha256, r.state) for r in reviews.list("m")] == [
            (SHA_A, ReviewState.FAILED),
            (SHA_B, ReviewState.APPROVED),
        ]
        assert reviews.list("other") == []
    finally:
        db.close()

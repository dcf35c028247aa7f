"""Fixtures of the orchestration tests; the test doubles live in orch_doubles.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from orch_doubles import FakeThrottled, MemoryStore, RecordingInvoker  # noqa: F401
from qmroct.orchestration import invoking
from qmroct.orchestration.context import ActionContext
from qmroct.storage.ledger import Ledger, Policy


@pytest.fixture(autouse=True)
def _throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invoking, "throttled_error", lambda: FakeThrottled)
    import qmroct.orchestration.scheduler as sched

    monkeypatch.setattr(sched, "throttled_error", lambda: FakeThrottled)


@pytest.fixture
def ctx(tmp_path) -> Iterator[ActionContext]:
    ledger = Ledger.open(
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        policy=Policy(lease_s=120, backoff_base_s=0),
    )
    c = ActionContext(ledger=ledger, store=MemoryStore(), ow=RecordingInvoker(), max_inflight=3)
    yield c
    c.close()

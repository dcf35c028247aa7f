"""Faults of the embedded stack: ``qmroct up`` killed mid-run, restarted, nothing lost.

SIGKILL leaves no action worker behind (each watches its parent), and a restart re-queues the
jobs whose activations died with the old stack at once, not after the lease.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from qmroct.embedded.demo import make_demo_scans
from qmroct.embedded.stack import RESTART_REASON
from qmroct.storage.ledger import Ledger
from qmroct.storage.records import JobKind
from upstack import UpStack, gone, processes_under, up_env

TICK_S = 2.0  # StackOptions.alarm_interval_s: the scheduler-tick alarm of `qmroct up`
LEASE_S = 300
MAX_ATTEMPTS = 5


def _ledger(home: Path) -> Ledger:
    return Ledger.open(f"sqlite:///{home / 'ledger.sqlite3'}")


def _jobs(home: Path):  # noqa: ANN202
    ledger = _ledger(home)
    try:
        return ledger.jobs(limit=10_000)
    finally:
        ledger.close()


def _wait(what: str, check, timeout_s: float, poll_s: float = 0.2):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def test_sigkill_mid_run_then_restart_finishes_every_job(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    make_demo_scans(1, inbox)
    env = up_env(
        home,
        QMROCT_MAX_INFLIGHT="2",
        QMROCT_LEASE_SECONDS=str(LEASE_S),
        QMROCT_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
    )
    first = UpStack(home, env, ("--inbox", str(inbox))).start()
    try:
        # Mid-run: activations hold leases, their workers are running.
        leased = _wait(
            "a job in flight",
            lambda: [j for j in _jobs(home) if j.state.value == "leased" and j.activation_id],
            timeout_s=180,
            poll_s=0.05,
        )
        assert processes_under(home / "whisk" / "containers")
        first.stop(signal.SIGKILL)
        # The settings reached the actions that enqueue and lease the jobs.
        assert {j.max_attempts for j in _jobs(home)} == {MAX_ATTEMPTS}
        assert all(abs(j.lease_expires - j.leased_at - LEASE_S) < 1 for j in leased)
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.stop(signal.SIGKILL)
    # No orphaned worker: each one saw its parent go and killed its process group.
    assert gone(home) == [], "action workers outlived qmroct up"
    total = len(_jobs(home))

    second = UpStack(home, env, ("--inbox", str(inbox))).start()
    restarted = time.time()
    try:
        lost = {j.job_key for j in leased}
        requeued = {j.job_key: j for j in _jobs(home) if j.job_key in lost}
        assert all(RESTART_REASON in (j.last_error or "") for j in requeued.values())

        def back_in_flight() -> float | None:
            jobs = {j.job_key: j for j in _jobs(home)}
            again = [
                jobs[k].leased_at or restarted
                for k in lost
                if jobs[k].state.value in ("leased", "done")
            ]
            return max(again) - restarted if len(again) == len(lost) else None

        idle_s = _wait("the lost jobs re-driven", back_in_flight, timeout_s=LEASE_S / 10)
        print(f"lost jobs leased again {idle_s:.2f} s after the restart (tick {TICK_S} s)")

        def finished():  # noqa: ANN202
            jobs = _jobs(home)
            return jobs if all(j.state.value in ("done", "dead") for j in jobs) else None

        jobs = _wait("every job finished", finished, timeout_s=600, poll_s=0.5)
        assert len(jobs) >= total
        dead = [(j.job_key, j.last_error) for j in jobs if j.state.value == "dead"]
        assert dead == []
        assert {j.kind for j in jobs} >= {JobKind.MEASURE}
    finally:
        second.stop(signal.SIGTERM)
    assert gone(home) == []

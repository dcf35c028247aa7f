"""Faults of the embedded stack: ``qmroct up`` killed mid-backfill, restarted, nothing lost.

SIGKILL leaves no action worker behind (each watches its parent), and a restart re-queues the
jobs whose activations died with the old stack at once, not after the lease.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from qmroct.embedded.demo import make_demo_scans
from qmroct.embedded.stack import RESTART_REASON
from qmroct.runtime.records import ActivationStore
from qmroct.storage.ledger import Ledger
from qmroct.storage.records import JobKind
from upstack import UpStack, gone, processes_under, up_env

TICK_S = 2.0  # StackOptions.alarm_interval_s: the scheduler-tick alarm of `qmroct up`
LEASE_S = 300
MAX_ATTEMPTS = 5
SCANS = 2


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


def _scheduler_starts(home: Path, since_ms: int) -> list[int]:
    store = ActivationStore(home / "whisk")
    try:
        return sorted(
            r.start for r in store.list(name="qmroct/scheduler", since=since_ms, limit=None)
        )
    finally:
        store.close()


def _finished(home: Path):  # noqa: ANN202
    jobs = _jobs(home)
    return jobs if jobs and all(j.state.value in ("done", "dead") for j in jobs) else None


def test_sigkill_mid_backfill_then_restart_finishes_every_job(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    make_demo_scans(SCANS, inbox)
    env = up_env(
        home,
        QMROCT_MAX_INFLIGHT="2",
        QMROCT_LEASE_SECONDS=str(LEASE_S),
        QMROCT_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
    )
    first = UpStack(home, env, ("--inbox", str(inbox))).start()
    try:
        # The stored scans are measured, then new measure versions start a backfill over them.
        _wait("the upload's jobs done", lambda: _finished(home), timeout_s=600, poll_s=0.5)
        # Four new measure versions at once: more backfill jobs than the cap, so some wait
        # their turn (published one by one, a warm stack finishes each backfill before the
        # next publication lands, and nothing is left in flight to kill).
        publishes = [
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("qmroct")),
                    "measure",
                    "publish",
                    name,
                    "--version",
                    "9.0.0",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("signal", "sharpness", "centration", "illumination")
        ]
        for publish in publishes:
            _, err = publish.communicate(timeout=120)
            assert publish.returncode == 0, err
        # Mid-backfill: its activation holds a lease and its workers are running.
        leased = _wait(
            "a backfill job in flight",
            lambda: [
                j
                for j in _jobs(home)
                if j.version == "9.0.0" and j.state.value == "leased" and j.activation_id
            ],
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
    # Lost = leased when the stack died, read from the ledger it left: a job seen leased above
    # may have finished in the moment before the kill, and then nothing was lost of it.
    lost_jobs = [j for j in _jobs(home) if j.state.value == "leased"]
    assert lost_jobs, "the kill caught no job in flight"

    restarted_ms = int(time.time() * 1000)
    second = UpStack(home, env, ("--inbox", str(inbox))).start()
    try:
        lost = {j.job_key for j in lost_jobs}
        requeued = {j.job_key: j for j in _jobs(home) if j.job_key in lost}
        assert all(RESTART_REASON in (j.last_error or "") for j in requeued.values())

        def back_in_flight() -> list[float] | None:
            jobs = {j.job_key: j for j in _jobs(home)}
            again = [
                jobs[k].leased_at
                for k in lost
                if jobs[k].state.value in ("leased", "done") and jobs[k].leased_at
            ]
            return again if len(again) == len(lost) else None

        again = _wait("the lost jobs re-driven", back_in_flight, timeout_s=LEASE_S / 10)
        # No lost job waited longer than one scheduler tick: each was leased again before the
        # restarted stack's second tick began (the first fires as it starts). Counted in ticks,
        # not seconds, so a slow machine cannot make it pass or fail.
        _wait(
            "two scheduler ticks",
            lambda: len(_scheduler_starts(home, restarted_ms)) >= 2,
            timeout_s=60,
        )
        ticks = _scheduler_starts(home, restarted_ms)
        assert max(again) * 1000 <= ticks[1], (again, ticks[:3])
        print(f"lost jobs leased again {max(again) - restarted_ms / 1000:.2f} s after the restart")

        jobs = _wait("every job finished", lambda: _finished(home), timeout_s=600, poll_s=0.5)
        assert len(jobs) >= total
        dead = [(j.job_key, j.last_error) for j in jobs if j.state.value == "dead"]
        assert dead == []
        assert {j.kind for j in jobs} >= {JobKind.MEASURE}
        done = [j for j in jobs if j.version == "9.0.0" and j.state.value == "done"]
        assert len(done) == 4 * SCANS
    finally:
        second.stop(signal.SIGTERM)
    assert gone(home) == []

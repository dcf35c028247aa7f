"""The cap is exact under concurrent claimers: threads and processes, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import random
import threading
from collections import Counter

import pytest
from qmroct.storage.ledger import Ledger, Policy

CAP = 5
JOBS = 60
WORKERS = 6


def h(n: int) -> str:
    return hashlib.sha256(f"scan-{n}".encode()).hexdigest()


def _fill(url: str) -> None:
    led = Ledger.open(url)
    for i in range(JOBS):
        led.enqueue("measure", h(i), "signal", "1.0.0")
    led.close()


def _burst(url: str, barrier, out) -> None:
    led = Ledger.open(url, policy=Policy(lease_s=600))
    barrier.wait()
    out.put(len(led.claim(cap=CAP)))
    led.close()


def _churn(url: str, held, lock, peak, done_q, seed: int) -> None:
    """Claim, hold, complete until the queue is empty, tracking leases held across workers.

    The shared count is raised after a claim and lowered before a completion, so it never
    exceeds the ledger's own in-flight count: seeing it above the cap proves a violation.
    """
    rnd = random.Random(seed)
    led = Ledger.open(url, policy=Policy(lease_s=600))
    idle = 0
    while idle < 3:
        claims = led.claim(cap=CAP, limit=rnd.randint(1, 3))
        if not claims:
            idle = idle + 1 if led.counts().total("queued") == 0 else 0
            continue
        with lock:
            held.value += len(claims)
            peak.value = max(peak.value, held.value)
        for c in claims:
            with lock:
                held.value -= 1
            led.complete(c.job.job_key, c.lease_token)
            done_q.put(c.job.job_key)
    led.close()


def _drain(q) -> list:
    items = []
    while not q.empty():
        items.append(q.get())
    return items


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_burst_of_claimers_takes_exactly_the_cap(ledger_url: str, mode: str) -> None:
    _fill(ledger_url)
    if mode == "threads":
        import queue

        barrier, out = threading.Barrier(WORKERS), queue.Queue()
        workers = [
            threading.Thread(target=_burst, args=(ledger_url, barrier, out)) for _ in range(WORKERS)
        ]
    else:
        ctx = mp.get_context("fork")
        barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
        workers = [
            ctx.Process(target=_burst, args=(ledger_url, barrier, out)) for _ in range(WORKERS)
        ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    claimed = [out.get(timeout=10) for _ in range(WORKERS)]
    assert sum(claimed) == CAP
    led = Ledger.open(ledger_url)
    assert led.in_flight() == CAP
    led.close()


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_churning_claimers_never_exceed_the_cap_and_lose_nothing(
    ledger_url: str, mode: str
) -> None:
    _fill(ledger_url)
    if mode == "threads":
        import queue
        from types import SimpleNamespace

        lock = threading.Lock()
        held, peak = SimpleNamespace(value=0), SimpleNamespace(value=0)
        done_q: object = queue.Queue()
        make = threading.Thread
    else:
        ctx = mp.get_context("fork")
        lock = ctx.Lock()
        held, peak = ctx.Value("i", 0, lock=False), ctx.Value("i", 0, lock=False)
        done_q = ctx.Queue()
        make = ctx.Process
    workers = [
        make(target=_churn, args=(ledger_url, held, lock, peak, done_q, seed))
        for seed in range(WORKERS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
    done = (
        Counter(_drain(done_q))
        if mode == "threads"
        else Counter(done_q.get(timeout=10) for _ in range(JOBS))
    )
    assert 0 < peak.value <= CAP
    assert len(done) == JOBS and set(done.values()) == {1}  # each job exactly once
    led = Ledger.open(ledger_url)
    counts = led.counts()
    assert counts.total("done") == JOBS and counts.in_flight == 0
    led.close()

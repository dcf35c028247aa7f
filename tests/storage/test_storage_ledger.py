from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from qmroct.results import MeasureActionResult, ResultStatus
from qmroct.storage.ledger import (
    PRIORITY_BACKFILL,
    PRIORITY_UPLOAD,
    Ledger,
    LedgerError,
    Policy,
    StaleLease,
    UnknownJob,
    job_key,
)
from qmroct.storage.records import DerivedProduct, JobKind, JobState


def h(n: int) -> str:
    return hashlib.sha256(f"scan-{n}".encode()).hexdigest()


def result_for(key: str, token: str, scan: str, measure: str, version: str, snr: float, **kw):
    return MeasureActionResult(
        job_key=key,
        lease_token=token,
        scan_hash=scan,
        measure=measure,
        version=version,
        status=kw.pop("status", ResultStatus.OK),
        values={"snr_db": snr},
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ended_at=datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),
        **kw,
    )


@pytest.fixture
def ledger(ledger_url, clock) -> Ledger:
    led = Ledger.open(ledger_url, policy=Policy(lease_s=60, max_attempts=3), clock=clock)
    yield led
    led.close()


def test_job_key_is_deterministic_and_validated() -> None:
    a = job_key("measure", h(1), "signal", "1.0.0")
    assert a == job_key(JobKind.MEASURE, h(1), "signal", "1.0.0")
    assert a != job_key("measure", h(1), "signal", "1.0.1")
    assert a != job_key("derive", h(1), "signal", "1.0.0")
    with pytest.raises(ValueError, match="sha256"):
        job_key("measure", "../etc", "signal", "1")
    with pytest.raises(ValueError, match="invalid measure"):
        job_key("measure", h(1), "sig/nal", "1")


def test_repeated_events_make_one_job_and_one_result(ledger: Ledger) -> None:
    # three deliveries of the same event
    added = [ledger.enqueue("measure", h(1), "signal", "1.0.0") for _ in range(3)]
    assert added == [True, False, False]
    assert ledger.counts().total("queued") == 1
    (claim,) = ledger.claim(cap=4)
    key = claim.job.job_key
    res = result_for(key, claim.lease_token, h(1), "signal", "1.0.0", 20.0)
    ledger.complete(key, claim.lease_token, res)
    # the repeated completion (a redelivered record-result) is a no-op returning the same row
    again = ledger.complete(key, claim.lease_token, res)
    assert again is not None and again.values == {"snr_db": 20.0}
    assert ledger.enqueue("measure", h(1), "signal", "1.0.0") is False
    assert ledger.claim(cap=4) == []
    assert len(ledger.results(h(1), history=True)) == 1


def test_expired_lease_is_redriven_exactly_once_and_stale_token_refused(ledger, clock) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0")
    (first,) = ledger.claim(cap=1)
    assert ledger.claim(cap=1) == []  # in flight counts against the cap
    clock.advance(30)
    assert ledger.reclaim_expired() == []  # not yet expired
    clock.advance(31)
    assert ledger.reclaim_expired() == [first.job.job_key]
    assert ledger.reclaim_expired() == []  # only once
    (second,) = ledger.claim(cap=1)
    assert second.job.job_key == first.job.job_key
    assert second.lease_token != first.lease_token
    assert second.job.attempts == 2
    key = first.job.job_key
    late = result_for(key, first.lease_token, h(1), "signal", "1.0.0", 1.0)
    with pytest.raises(StaleLease, match="not current"):
        ledger.complete(key, first.lease_token, late)
    with pytest.raises(StaleLease):
        ledger.fail(key, first.lease_token, "late failure")
    with pytest.raises(StaleLease):
        ledger.release(key, first.lease_token)
    ledger.complete(
        key, second.lease_token, result_for(key, second.lease_token, h(1), "signal", "1.0.0", 2.0)
    )
    assert [r.values["snr_db"] for r in ledger.results(h(1), history=True)] == [2.0]
    with pytest.raises(UnknownJob):
        ledger.complete("measure/x/1/" + h(9), "t")


def test_backoff_then_dead_letter_with_last_error(ledger, clock) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0")
    errors = ["timeout", "out of memory", "corrupt scan: truncated"]
    for i, err in enumerate(errors, start=1):
        (c,) = ledger.claim(cap=1)
        assert c.job.attempts == i
        state = ledger.fail(c.job.job_key, c.lease_token, err)
        if i < 3:
            assert state is JobState.FAILED
            assert ledger.retry_due() == 0  # backoff not passed yet
            assert ledger.claim(cap=1) == []
            clock.advance(ledger.policy.backoff(i) - 1)
            assert ledger.retry_due() == 0
            clock.advance(1)
            assert ledger.retry_due() == 1
    job = ledger.job(c.job.job_key)
    assert job.state is JobState.DEAD
    assert job.last_error == "corrupt scan: truncated"
    assert ledger.counts().by_kind["measure"]["dead"] == 1
    assert ledger.policy.backoff(1) < ledger.policy.backoff(2)
    # Filters take the enum or its text (as `qmroct status` passes it).
    assert [j.job_key for j in ledger.jobs(state="dead", kind="measure")] == [job.job_key]
    assert ledger.jobs(state=JobState.QUEUED) == []


def test_dead_failure_is_stored_as_a_failed_result(ledger) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0", max_attempts=1)
    (c,) = ledger.claim(cap=1)
    res = result_for(
        c.job.job_key,
        c.lease_token,
        h(1),
        "signal",
        "1.0.0",
        0.0,
        status=ResultStatus.FAILED,
        failure="truncated file",
    )
    assert ledger.fail(c.job.job_key, c.lease_token, "truncated file", result=res) is JobState.DEAD
    (stored,) = ledger.results(h(1))
    assert stored.status is ResultStatus.FAILED and stored.failure == "truncated file"


def test_expired_lease_out_of_attempts_goes_dead(ledger, clock) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0", max_attempts=1)
    (c,) = ledger.claim(cap=1)
    ledger.set_activation(c.job.job_key, c.lease_token, "act-123")
    clock.advance(61)
    assert ledger.reclaim_expired() == []
    job = ledger.job(c.job.job_key)
    assert job.state is JobState.DEAD and "act-123" in job.last_error


def test_release_does_not_count_an_attempt(ledger) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0", max_attempts=1)
    for _ in range(5):  # five 429s in a row never kill the job
        (c,) = ledger.claim(cap=1)
        ledger.release(c.job.job_key, c.lease_token, reason="429 throttled")
    job = ledger.job(c.job.job_key)
    assert job.state is JobState.QUEUED and job.attempts == 0
    assert ledger.in_flight() == 0


def test_uploads_before_backfill_without_starvation(ledger, clock) -> None:
    for i in range(3):
        ledger.enqueue("measure", h(i), "signal", "2.0.0", priority=PRIORITY_BACKFILL)
    clock.advance(1)
    for i in range(10, 13):
        ledger.enqueue("measure", h(i), "signal", "2.0.0", priority=PRIORITY_UPLOAD)
    got = {c.job.scan_hash for c in ledger.claim(cap=3)}
    assert got == {h(10), h(11), h(12)}  # uploads first
    # A steady stream of uploads: once the backfill has waited longer than the head start
    # (priority gap x aging_s), it is served ahead of newly arrived uploads.
    head_start = (PRIORITY_BACKFILL - PRIORITY_UPLOAD) * ledger.policy.aging_s
    clock.advance(head_start + 1)
    ledger.enqueue("measure", h(20), "signal", "2.0.0", priority=PRIORITY_UPLOAD)
    (got,) = ledger.claim(cap=4, limit=1)
    assert got.job.scan_hash in {h(0), h(1), h(2)}


def test_dependencies_wait_for_the_derived_product(ledger) -> None:
    ledger.enqueue("measure", h(1), "centration", "1.0.0", needs=["segmentation"])
    ledger.enqueue("derive", h(1), "segmentation", "1")
    (c,) = ledger.claim(cap=4)
    assert c.job.kind is JobKind.DERIVE
    assert ledger.job(job_key("measure", h(1), "centration", "1.0.0")).needs == ["segmentation"]
    assert ledger.claim(cap=4) == []
    with pytest.raises(LedgerError, match="complete_derived on a measure"):
        ledger.enqueue("measure", h(2), "signal", "1.0.0")
        (m,) = ledger.claim(cap=4)
        ledger.complete_derived(m.job.job_key, m.lease_token, bucket="b", object_key="k")
    prod = ledger.complete_derived(
        c.job.job_key, c.lease_token, bucket="oct-derived", object_key=f"segmentation/{h(1)}.npz"
    )
    assert isinstance(prod, DerivedProduct) and prod.name == "segmentation"
    (w,) = ledger.claim(cap=4)
    assert w.job.measure == "centration"
    assert w.job.needs == ["segmentation"] and c.job.needs == []  # a claim carries its needs


def test_a_claim_carries_every_need_in_order(ledger) -> None:
    ledger.enqueue("measure", h(3), "thickness", "1.0.0", needs=["segmentation", "layers"])
    for product in ("layers", "segmentation"):
        ledger.catalog.add_derived(
            DerivedProduct(name=product, scan_hash=h(3), bucket="oct-derived", key=product,
                           created_at=datetime(2026, 1, 1, tzinfo=UTC))
        )  # fmt: skip
    (c,) = ledger.claim(cap=4)
    assert c.job.needs == ["layers", "segmentation"] == ledger.job(c.job.job_key).needs


def test_set_activation_checks_the_lease(ledger, clock) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0")
    (c,) = ledger.claim(cap=1)
    with pytest.raises(StaleLease, match="lease token is not current"):
        ledger.set_activation(c.job.job_key, "not-the-token", "act-1")
    with pytest.raises(UnknownJob):
        ledger.set_activation("measure/signal/1.0.0/" + h(9), c.lease_token, "act-1")
    ledger.set_activation(c.job.job_key, c.lease_token, "act-2")
    assert ledger.job(c.job.job_key).activation_id == "act-2"
    ledger.complete(c.job.job_key, c.lease_token)
    with pytest.raises(StaleLease, match="not leased"):
        ledger.set_activation(c.job.job_key, c.lease_token, "act-3")
    assert ledger.job(c.job.job_key).activation_id == "act-2"  # unchanged


def test_dead_dependency_dead_letters_the_waiting_job(ledger) -> None:
    ledger.enqueue("measure", h(1), "centration", "1.0.0", needs=["segmentation"])
    ledger.enqueue("derive", h(1), "segmentation", "1", max_attempts=1)
    (c,) = ledger.claim(cap=4)
    ledger.fail(c.job.job_key, c.lease_token, "no retina found")
    assert ledger.fail_unsatisfiable() == 1
    job = ledger.job(job_key("measure", h(1), "centration", "1.0.0"))
    assert job.state is JobState.DEAD and "no retina found" in job.last_error


def _run(ledger: Ledger, scan: str, measure: str, version: str, snr: float):
    ledger.enqueue("measure", scan, measure, version)
    key = job_key("measure", scan, measure, version)
    (c,) = [c for c in ledger.claim(cap=100) if c.job.job_key == key]
    return ledger.complete(
        key, c.lease_token, result_for(key, c.lease_token, scan, measure, version, snr)
    )


def test_new_version_archives_the_old_value(ledger) -> None:
    _run(ledger, h(1), "signal", "1.0.0", 10.0)
    stored = _run(ledger, h(1), "signal", "1.1.0", 11.0)
    assert stored.current
    cur, old = ledger.results(h(1), "signal", history=True)
    assert (cur.version, cur.current) == ("1.1.0", True)
    assert (old.version, old.current, old.superseded_by) == ("1.0.0", False, "1.1.0")
    assert old.superseded_at is not None and "superseded by version 1.1.0" in old.superseded_reason
    assert [r.version for r in ledger.results(h(1))] == ["1.1.0"]


def test_old_version_never_overwrites_a_newer_current_value(ledger) -> None:
    # a backfill of 1.9.0 finishes after 1.10.0 was published and computed
    ledger.enqueue("measure", h(1), "signal", "1.9.0", priority=PRIORITY_BACKFILL)
    (old_claim,) = ledger.claim(cap=1)
    _run(ledger, h(1), "signal", "1.10.0", 12.0)
    k = old_claim.job.job_key
    late = ledger.complete(
        k, old_claim.lease_token, result_for(k, old_claim.lease_token, h(1), "signal", "1.9.0", 9.0)
    )
    assert late.current is False and late.superseded_by == "1.10.0"
    (cur,) = ledger.results(h(1), "signal")
    assert cur.version == "1.10.0" and cur.values == {"snr_db": 12.0}
    assert len(ledger.results(h(1), "signal", history=True)) == 2


def test_rerun_of_same_version_archives_and_keeps_both(ledger) -> None:
    _run(ledger, h(1), "signal", "1.0.0", 10.0)
    assert ledger.enqueue("measure", h(1), "signal", "1.0.0", rearm=True) is False
    (c,) = ledger.claim(cap=1)
    k = c.job.job_key
    ledger.complete(k, c.lease_token, result_for(k, c.lease_token, h(1), "signal", "1.0.0", 10.5))
    cur, old = ledger.results(h(1), "signal", history=True)
    assert cur.values == {"snr_db": 10.5} and old.superseded_reason == "re-run of the same version"


def test_result_for_another_job_is_refused(ledger) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0")
    (c,) = ledger.claim(cap=1)
    wrong = result_for(c.job.job_key, c.lease_token, h(2), "signal", "1.0.0", 1.0)
    with pytest.raises(LedgerError, match="not this job"):
        ledger.complete(c.job.job_key, c.lease_token, wrong)
    assert ledger.job(c.job.job_key).state is JobState.LEASED


def test_cancel_stops_waiting_jobs_of_a_version(ledger) -> None:
    for i in range(3):
        ledger.enqueue("measure", h(i), "signal", "1.0.0")
    ledger.enqueue("measure", h(0), "sharpness", "1.0.0")
    assert ledger.cancel("signal", "1.0.0", "measure signal 1.0.0 retired") == 3
    (c,) = ledger.claim(cap=10)
    assert c.job.measure == "sharpness"
    counts = ledger.counts()
    assert counts.by_kind["measure"]["dead"] == 3 and counts.in_flight == 1


def test_xnat_jobs_have_their_own_cap(ledger) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0")
    ledger.enqueue("xnat", h(1), "signal", "1.0.0")
    (m,) = ledger.claim(cap=1)
    assert m.job.kind is JobKind.MEASURE
    (x,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    assert x.job.kind is JobKind.XNAT
    assert ledger.complete(x.job.job_key, x.lease_token) is None
    assert ledger.in_flight() == 1


def _publish(ledger, version: str, state: str = "published") -> None:
    from qmroct.storage.records import MeasureState, MeasureVersion

    ledger.catalog.put_measure(
        MeasureVersion(
            name="signal", version=version, action="run-signal", state=MeasureState(state)
        )
    )


def test_cancelled_jobs_are_revived_by_a_backfill_and_leave_no_row(ledger) -> None:
    from qmroct.storage.ledger import JobSpec

    ledger.enqueue("measure", h(1), "signal", "1.0.0")
    assert ledger.cancel("signal", "1.0.0", "superseded by signal 1.1.0") == 1
    job = ledger.job(job_key("measure", h(1), "signal", "1.0.0"))
    assert job.state is JobState.DEAD and job.last_error.startswith("cancelled: ")
    assert ledger.results(h(1), history=True) == []
    spec = JobSpec(kind="measure", scan_hash=h(1), measure="signal", version="1.0.0")
    assert ledger.enqueue_many([spec]) == 0  # a plain enqueue leaves it dead
    assert ledger.enqueue_many([spec], revive_cancelled=True) == 1
    (c,) = ledger.claim(cap=1)
    assert c.job.attempts == 1


def test_only_the_active_versions_value_is_current_and_promote_restores_it(ledger) -> None:
    _publish(ledger, "1.0.0")
    for v in ("1.0.0", "1.1.0"):
        ledger.enqueue("measure", h(1), "signal", v)
    _publish(ledger, "1.1.0")
    done = {}
    for c in ledger.claim(cap=2):
        r = result_for(c.job.job_key, c.lease_token, h(1), "signal", c.job.version, 1.0)
        done[c.job.version] = ledger.complete(c.job.job_key, c.lease_token, r)
    assert done["1.1.0"].current and not done["1.0.0"].current
    assert "not the active one" in ledger.results(h(1), history=True)[-1].superseded_reason
    _publish(ledger, "1.1.0", "retired")
    assert ledger.promote("signal", "1.0.0") == 1
    (cur,) = ledger.results(h(1))
    assert cur.version == "1.0.0" and cur.id == done["1.0.0"].id
    assert ledger.promote("signal", "1.0.0") == 0  # idempotent
    assert len(ledger.results(h(1), history=True)) == 2


def test_a_lease_that_expires_out_of_attempts_leaves_a_failure_row(ledger, clock) -> None:
    ledger.enqueue("measure", h(1), "signal", "1.0.0", max_attempts=1)
    ledger.claim(cap=1)
    clock.advance(ledger.policy.lease_s + 1)
    assert ledger.reclaim_expired() == []
    (row,) = ledger.results(h(1))
    assert row.status is ResultStatus.FAILED and "lease expired" in row.failure


def test_bulk_enqueue_adds_each_job_once_with_its_needs(ledger) -> None:
    from qmroct.storage.ledger import BULK_MIN_JOBS, JobSpec

    n = BULK_MIN_JOBS + 50  # large enough for PostgreSQL's COPY path
    specs = [
        JobSpec(
            kind=JobKind.MEASURE,
            scan_hash=h(i),
            measure="centration",
            version="1.0.0",
            priority=PRIORITY_BACKFILL,
            needs=["segmentation"],
        )
        for i in range(n)
    ]
    ledger.enqueue("measure", h(0), "centration", "1.0.0", needs=["segmentation"])
    assert ledger.enqueue_many(specs + specs[:10]) == n - 1  # h(0) was there; repeats skipped
    assert ledger.counts().by_kind["measure"]["queued"] == n
    assert ledger.job(job_key("measure", h(7), "centration", "1.0.0")).needs == ["segmentation"]
    # Nothing is claimable until the product exists; then exactly that scan's job is.
    assert ledger.claim(cap=5) == []
    ledger.catalog.add_derived(
        DerivedProduct(
            name="segmentation",
            scan_hash=h(7),
            bucket="oct-derived",
            key="k",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    (claim,) = ledger.claim(cap=5)
    assert claim.job.scan_hash == h(7)


def test_claim_order_is_the_effective_priority(ledger, clock) -> None:
    # Backfill enqueued first, then uploads at intervals: the backfill job is served before
    # an upload exactly when it waited longer than the priority gap's worth of ageing.
    gap = (PRIORITY_BACKFILL - PRIORITY_UPLOAD) * ledger.policy.aging_s
    ledger.enqueue("measure", h(1), "signal", "1.0.0", priority=PRIORITY_BACKFILL)
    clock.advance(gap - 1)
    ledger.enqueue("measure", h(2), "signal", "1.0.0", priority=PRIORITY_UPLOAD)
    clock.advance(2)
    ledger.enqueue("measure", h(3), "signal", "1.0.0", priority=PRIORITY_UPLOAD)
    order = [c.job.scan_hash for c in ledger.claim(cap=3)]
    assert order == [h(2), h(1), h(3)]


def test_bulk_enqueues_in_one_transaction(ledger) -> None:
    # A publication enqueues a batch per version inside one transaction: each batch must work.
    from qmroct.storage.ledger import BULK_MIN_JOBS, JobSpec

    def batch(version: str) -> list[JobSpec]:
        return [
            JobSpec(kind=JobKind.MEASURE, scan_hash=h(i), measure="signal", version=version)
            for i in range(BULK_MIN_JOBS)
        ]

    with ledger.db.transaction():
        assert ledger.enqueue_many(batch("1.0.0")) == BULK_MIN_JOBS
        assert ledger.enqueue_many(batch("2.0.0")) == BULK_MIN_JOBS
    assert ledger.counts().by_kind["measure"]["queued"] == 2 * BULK_MIN_JOBS


def _claim_plan(ledger: Ledger) -> list[str]:
    """The plan of the claim statement itself (EXPLAIN without ANALYZE runs no UPDATE)."""
    from qmroct.storage.ledger import claim_sql

    now = ledger.clock()
    params = {"kind0": "measure", "kind1": "derive", "now": now, "exp": now + 60, "cap": 4,
              "most": 4}  # fmt: skip
    sql = claim_sql("(:kind0, :kind1)", ledger.db.dialect)
    if ledger.db.dialect == "postgres":
        return [r["QUERY PLAN"] for r in ledger.db.query("EXPLAIN " + sql, params)]
    return [r["detail"] for r in ledger.db.query("EXPLAIN QUERY PLAN " + sql, params)]


def test_claim_reads_the_queue_index_in_claim_order_without_a_sort(ledger, clock) -> None:
    from qmroct.storage.ledger import JobSpec

    specs = [
        JobSpec(
            kind=JobKind.MEASURE,
            scan_hash=h(i),
            measure="signal",
            version="1.0.0",
            priority=PRIORITY_UPLOAD if i % 100 == 0 else PRIORITY_BACKFILL,
        )
        for i in range(3000)
    ]
    ledger.enqueue_many(specs)
    # A drained head: finished jobs must not stay in the index the claim reads.
    for c in ledger.claim(cap=50):
        ledger.complete(c.job.job_key, c.lease_token)
    if ledger.db.dialect == "postgres":
        ledger.db.analyze("jobs", "job_needs", "derived")  # as autovacuum would; SQLite: never
    plan = _claim_plan(ledger)
    text = "\n".join(plan)
    assert "jobs_queued_order" in text, text
    assert not any(line.lstrip(" ->").startswith("Sort") for line in plan), text  # PostgreSQL
    assert "TEMP B-TREE" not in text, text  # SQLite's sort
    # The whole table is never scanned: the queue is read from the index, the leased count
    # from the state index, and the chosen rows are updated by primary key.
    assert not any(" on jobs" in line and "Seq Scan" in line for line in plan), text
    assert not any(line.startswith("SCAN jobs") and "INDEX" not in line for line in plan), text
    if ledger.db.dialect == "postgres":
        assert "LockRows" in text, text  # FOR UPDATE SKIP LOCKED on the rows it takes
        assert "Index Cond: (job_key = ANY" in text and "jobs_pkey" in text, text
    else:
        assert any(
            line.startswith("SEARCH jobs USING") and "(job_key=?)" in line for line in plan
        ), text
        # The partial index holds the queue only: the 50 finished jobs left it.
        (row,) = ledger.db.query(
            "SELECT COUNT(*) AS n FROM jobs INDEXED BY jobs_queued_order WHERE state = 'queued'"
        )
        assert row["n"] == 3000 - 50


def test_claim_order_is_the_effective_priority_for_random_queues(ledger, clock) -> None:
    import random

    aging = ledger.policy.aging_s
    rng = random.Random(18)
    enqueued: dict[str, tuple[float, int]] = {}
    for i in range(120):
        clock.advance(rng.choice([0, 0, 1, 5, 30, 200]))  # ties in time too
        prio = rng.choice([PRIORITY_UPLOAD, 50, PRIORITY_BACKFILL])
        ledger.enqueue("measure", h(i), "signal", "1.0.0", priority=prio)
        enqueued[job_key("measure", h(i), "signal", "1.0.0")] = (clock(), prio)
    clock.advance(7)
    now = clock()

    def effective(key: str) -> tuple[float, float, str]:
        t, prio = enqueued[key]
        return (prio - (now - t) / aging, t, key)

    expected = sorted(enqueued, key=effective)
    got: list[str] = []
    while len(got) < len(expected):
        batch = ledger.claim(cap=7)
        assert batch, "a runnable job was not claimed"
        got += [c.job.job_key for c in batch]
        for c in batch:
            ledger.complete(c.job.job_key, c.lease_token)
    assert got == expected

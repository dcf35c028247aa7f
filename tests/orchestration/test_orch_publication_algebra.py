"""The publication algebra as a property: any sequence of publish, update (a higher version),
retire, replayed and stale events, uploads, measure runs, failures, lost activations and
crashed publications ends, once the queue is drained, with exactly one current value per scan
from the measure's highest published version, and every value ever stored still there.

The measure run is modelled at the ledger level (claim, then complete or fail or vanish), but
everything else is the real code: publish_measure, on_measure_published, apply_publication,
catalog_object, the ledger and the resync sweep.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orch_doubles import MemoryStore, measures_event
from qmroct.events import ObjectEvent
from qmroct.orchestration import publication
from qmroct.orchestration.context import ActionContext
from qmroct.orchestration.ingest import catalog_object
from qmroct.orchestration.publication import (
    MeasurePublication,
    apply_publication,
    on_measure_published,
    publish_measure,
)
from qmroct.orchestration.resync import resync
from qmroct.results import MeasureActionResult, ResultStatus
from qmroct.storage.ledger import Ledger, Policy
from qmroct.storage.records import JobKind, JobState
from qmroct.storage.records import version_key as vkey

MEASURE = "snr"
VERSIONS = ["1.0.0", "1.1.0", "2.0.0"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Two versions most of the time, so that publish-then-retire of the same one (the interleavings
# that matter) is frequent; the third makes "retire the middle one" possible.
version = st.sampled_from(["1.0.0", "1.1.0", "1.0.0", "1.1.0", "2.0.0"])
publish = st.tuples(st.just("publish"), version)
retire = st.tuples(st.just("retire"), version)
run = st.tuples(st.just("run"), st.integers(1, 3))
# Publish, retire and run are listed more than once: they are what the algebra is about, and
# the interleavings that matter need several of them in one sequence.
op = st.one_of(
    publish,
    publish,
    publish,
    retire,
    retire,
    retire,
    run,
    run,
    run,
    st.tuples(st.just("replay"), st.integers(0, 30)),
    st.tuples(st.just("stale"), st.integers(0, 30)),
    st.tuples(st.just("crash"), version, st.sampled_from(["published", "retired"])),
    st.tuples(st.just("upload"), st.integers(0, 5)),
    st.tuples(st.just("fail"), st.integers(1, 2)),
    st.tuples(st.just("vanish"), st.integers(1, 2)),
    st.tuples(st.just("expire"), st.just(0)),
)


class Crash(Exception):
    """A publication dying half-way (the action's container killed)."""


class World:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.ledger = Ledger.open(
            "sqlite:///:memory:",
            policy=Policy(lease_s=60, max_attempts=2, backoff_base_s=1),
            clock=lambda: self.now,
        )
        self.ctx = ActionContext(ledger=self.ledger, store=MemoryStore(), ow=None)
        self.events: list[str] = []  # keys of descriptor events, in delivery order
        self.written: list[MeasurePublication] = []  # every descriptor ever written
        self.stamp = itertools.count(1)
        self.stored = 0  # result rows the run model produced
        self.uploaded: set[int] = set()

    def write(self, v: str, state: str) -> MeasurePublication:
        at = T0 + timedelta(seconds=next(self.stamp))
        pub = publish_measure(
            self.ctx.store, MEASURE, v, state=state, describe=False, published_at=at
        )
        self.written.append(pub)
        return pub

    def deliver(self, key: str) -> None:
        self.events.append(key)
        on_measure_published(self.ctx, measures_event(key))

    def upload(self, n: int) -> None:
        data = f"scan {n}".encode()
        sha = hashlib.sha256(data).hexdigest()
        obj = ObjectEvent(
            bucket="oct-ingest", key=f"p/s{n}/ses/scan{n}.vol", size=len(data), etag="e",
            version_id="v1", event_name="s3:ObjectCreated:Put", metadata={"sha256": sha},
        )  # fmt: skip
        self.ctx.store.put("oct-ingest", obj.key, data, metadata={"sha256": sha})
        catalog_object(self.ledger, obj, sha)
        self.uploaded.add(n)

    def claims(self, k: int):  # noqa: ANN201
        self.ledger.retry_due()
        return self.ledger.claim(cap=k, kinds=[JobKind.MEASURE])

    def result(self, claim, status: ResultStatus) -> MeasureActionResult:  # noqa: ANN001
        job = claim.job
        when = datetime.fromtimestamp(self.now, UTC)
        return MeasureActionResult(
            job_key=job.job_key, lease_token=claim.lease_token, scan_hash=job.scan_hash,
            measure=job.measure, version=job.version, status=status,
            values={"v": float(vkey(job.version)[0][1])} if status is ResultStatus.OK else {},
            failure="truncated file" if status is ResultStatus.FAILED else None,
            started_at=when, ended_at=when,
        )  # fmt: skip

    def step(self, action: tuple) -> None:  # noqa: C901
        kind = action[0]
        self.now += 1
        if kind in ("publish", "retire"):
            v = action[1]
            self.write(v, "published" if kind == "publish" else "retired")
            self.deliver(f"{MEASURE}/{v}.json")
        elif kind == "replay" and self.events:
            # MinIO's at-least-once delivery: an old event again, late and out of order.
            self.deliver(self.events[action[1] % len(self.events)])
        elif kind == "stale" and self.written:
            # An older copy of a descriptor applied directly (no store read): must not undo a
            # retirement that came after it.
            old = self.written[action[1] % len(self.written)]
            if old.state == "published":
                apply_publication(self.ledger, old)
        elif kind == "crash":
            _, v, state = action
            self.write(v, state)
            real = self.ledger.promote

            def boom(*a, **kw):  # noqa: ANN002, ANN003, ANN202
                real(*a, **kw)
                raise Crash("killed after the backfill, before the commit")

            self.ledger.promote = boom  # type: ignore[method-assign]
            try:
                self.deliver(f"{MEASURE}/{v}.json")
            except Crash:
                pass
            finally:
                self.ledger.promote = real  # type: ignore[method-assign]
        elif kind == "upload":
            self.upload(action[1])
        elif kind == "run":
            for c in self.claims(action[1]):
                self.ledger.complete(c.job.job_key, c.lease_token, self.result(c, ResultStatus.OK))
                self.stored += 1
        elif kind == "fail":
            for c in self.claims(action[1]):
                state = self.ledger.fail(
                    c.job.job_key, c.lease_token, "truncated file",
                    result=self.result(c, ResultStatus.FAILED),
                )  # fmt: skip
                self.stored += state is JobState.DEAD
        elif kind == "vanish":
            self.claims(action[1])  # the activations are lost; their leases will expire
        elif kind == "expire":
            self.now += 61
            self.reclaim()

    def reclaim(self) -> None:
        """Re-drive expired leases; a job out of attempts dies and leaves a failure row."""
        before = self.lease_deaths()
        self.ledger.reclaim_expired()
        self.stored += self.lease_deaths() - before

    def lease_deaths(self) -> int:
        dead = self.ledger.jobs(state=JobState.DEAD, kind=JobKind.MEASURE, limit=100_000)
        return sum("lease expired" in (j.last_error or "") for j in dead)

    def drain(self) -> None:
        # The scheduler's sweep applies what a crash left undone, then everything runs.
        resync(self.ctx)
        for _ in range(200):
            self.now += 3600
            self.reclaim()
            self.ledger.retry_due()
            claims = self.ledger.claim(cap=1000, kinds=[JobKind.MEASURE])
            if not claims:
                counts = self.ledger.counts()
                if counts.total("queued") + counts.total("failed") + counts.in_flight == 0:
                    return
                continue
            for c in claims:
                self.ledger.complete(c.job.job_key, c.lease_token, self.result(c, ResultStatus.OK))
                self.stored += 1
        raise AssertionError("the queue never drained")


def _check_no_value_hidden(world: World) -> None:
    """Between any two steps: where the active version has a value, that value is current."""
    active = world.ledger.catalog.active_version(MEASURE)
    if active is None:
        return
    for scan in world.ledger.catalog.scans():
        history = world.ledger.results(scan.scan_hash, MEASURE, history=True)
        if any(r.version == active.version for r in history):
            current = [r.version for r in history if r.current]
            assert current == [active.version], (active.version, current)


def _expected_active(world: World) -> str | None:
    latest: dict[str, str] = {}
    for pub in world.written:  # in write order: the store holds the last write per version
        latest[pub.version] = pub.state
    published = [v for v, s in latest.items() if s == "published"]
    return max(published, key=vkey) if published else None


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(op, min_size=8, max_size=30), st.integers(2, 5))
def test_any_sequence_ends_with_one_current_value_from_the_highest_published(
    ops: list[tuple], initial_scans: int
) -> None:
    w = World()
    try:
        for n in range(initial_scans):
            w.upload(100 + n)
        for action in ops:
            w.step(action)
            _check_no_value_hidden(w)
        w.drain()
        active = _expected_active(w)
        found = w.ledger.catalog.active_version(MEASURE)
        assert (found.version if found else None) == active
        rows_total = 0
        for scan in w.ledger.catalog.scans():
            history = w.ledger.results(scan.scan_hash, MEASURE, history=True)
            rows_total += len(history)
            current = [r for r in history if r.current]
            if active is None:
                assert len(current) <= 1
                continue
            assert len(current) == 1, (
                scan.scan_hash[:8],
                [(r.version, r.current) for r in history],
            )
            assert current[0].version == active
            for r in history:
                if not r.current:
                    assert r.superseded_at is not None and r.superseded_reason
        # Nothing lost: every value the runs produced is still stored (current or archived).
        assert rows_total == w.stored
    finally:
        w.ctx.close()


def test_retiring_mid_backfill_brings_back_the_previous_version_everywhere() -> None:
    """The reported case: 1.1.0 published while 1.0.0 backfills, then retired."""
    w = World()
    try:
        for n in range(6):
            w.upload(n)
        w.step(("publish", "1.0.0"))
        w.step(("run", 2))  # two scans have 1.0.0 values
        w.step(("publish", "1.1.0"))  # cancels the four waiting 1.0.0 jobs
        w.step(("run", 3))
        w.step(("retire", "1.1.0"))
        w.drain()
        for scan in w.ledger.catalog.scans():
            (cur,) = w.ledger.results(scan.scan_hash, MEASURE)
            assert cur.version == "1.0.0" and cur.status is ResultStatus.OK
    finally:
        w.ctx.close()


def test_a_replayed_publish_event_cannot_bring_back_a_retired_version() -> None:
    w = World()
    try:
        w.upload(1)
        w.step(("publish", "1.0.0"))
        w.step(("publish", "2.0.0"))
        w.step(("retire", "2.0.0"))
        w.step(("replay", 1))  # the 2.0.0 publish event, delivered again
        w.step(("stale", 1))  # and its old descriptor applied as it was
        assert w.ledger.catalog.active_version(MEASURE).version == "1.0.0"
        assert publication.is_stale(w.ledger.catalog.measure(MEASURE, "2.0.0"), w.written[1])
        w.drain()
        (scan,) = w.ledger.catalog.scans()
        (cur,) = w.ledger.results(scan.scan_hash, MEASURE)
        assert cur.version == "1.0.0"
    finally:
        w.ctx.close()

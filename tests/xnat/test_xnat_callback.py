"""xnat-callback against the real ledger (SQLite), the local folder store and XNAT."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from qmroct.clients.xnat import XnatClient
from qmroct.results import MeasureActionResult, ResultStatus
from qmroct.storage.buckets import RESULTS_BUCKET, result_key
from qmroct.storage.ledger import Ledger, Policy, job_key
from qmroct.storage.records import JobKind, JobState, ScanRecord
from qmroct.xnat.callback import run_callback

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    from qmroct.localstore.server import LocalStoreServer
    from qmroct.localstore.store import LocalFolderStore
    from qmroct.objectstore import open_store

    secret = secrets.token_hex(16)
    with LocalStoreServer(LocalFolderStore(tmp_path / "store"), secret=secret) as server:
        client = open_store("local", server.endpoint, server.access_key, secret)
        for b in ("oct-ingest", RESULTS_BUCKET):
            client.ensure_bucket(b)
        yield client


def _measure(ledger: Ledger, store, scan_hash: str, version: str, snr: float) -> None:  # noqa: ANN001
    ledger.enqueue("measure", scan_hash, "signal", version)
    key = job_key("measure", scan_hash, "signal", version)
    (c,) = [c for c in ledger.claim(cap=10) if c.job.job_key == key]
    store.put(
        RESULTS_BUCKET,
        result_key(scan_hash, "signal", version),
        f"PNG {version}".encode(),
        content_type="image/png",
    )
    ledger.complete(
        key,
        c.lease_token,
        MeasureActionResult(
            job_key=key,
            lease_token=c.lease_token,
            scan_hash=scan_hash,
            measure="signal",
            version=version,
            status=ResultStatus.OK,
            values={"snr_db": snr},
            picture_stored=True,
            started_at=T0,
            ended_at=T0,
        ),
    )


@pytest.fixture
def scene(tmp_path: Path, store, xnat_target):  # noqa: ANN001, ANN201
    clock = Clock()
    ledger = Ledger.open(
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        policy=Policy(lease_s=60, max_attempts=3),
        clock=clock,
    )
    data = b"HSF-OCT-103\0 de-identified scan bytes"
    scan_hash = hashlib.sha256(data).hexdigest()
    sub, ses, scn = xnat_target.label("sub"), xnat_target.label("ses"), xnat_target.label("scn")
    key = f"{xnat_target.project}/{sub}/{ses}/{scn}.vol"
    info = store.put("oct-ingest", key, data)
    ledger.catalog.add_scan(
        ScanRecord(
            scan_hash=scan_hash,
            bucket="oct-ingest",
            key=key,
            version_id=info.version_id,
            size=len(data),
            format="heyex_vol",
            pattern="line",
            stored_at=T0,
        )
    )
    _measure(ledger, store, scan_hash, "1.0.0", 20.0)
    _measure(ledger, store, scan_hash, "1.1.0", 22.5)
    ledger.enqueue(JobKind.XNAT, scan_hash, "signal", "1.1.0", action="xnat-callback")
    yield ledger, clock, scan_hash, (sub, ses, scn)
    ledger.close()


def _params(t, claim) -> dict:  # noqa: ANN001
    return {
        "job_key": claim.job.job_key,
        "lease_token": claim.lease_token,
        "scan_hash": claim.job.scan_hash,
        "xnat_url": t.url,
        "xnat_alias": t.alias,
        "xnat_secret": t.secret,
    }


def _client(t, retries: int = 2) -> XnatClient:  # noqa: ANN001
    return XnatClient(t.url, t.alias, t.secret, retries=retries, sleep=lambda s: None)


def test_callback_publishes_and_completes(scene, store, xnat_target) -> None:  # noqa: ANN001
    ledger, _clock, scan_hash, (sub, ses, scn) = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    out = run_callback(ledger, store, _params(t, claim), client=_client(t))
    assert out.status == "done", out.reason
    assert out.push.registered and out.push.fields_written > 0
    assert ledger.job(claim.job.job_key).state == JobState.DONE
    with _client(t) as c:
        assert c.get_session_fields(t.project, sub, ses)["qc_signal_snr_db"] == "22.5"
        assert c.get_file(t.project, sub, ses, "QMROCT", f"{scn}/signal.png") == b"PNG 1.1.0"
        (arch,) = c.list_files(t.project, sub, ses, "QMROCT_ARCHIVE")
        assert "/signal/1.0.0/" in arch["URI"]
        assert (
            json.loads(c.get_file(t.project, sub, ses, "QMROCT", f"{scn}/results.json"))["scan"][
                "scan_hash"
            ]
            == scan_hash
        )


def test_xnat_down_keeps_the_job_queued(scene, store, xnat_target, standin) -> None:  # noqa: ANN001
    ledger, clock, _scan_hash, _ = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    attempts = ledger.job(claim.job.job_key).attempts
    standin.fail_next(1000)
    out = run_callback(ledger, store, _params(t, claim), client=_client(t))
    assert out.status == "queued" and "500" in out.reason
    job = ledger.job(claim.job.job_key)
    assert job.state == JobState.QUEUED and job.attempts == attempts - 1  # released, not failed
    assert ledger.claim(cap=1, kinds=[JobKind.XNAT]) == []  # waits its delay
    standin.fail_next(0)
    clock.t += 120
    (again,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    assert run_callback(ledger, store, _params(t, again), client=_client(t)).status == "done"
    writes = len(standin.writes())
    # A repeated push (an at-least-once redelivery) writes nothing new.
    ledger.enqueue(
        JobKind.XNAT, again.job.scan_hash, "signal", "1.1.0", action="xnat-callback", rearm=True
    )
    (third,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    assert run_callback(ledger, store, _params(t, third), client=_client(t)).status == "done"
    assert [w[:2] for w in standin.writes()[writes:]] == [
        ("POST", "/data/JSESSION"),
        ("DELETE", "/data/JSESSION"),
    ]


def test_xnat_refusal_fails_the_job_with_its_message(scene, store, xnat_target) -> None:  # noqa: ANN001
    ledger, _clock, _h, _ = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    params = _params(t, claim) | {"xnat_project": "NO_SUCH_PROJECT_QMROCT"}
    out = run_callback(ledger, store, params, client=_client(t))
    assert out.status == "failed" and "NO_SUCH_PROJECT_QMROCT" in out.reason
    job = ledger.job(claim.job.job_key)
    assert job.state == JobState.FAILED and "NO_SUCH_PROJECT_QMROCT" in job.last_error


def test_action_main_is_thin_over_the_library(scene, store, xnat_target, tmp_path: Path) -> None:  # noqa: ANN001
    import importlib.util

    ledger, _clock, _h, (sub, ses, _scn) = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    path = Path(__file__).resolve().parents[2] / "functions/orchestration/xnat_callback/__main__.py"
    spec = importlib.util.spec_from_file_location("xnat_callback_main", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = _params(t, claim) | {
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "store": "local",
        "store_endpoint": store.endpoint,
        "store_access_key": store.access_key,
        "store_secret_key": store._secret,
    }
    out = module.main(args)
    assert out["status"] == "done" and out["push"]["registered"] is True
    assert ledger.job(claim.job.job_key).state == JobState.DONE

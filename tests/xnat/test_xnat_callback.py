"""xnat-callback against the real ledger (SQLite), the local folder store and XNAT."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from qmroct.clients.xnat import XnatClient
from qmroct.storage.ledger import Ledger, Policy
from qmroct.storage.records import JobKind, JobState
from qmroct.storage.tokens import XnatTokens
from qmroct.xnat.assessor import assessor_label, qc_from_item
from qmroct.xnat.callback import run_callback
from xnat_scene import Clock, add_scan, record_measure


@pytest.fixture
def scene(tmp_path: Path, store, xnat_target):  # noqa: ANN001, ANN201
    clock = Clock()
    ledger = Ledger.open(
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        policy=Policy(lease_s=60, max_attempts=3),
        clock=clock,
    )
    sub, ses, scn = xnat_target.label("sub"), xnat_target.label("ses"), xnat_target.label("scn")
    key = f"{xnat_target.project}/{sub}/{ses}/{scn}.vol"
    scan_hash = add_scan(ledger, store, key, b"HSF-OCT-103\0 de-identified scan bytes")
    record_measure(ledger, store, scan_hash, "1.0.0", 20.0)
    record_measure(ledger, store, scan_hash, "1.1.0", 22.5)
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
    assert out.push.registered and len(out.push.assessors_written) == 2
    assert ledger.job(claim.job.job_key).state == JobState.DONE
    with _client(t) as c:
        label = assessor_label(ses, scn, "signal", "1.1.0")
        (qc,) = qc_from_item(c.get_assessor(t.project, sub, ses, label))
        assert qc.scan == scn and qc.statistics == {"snr_db": 22.5}
        get = partial(c.get_file, t.project, sub, ses, scan=scn)
        assert get("QMROCT", "signal.png") == f"PNG {scan_hash[:8]} 1.1.0".encode()
        (arch,) = c.list_files(t.project, sub, ses, "QMROCT_ARCHIVE", scan=scn)
        assert "/signal/1.0.0/" in arch["URI"]
        assert json.loads(get("QMROCT", "results.json"))["scan"]["scan_hash"] == scan_hash


def test_xnat_down_keeps_the_job_queued(scene, store, xnat_target, standin) -> None:  # noqa: ANN001
    ledger, clock, _scan_hash, _ = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    attempts = ledger.job(claim.job.job_key).attempts
    standin.fail_next(1000)  # 503: XNAT restarting behind its proxy
    out = run_callback(ledger, store, _params(t, claim), client=_client(t))
    assert out.status == "queued" and "503" in out.reason
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


def test_deterministic_500_ends_the_job_with_a_failure_row(
    scene, store, xnat_target, standin
) -> None:  # noqa: ANN001
    ledger, _clock, scan_hash, _ = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    standin.fail_next(1000, 500)
    out = run_callback(ledger, store, _params(t, claim), client=_client(t))
    standin.fail_next(0)
    assert out.status == "failed" and "500" in out.reason and scan_hash in out.reason
    job = ledger.job(claim.job.job_key)
    assert job.state == JobState.DEAD and "answered 500" in job.last_error
    assert ledger.claim(cap=1, kinds=[JobKind.XNAT]) == []  # not queued again


def test_token_renewed_and_kept_for_the_next_run(scene, store, xnat_target, standin) -> None:  # noqa: ANN001
    ledger, clock, scan_hash, _ = scene
    t = xnat_target
    tokens = XnatTokens(ledger.db)
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    out = run_callback(ledger, store, _params(t, claim), client=_client(t), now=lambda: 1000.0)
    assert out.status == "done"
    kept = tokens.get(t.url)
    assert kept is not None and kept.alias != t.alias and kept.issued_at == 1000.0
    # A day and a half on: the kept token is due for renewal (over a day old) and is replaced
    # while it still works.
    standin.advance(36 * 3600)
    ledger.enqueue(JobKind.XNAT, scan_hash, "signal", "1.1.0", action="xnat-callback", rearm=True)
    (again,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    out = run_callback(
        ledger, store, _params(t, again), client=_client(t), now=lambda: 1000.0 + 36 * 3600
    )
    assert out.status == "done", out.reason
    renewed = tokens.get(t.url)
    assert renewed.alias not in (kept.alias, t.alias)  # a day old: replaced before it lapses
    standin.advance(20 * 3600)  # bound token 56 h, first kept 56 h: both lapsed
    ledger.enqueue(JobKind.XNAT, scan_hash, "signal", "1.1.0", action="xnat-callback", rearm=True)
    (third,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    out = run_callback(
        ledger, store, _params(t, third), client=_client(t), now=lambda: 1000.0 + 56 * 3600
    )
    assert out.status == "done", out.reason


def test_lapsed_token_ends_the_job_saying_what_to_do(scene, store, xnat_target, standin) -> None:  # noqa: ANN001
    ledger, _clock, _h, _ = scene
    t = xnat_target
    standin.advance(49 * 3600)  # nobody pushed for two days: the bound token has lapsed
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    out = run_callback(ledger, store, _params(t, claim), client=_client(t))
    assert out.status == "failed" and "QMROCT_XNAT_ALIAS" in out.reason
    assert ledger.job(claim.job.job_key).state == JobState.DEAD


def test_xnat_refusal_fails_the_job_with_its_message(scene, store, xnat_target) -> None:  # noqa: ANN001
    ledger, _clock, _h, _ = scene
    t = xnat_target
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    params = _params(t, claim) | {"xnat_project": "NO_SUCH_PROJECT_QMROCT"}
    out = run_callback(ledger, store, params, client=_client(t))
    assert out.status == "failed" and "NO_SUCH_PROJECT_QMROCT" in out.reason
    job = ledger.job(claim.job.job_key)
    assert job.state == JobState.DEAD and "NO_SUCH_PROJECT_QMROCT" in job.last_error


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

"""The measure developer's path, end to end, on the embedded stack with the XNAT stand-in.

From an empty folder: ``qmroct measure new``, ``test``, ``approve``; the backfill then computes
the new measure on every stored scan, with its values in the results and in XNAT. Then the
``wsk action update -a qmroct-version`` path: the same REST call ``wsk`` sends, found by
``qmroct measure sweep``, tested, approved, and recomputed everywhere.
"""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.embedded.stack import EmbeddedStack, StackOptions
from qmroct.storage.ledger import JobKind, JobState
from qmroct.xnat.assessor import name_part
from xnat_standin.server import XnatStandin

NAME = "retina_contrast"


def _wait(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _upload_phantoms(stack: EmbeddedStack, tmp_path, seeds: tuple[int, ...]) -> list[str]:
    from qmroct.gateway.pseudonyms import PseudonymStore
    from qmroct.gateway.state import GatewayState
    from qmroct.gateway.upload import Uploader
    from qmroct.oct.phantom import make_phantom, write_phantom

    files = []
    for seed in seeds:
        scan, truth, _ = make_phantom("volume", seed=seed, size="small")
        written = write_phantom(scan, truth, tmp_path / f"in{seed}", formats=("vol",))
        files += [p for p in written if p.suffix == ".vol"]
    _, store, _ = stack.require()
    uploader = Uploader(
        store,
        PseudonymStore(tmp_path / "pseudonyms.sqlite3"),
        GatewayState(tmp_path / "gateway.sqlite3"),
        project="DEV",
    )
    outcomes = uploader.upload_paths(files).outcomes
    assert [o.status for o in outcomes] == ["uploaded"] * len(files)
    return [o.key for o in outcomes]


def _current(stack: EmbeddedStack, version: str) -> dict[str, dict]:
    """scan hash -> values of NAME at ``version``, for the scans that have it current."""
    ledger, _, _ = stack.require()
    out = {}
    for scan in ledger.catalog.scans():
        r = ledger.catalog.current_result(scan.scan_hash, NAME)
        if r is not None and r.version == version:
            out[scan.scan_hash] = r
    return out


def _xnat_done(stack: EmbeddedStack, n: int) -> bool:
    ledger, _, _ = stack.require()
    jobs = ledger.jobs(kind=JobKind.XNAT)
    return sum(j.state is JobState.DONE for j in jobs) >= n and all(
        j.state in (JobState.DONE, JobState.DEAD) for j in jobs
    )


def test_new_test_approve_backfill_to_xnat_then_wsk_update(tmp_path):
    from qmroct.clients.openwhisk import OpenWhiskClient

    with XnatStandin(["DEV"]) as xnat:
        opts = StackOptions(
            cap=2,
            alarm_interval_s=0.5,
            event_retry_s=0.5,
            xnat_url=xnat.url,
            xnat_alias=xnat.alias,
            xnat_secret=xnat.secret,
        )
        with EmbeddedStack(tmp_path / "home", opts) as stack:
            keys = _upload_phantoms(stack, tmp_path, (31, 32))
            ledger, store, ow = stack.require()
            _wait(lambda: ledger.catalog.scan_count() == len(keys), 60, "the scans catalogued")
            stack.wait_idle(timeout_s=120)

            # The developer's keys (the ones measure test uses) are refused on a patient scan,
            # directly and by a URL they sign, and on a production result.
            from qmroct.objectstore.errors import AccessDenied
            from qmroct.objectstore.transfer import TransferError, download
            from qmroct.storage import buckets

            dev_store = stack.role_store("measure-developer")
            for bucket in (buckets.INGEST_BUCKET, buckets.RESULTS_BUCKET):
                with pytest.raises(AccessDenied):
                    list(dev_store.list(bucket))
            with pytest.raises(AccessDenied):
                dev_store.get(buckets.INGEST_BUCKET, keys[0])
            with pytest.raises(TransferError):
                download(dev_store.presign_get(buckets.INGEST_BUCKET, keys[0]), max_bytes=10**9)

            env = {"QMROCT_HOME": str(stack.home)}
            runner = CliRunner()
            dev = tmp_path / "empty"
            dev.mkdir()
            res = runner.invoke(cli, ["measure", "new", NAME, "--dir", str(dev)], env=env)
            assert res.exit_code == 0, res.output
            res = runner.invoke(
                cli,
                ["measure", "test", NAME, "--dir", str(dev), "--version", "1.0.0", "--json"],
                env=env,
            )
            assert res.exit_code == 0, res.output
            report = json.loads(res.stdout)
            assert report["passed"] and len(report["outcomes"]) == 3
            # Only test-bucket objects were handed to the action.
            assert all(o["scan"].startswith("phantoms/") for o in report["outcomes"])

            res = runner.invoke(
                cli, ["measure", "approve", NAME, "--version", "1.0.0", "--by", "dr-dev"], env=env
            )
            assert res.exit_code == 0, res.output
            assert "approved retina_contrast 1.0.0 by dr-dev" in res.output

            # The backfill: every stored scan gets the new measure, and XNAT its fields.
            results = _wait(
                lambda: (r := _current(stack, "1.0.0")) and len(r) == len(keys) and r,
                240,
                "the backfill of 1.0.0",
            )
            for r in results.values():
                assert r.status.value == "ok" and r.values["cnr"] > 0
                assert r.code_digest == report["code_digest"]
            _wait(lambda: _xnat_done(stack, len(keys)), 180, "the XNAT pushes")
            for scan in ledger.catalog.scans():
                session = xnat.session("DEV", scan.subject, scan.session)
                entries = [
                    a.scans[0]
                    for a in session.assessors.values()
                    if a.scans[0].fields.get("measure") == NAME
                ]
                assert [e.fields["version"] for e in entries] == ["1.0.0"], session.assessors
                value = results[scan.scan_hash].values["cnr"]
                assert entries[0].statistics[name_part("cnr")] == float(value)

            res = runner.invoke(cli, ["measure", "approvals", "--json"], env=env)
            rows = json.loads(res.stdout)
            (approved,) = [r for r in rows if r["state"] == "approved"]
            assert approved["approved_by"] == "dr-dev" and approved["version"] == "1.0.0"

            # wsk action update qmroct-dev/measure-NAME zip -a qmroct-version 1.1.0: same REST.
            from qmroct.measures.devtest import build_dev_zip

            module = dev / "functions" / "measures" / NAME / f"measure_{NAME}.py"
            module.write_text(
                module.read_text().replace("2 * MIN_RETINA_CNR", "3 * MIN_RETINA_CNR")
            )
            dev_ow = OpenWhiskClient(ow.api_host, stack.whisk.auth)  # type: ignore[union-attr]
            dev_ow.update_action(
                f"qmroct-dev/measure-{NAME}",
                build_dev_zip(dev, NAME),
                annotations={"qmroct-version": "1.1.0", "qmroct-measure": NAME},
            )
            # The sweep qmroct up runs finds it and tests it; nobody asked.
            from qmroct.measures.devtest import Sandbox
            from qmroct.orchestration.approval import SweepLoop
            from qmroct.storage.reviews import Reviews

            box = Sandbox(ow, stack.role_store("admin"), "the stack")
            loop = SweepLoop(ledger, box, 0.5).start()
            try:
                swept = _wait(
                    lambda: [r for r in Reviews(ledger.db).list(NAME) if r.version == "1.1.0"],
                    120,
                    "the sweep to test 1.1.0",
                )
            finally:
                loop.stop()
            assert loop.errors == []
            assert [(r.version, r.state.value, r.source) for r in swept] == [
                ("1.1.0", "tested", "sweep")
            ]
            assert swept[0].code_digest != report["code_digest"]
            # The command finds nothing new: that code is tested already.
            res = runner.invoke(cli, ["measure", "sweep", "--json"], env=env)
            assert res.exit_code == 0, res.output
            assert json.loads(res.stdout) == []
            res = runner.invoke(
                cli, ["measure", "approve", NAME, "--version", "1.1.0", "--by", "lead"], env=env
            )
            assert res.exit_code == 0, res.output
            _wait(lambda: len(_current(stack, "1.1.0")) == len(keys), 240, "the backfill of 1.1.0")
            # The old values are archived, not lost.
            scan = next(iter(ledger.catalog.scans()))
            history = [
                (r.version, r.current) for r in ledger.results(scan.scan_hash, history=True)
                if r.measure == NAME
            ]  # fmt: skip
            assert ("1.0.0", False) in history and ("1.1.0", True) in history

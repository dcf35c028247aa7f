"""Gateway upload, then the pipeline, then XNAT: the session, the scan, every ``qc_`` field, the
pictures, and after a version bump the archive. Runs against the XNAT stand-in (tests/xnat_standin)
with XNAT's real status codes; the contract tests in tests/xnat also run against a real XNAT."""

from __future__ import annotations

import time

from qmroct.embedded.stack import EmbeddedStack, StackOptions
from qmroct.orchestration.publication import publish_measure
from qmroct.storage.ledger import JobKind, JobState
from xnat_standin.server import XnatStandin

MEASURES = ["signal", "completeness"]


def _wait_xnat_jobs(stack: EmbeddedStack, n_done: int, timeout_s: float = 180) -> list:
    ledger, _, _ = stack.require()
    deadline = time.monotonic() + timeout_s
    jobs = []
    while time.monotonic() < deadline:
        jobs = ledger.jobs(kind=JobKind.XNAT)
        if sum(j.state is JobState.DONE for j in jobs) >= n_done and all(
            j.state in (JobState.DONE, JobState.DEAD) for j in jobs
        ):
            return jobs
        time.sleep(0.3)
    raise AssertionError(
        f"XNAT jobs did not finish: {[(j.key, j.state, j.last_error) for j in jobs]}"
    )


def test_upload_to_xnat_with_fields_pictures_and_archive(tmp_path):
    from qmroct.gateway.pseudonyms import PseudonymStore
    from qmroct.gateway.state import GatewayState
    from qmroct.gateway.upload import Uploader
    from qmroct.oct.phantom import make_phantom, write_phantom

    with XnatStandin(["E2E"]) as xnat:
        opts = StackOptions(
            cap=2,
            alarm_interval_s=0.5,
            event_retry_s=0.5,
            xnat_url=xnat.url,
            xnat_alias=xnat.alias,
            xnat_secret=xnat.secret,
        )
        with EmbeddedStack(tmp_path / "home", opts) as stack:
            published = stack.publish_suite(MEASURES)
            stack.wait_published(len(published))
            scan, truth, _ = make_phantom("volume", seed=21, size="small")
            vol = next(
                p
                for p in write_phantom(scan, truth, tmp_path / "in", formats=("vol",))
                if p.suffix == ".vol"
            )
            _, store, _ = stack.require()
            uploader = Uploader(
                store,
                PseudonymStore(tmp_path / "pseudonyms.sqlite3"),
                GatewayState(tmp_path / "gateway.sqlite3"),
                project="E2E",
            )
            (outcome,) = uploader.upload_paths([vol]).outcomes
            assert outcome.status == "uploaded"
            stack.wait_idle(timeout_s=240, expect_jobs=len(MEASURES))
            _wait_xnat_jobs(stack, 1)

            ledger, _, _ = stack.require()
            (rec,) = ledger.catalog.find_scans(outcome.key)
            subjects = xnat.projects["E2E"]
            assert list(subjects) == [rec.subject]
            session = xnat.session("E2E", rec.subject, rec.session)
            assert session.xsi_type == "xnat:optSessionData"
            assert any(s.xsi_type == "xnat:optScanData" for s in session.scans.values())
            # Every current value is a session field qc_<measure>_<key>, lower-cased.
            for r in ledger.results(rec.scan_hash):
                for key, value in r.values.items():
                    if value is None:
                        continue
                    name = f"qc_{r.measure}_{key}".lower()
                    assert name in session.fields, name
            files = session.resources["QMROCT"].files
            assert any(p.endswith(".png") for p in files)
            assert any(p.endswith(".html") for p in files)
            assert any(p.endswith(".json") for p in files)
            # The de-identified file itself is on the scan, and carries no original identifier.
            scan_files = [
                f
                for s in session.scans.values()
                for res in s.resources.values()
                for f in res.files.values()
            ]
            assert scan_files and all(b"PHANTOM21" not in body for body, _ in scan_files)

            # A version bump: recomputed everywhere, the old value archived in XNAT too.
            publish_measure(store, "signal", "1.1.0")
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                current = {r.measure: r.version for r in ledger.results(rec.scan_hash)}
                if current.get("signal") == "1.1.0":
                    break
                time.sleep(0.3)
            assert current.get("signal") == "1.1.0"
            _wait_xnat_jobs(stack, 2)
            session = xnat.session("E2E", rec.subject, rec.session)
            archive = session.resources["QMROCT_ARCHIVE"].files
            assert any(p.startswith("signal/1.0.0/") for p in archive), sorted(archive)

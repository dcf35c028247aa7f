"""Gateway upload, then the pipeline, then XNAT: the session, the scan, every ``qc_`` field, the
pictures, and after a version bump the archive. Runs against the XNAT stand-in (tests/xnat_standin)
with XNAT's real status codes; the contract tests in tests/xnat also run against a real XNAT."""

from __future__ import annotations

import math
import time

from qmroct.embedded.stack import EmbeddedStack, StackOptions
from qmroct.measures.base import get_measure
from qmroct.orchestration.publication import publish_measure
from qmroct.storage.ledger import JobKind, JobState
from qmroct.xnat.assessor import name_part
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


def test_upload_to_xnat_with_per_scan_values_pictures_and_archive(tmp_path):
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
            (scan_obj,) = session.scans.values()
            assert scan_obj.xsi_type == "xnat:optScanData" and scan_obj.id == rec.scan
            # Every current value sits on the scan, in its measure version's QC assessor:
            # numbers as statistics, the rest as fields.
            by_measure = {}
            for a in session.assessors.values():
                assert a.xsi_type == "xnat:qcAssessmentData"
                (entry,) = a.scans
                assert entry.id == rec.scan
                by_measure[(entry.fields["measure"], entry.fields["version"])] = entry
            for r in ledger.results(rec.scan_hash):
                entry = by_measure[(r.measure, r.version)]
                for key, value in r.values.items():
                    if isinstance(value, bool) or value is None:
                        continue
                    if isinstance(value, int | float) and math.isfinite(value):
                        assert entry.statistics[name_part(key)] == float(value), (r.measure, key)
            files = scan_obj.resources["QMROCT"].files
            assert any(p.endswith(".png") for p in files)
            assert "report.html" in files and "results.json" in files
            # The de-identified file itself is on the scan, and carries no original identifier.
            scan_files = list(scan_obj.resources["OCT"].files.values())
            assert scan_files and all(b"PHANTOM21" not in body for body in scan_files)

            # A version bump: recomputed everywhere, the old value archived in XNAT too.
            old_v = get_measure("signal").version
            major, minor, _ = old_v.split(".")
            new_v = f"{major}.{int(minor) + 1}.0"
            publish_measure(store, "signal", new_v)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                current = {r.measure: r.version for r in ledger.results(rec.scan_hash)}
                if current.get("signal") == new_v:
                    break
                time.sleep(0.3)
            assert current.get("signal") == new_v
            _wait_xnat_jobs(stack, 2)
            session = xnat.session("E2E", rec.subject, rec.session)
            archive = session.scans[rec.scan].resources["QMROCT_ARCHIVE"].files
            assert any(p.startswith(f"signal/{old_v}/") for p in archive), sorted(archive)
            old = [
                a.scans[0]
                for a in session.assessors.values()
                if a.scans[0].fields["measure"] == "signal"
                and a.scans[0].fields["version"] == old_v
            ]
            assert old and old[0].fields["current"] == "false"

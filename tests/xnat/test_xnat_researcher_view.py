"""What a researcher sees: xnat-callback pushes through the ledger, then XNAT's own Python client
(xnatpy, default ``xnat.connect()``, its data model built from the server's schemas) reads it
back: projects, subjects, experiments, each scan's own values, resources and downloads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import xnat as xnatpy
from qmroct.clients.xnat import XnatClient, XnatError
from qmroct.storage.ledger import Ledger, Policy
from qmroct.storage.records import JobKind
from qmroct.xnat.callback import run_callback
from xnat_scene import Clock, add_scan, record_measure


def _push(ledger: Ledger, store, t, scan_hash: str) -> None:  # noqa: ANN001
    ledger.enqueue(JobKind.XNAT, scan_hash, "signal", "latest", action="xnat-callback", rearm=True)
    (claim,) = ledger.claim(cap=1, kinds=[JobKind.XNAT])
    params = {
        "job_key": claim.job.job_key,
        "lease_token": claim.lease_token,
        "scan_hash": scan_hash,
        "xnat_url": t.url,
        "xnat_alias": t.alias,
        "xnat_secret": t.secret,
    }
    client = XnatClient(t.url, t.alias, t.secret, sleep=lambda s: None)
    out = run_callback(ledger, store, params, client=client)
    assert out.status == "done", out.reason


def _stats(assessor) -> tuple[str, dict[str, float], dict[str, str]]:  # noqa: ANN001
    """The one scan of a qmroct assessor, read through xnatpy's generated classes: texts by
    name (xnat.xsd makes ``name`` addField's display identifier); numbers from the same
    object's data, as xnatpy lists additionalStatistics by position only."""
    (scan,) = list(assessor.scans)
    st = scan.scan_statistics
    texts = dict(st.add_field.items())
    (listed,) = [
        c["items"] for c in st.fulldata["children"] if c["field"] == "additionalStatistics"
    ]
    numbers = {i["data_fields"]["name"]: i["data_fields"]["additionalStatistics"] for i in listed}
    return scan.id, numbers, texts


@pytest.fixture
def ledger(tmp_path: Path):  # noqa: ANN201
    led = Ledger.open(
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}", policy=Policy(lease_s=60), clock=Clock()
    )
    yield led
    led.close()


def test_two_scans_of_one_session_keep_their_own_values(
    ledger,
    store,
    xnat_target,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    od = add_scan(
        ledger, store, f"{t.project}/{sub}/{ses}/OD.vol", b"HSF-OCT-103 right eye", gzipped=True
    )
    os_ = add_scan(ledger, store, f"{t.project}/{sub}/{ses}/OS.vol", b"HSF-OCT-103 left eye")
    record_measure(ledger, store, od, "1.0.0", 20.0)
    record_measure(ledger, store, os_, "1.0.0", 14.5)
    _push(ledger, store, t, od)
    _push(ledger, store, t, os_)
    # A new measure version: recomputed for both scans, the old values archived.
    record_measure(ledger, store, od, "1.1.0", 21.25)
    record_measure(ledger, store, os_, "1.1.0", 15.75)
    _push(ledger, store, t, os_)
    _push(ledger, store, t, od)

    session = xnatpy.connect(t.url, user=t.alias, password=t.secret)
    try:
        project = session.projects[t.project]
        experiment = project.subjects[sub].experiments[ses]
        assert experiment.__xsi_type__ == "xnat:optSessionData"
        assert sorted(s.id for s in experiment.scans.values()) == ["OD", "OS"]

        by_scan: dict[tuple[str, str], tuple[dict, dict]] = {}
        for assessor in experiment.assessors.values():
            assert assessor.__xsi_type__ == "xnat:qcAssessmentData"
            scan_id, numbers, texts = _stats(assessor)
            by_scan[(scan_id, texts["version"])] = (numbers, texts)
        assert set(by_scan) == {(s, v) for s in ("OD", "OS") for v in ("1.0.0", "1.1.0")}
        # Each scan its own values, current and archived.
        assert by_scan[("OD", "1.1.0")][0] == {"snr_db": 21.25}
        assert by_scan[("OS", "1.1.0")][0] == {"snr_db": 15.75}
        assert by_scan[("OD", "1.0.0")][0] == {"snr_db": 20.0}
        assert by_scan[("OS", "1.0.0")][0] == {"snr_db": 14.5}
        assert by_scan[("OD", "1.1.0")][1]["current"] == "true"
        old = by_scan[("OS", "1.0.0")][1]
        assert old["current"] == "false" and old["superseded_by"] == "1.1.0"

        for scan_id, scan_hash, snr in (("OD", od, 21.25), ("OS", os_, 15.75)):
            scan = experiment.scans[scan_id]
            assert scan.__xsi_type__ == "xnat:optScanData"
            assert {r.label for r in scan.resources.values()} == {"OCT", "QMROCT", "QMROCT_ARCHIVE"}
            qc_files = scan.resources["QMROCT"].files
            assert sorted(qc_files.keys()) == ["report.html", "results.json", "signal.png"]
            target = tmp_path / f"{scan_id}.png"
            qc_files["signal.png"].download(target, verbose=False)
            assert target.read_bytes() == f"PNG {scan_hash[:8]} 1.1.0".encode()
            results = tmp_path / f"{scan_id}.json"
            qc_files["results.json"].download(results, verbose=False)
            body = json.loads(results.read_text())
            assert body["scan"]["scan"] == scan_id and body["scan"]["scan_hash"] == scan_hash
            assert [r["values"]["snr_db"] for r in body["results"]] == [snr]
            archive = scan.resources["QMROCT_ARCHIVE"].files
            (name,) = archive.keys()
            assert name.startswith("signal/1.0.0/")
            arch = tmp_path / f"{scan_id}-archive.json"
            archive[name].download(arch, verbose=False)
            archived = json.loads(arch.read_text())
            assert archived["version"] == "1.0.0" and archived["current"] is False
            assert archived["values"]["snr_db"] == {"OD": 20.0, "OS": 14.5}[scan_id]
            # The scan file itself: decompressed, and hashing to what SHA256SUMS says.
            oct_files = scan.resources["OCT"].files
            assert sorted(oct_files.keys()) == sorted(["SHA256SUMS", f"{scan_id}.vol"])
            vol, sums = tmp_path / f"{scan_id}.vol", tmp_path / f"{scan_id}.sums"
            oct_files[f"{scan_id}.vol"].download(vol, verbose=False)
            oct_files["SHA256SUMS"].download(sums, verbose=False)
            digest = hashlib.sha256(vol.read_bytes()).hexdigest()
            assert digest == scan_hash and sums.read_text() == f"{digest}  {scan_id}.vol\n"
    finally:
        session.disconnect()


def test_report_html_goes_as_xnat_accepts_it(ledger, store, xnat_target, standin) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    h = add_scan(ledger, store, f"{t.project}/{sub}/{ses}/OD.vol", b"HSF-OCT-103 one eye")
    record_measure(ledger, store, h, "1.0.0", 20.0)
    _push(ledger, store, t, h)
    (put,) = [u for u in standin.uploads if u[0].endswith("/QMROCT/files/report.html")]
    path, ctype, query = put
    # The callback sends the page as xnatpy sends files; XNAT reads such a body.
    assert ctype == "application/octet-stream" and "inbody" not in query
    with XnatClient(t.url, t.alias, t.secret, sleep=lambda s: None) as c:
        page = c.get_file(t.project, sub, ses, "QMROCT", "report.html", scan="OD")
        assert page.startswith(b"<!DOCTYPE html>") and b"signal" in page
        # The same PUT as text/html without inbody: XNAT (FileList) refuses it with 400.
        with pytest.raises(XnatError) as err:
            c._send(
                "PUT",
                path,
                params={"overwrite": "true"},
                data=page,
                headers={"Content-Type": "text/html"},
            )
        assert err.value.status == 400 and "inbody=true" in err.value.message

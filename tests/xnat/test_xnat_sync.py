"""Registering scans and publishing results in XNAT: once, and nothing written twice."""

from __future__ import annotations

import gzip
import hashlib
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from qmroct.clients.xnat import XnatClient
from qmroct.errors import QmroctError
from qmroct.results import CriterionVerdict, ResultStatus, StoredResult, Verdict
from qmroct.xnat.assessor import assessor_label, assessor_xml, qc_from_item, scan_qc, worst_verdicts
from qmroct.xnat.sync import ARCHIVE_RESOURCE, RESULTS_RESOURCE, ScanPlace, XnatSync, scan_file

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DATA = b"HSF-OCT-103 de-identified bytes"
HASH = hashlib.sha256(DATA).hexdigest()


def stored(
    measure: str, version: str, values: dict, *, current: bool = True, id_: int = 1, verdicts=()
):  # noqa: ANN001, ANN202
    return StoredResult(
        id=id_,
        job_key=f"measure:{HASH}:{measure}:{version}",
        lease_token="t",
        scan_hash=HASH,
        measure=measure,
        version=version,
        status=ResultStatus.OK,
        values=values,
        verdicts=list(verdicts),
        picture_stored=current,
        started_at=T0,
        ended_at=T0,
        current=current,
        superseded_by=None if current else "9.9.9",
        superseded_reason=None if current else "superseded by version 9.9.9",
    )


def _place(t) -> ScanPlace:  # noqa: ANN001
    return ScanPlace(
        project=t.project,
        subject=t.label("sub"),
        session=t.label("ses"),
        scan=t.label("scn"),
        ext="vol",
        scan_hash=HASH,
        format="heyex_vol",
        pattern="line",
    )


def _client(t) -> XnatClient:  # noqa: ANN001
    return XnatClient(t.url, t.alias, t.secret, sleep=lambda s: None)


def test_values_split_into_statistics_and_fields() -> None:
    r = stored(
        "signal",
        "1.2.0",
        {"SNR dB": 23.456789, "ok": True, "grade": "B", "bad": float("nan"), "n": 3},
        verdicts=[CriterionVerdict(criterion="O", verdict=Verdict.WARN, reason="")],
    )
    qc = scan_qc("7", r)
    assert qc.scan == "7"
    assert qc.statistics == {"snr_db": 23.456789, "n": 3.0}
    assert qc.fields["ok"] == "true" and qc.fields["grade"] == "B" and qc.fields["bad"] == "nan"
    assert qc.fields["oscar_o"] == "warn" and qc.fields["version"] == "1.2.0"
    assert qc.fields["current"] == "true" and qc.fields["status"] == "ok"
    doc = assessor_xml(label="L", project="P", session_id="XNAT_E1", qc=qc, date="2026-01-01")
    root = ET.fromstring(doc)
    ns = "{http://nrg.wustl.edu/xnat}"
    assert root.tag == f"{ns}QCAssessment" and root.get("label") == "L"
    # xnat.xsd's sequence: experimentData's date before imageAssessorData's imageSession_ID
    # before qcAssessmentData's scans.
    assert [c.tag for c in root] == [f"{ns}date", f"{ns}imageSession_ID", f"{ns}scans"]
    (scan,) = root.iter(f"{ns}scan")
    assert scan.get("id") == "7"
    stats = {a.get("name"): float(a.text) for a in scan.iter(f"{ns}additionalStatistics")}
    assert stats == qc.statistics


def test_labels_are_xnat_labels() -> None:
    label = assessor_label("ses 1", "OD/line", "signal", "1.2.0")
    assert label == "ses_1_OD_line_qmroct_signal_v1_2_0"
    assert assessor_label("s", "1", "signal", "1.2.0") != assessor_label(
        "s", "2", "signal", "1.2.0"
    )


def test_worst_verdict_over_measures() -> None:
    results = [
        stored(
            "signal",
            "1",
            {},
            verdicts=[CriterionVerdict(criterion="O", verdict=Verdict.PASS, reason="")],
        ),
        stored(
            "sharp",
            "1",
            {},
            verdicts=[CriterionVerdict(criterion="O", verdict=Verdict.FAIL, reason="")],
        ),
        stored(
            "old",
            "1",
            {},
            current=False,
            verdicts=[CriterionVerdict(criterion="S", verdict=Verdict.FAIL, reason="")],
        ),
    ]
    assert worst_verdicts(results) == {"O": "fail"}


def test_scan_file_is_decompressed_and_checked() -> None:
    place = ScanPlace(project="P", subject="s", session="e", scan="1", ext="vol", scan_hash=HASH)
    name, body = scan_file(place, gzip.compress(DATA))
    assert (name, body) == ("1.vol", DATA)
    assert scan_file(place.model_copy(update={"ext": "vol.gz"}), gzip.compress(DATA))[0] == "1.vol"
    with pytest.raises(QmroctError, match="P/s/e/1.vol.*not the catalogued"):
        scan_file(place, b"other bytes")


def test_register_once_per_hash(xnat_target) -> None:  # noqa: ANN001
    t, place = xnat_target, _place(xnat_target)
    with _client(t) as c:
        sync = XnatSync(c)
        assert sync.register_scan(place, gzip.compress(DATA)) is True
        assert sync.register_scan(place, DATA) is False
        fetched = []
        assert sync.register_scan_lazy(place, lambda: fetched.append(1) or b"") is False
        assert fetched == []  # registered: the scan is not even downloaded
        names = {
            r["Name"]
            for r in c.list_files(t.project, place.subject, place.session, "OCT", scan=place.scan)
        }
        assert names == {f"{place.scan}.vol", "SHA256SUMS"}
        # What the name says: the decompressed scan, whose sha256 is the one SHA256SUMS states.
        body = c.get_file(
            t.project, place.subject, place.session, "OCT", f"{place.scan}.vol", scan=place.scan
        )
        sums = c.get_file(
            t.project, place.subject, place.session, "OCT", "SHA256SUMS", scan=place.scan
        )
        assert body == DATA
        assert sums.decode() == f"{hashlib.sha256(body).hexdigest()}  {place.scan}.vol\n"


def _qc(c, t, place, measure: str, version: str):  # noqa: ANN001, ANN202
    label = assessor_label(place.session, place.scan, measure, version)
    (qc,) = qc_from_item(c.get_assessor(t.project, place.subject, place.session, label))
    return qc


def test_push_results_then_nothing_twice(xnat_target) -> None:  # noqa: ANN001
    t, place = xnat_target, _place(xnat_target)
    results = [
        stored(
            "signal",
            "1.1.0",
            {"snr_db": 23.4},
            verdicts=[CriterionVerdict(criterion="S", verdict=Verdict.PASS, reason="")],
        ),
        stored("signal", "1.0.0", {"snr_db": 21.0}, current=False, id_=7),
    ]
    pictures = {"signal": b"\x89PNG picture"}
    with _client(t) as c:
        sync = XnatSync(c)
        sync.register_scan(place, DATA)
        first = sync.push_results(place, results, pictures)
        assert sorted(first.assessors_written) == sorted(
            assessor_label(place.session, place.scan, "signal", v) for v in ("1.1.0", "1.0.0")
        )
        assert sorted(first.files_written) == sorted(
            [
                f"{RESULTS_RESOURCE}/signal.png",
                f"{RESULTS_RESOURCE}/report.html",
                f"{RESULTS_RESOURCE}/results.json",
                f"{ARCHIVE_RESOURCE}/signal/1.0.0/7.json",
            ]
        )
        now = _qc(c, t, place, "signal", "1.1.0")
        assert now.scan == place.scan and now.statistics == {"snr_db": 23.4}
        assert now.fields["oscar_s"] == "pass" and now.fields["current"] == "true"
        old = _qc(c, t, place, "signal", "1.0.0")
        assert old.statistics == {"snr_db": 21.0} and old.fields["current"] == "false"
        args = (t.project, place.subject, place.session)
        body = json.loads(c.get_file(*args, RESULTS_RESOURCE, "results.json", scan=place.scan))
        assert body["results"][0]["values"] == {"snr_db": 23.4} and body["oscar_ib"] == {
            "S": "pass"
        }
        archived = json.loads(
            c.get_file(*args, ARCHIVE_RESOURCE, "signal/1.0.0/7.json", scan=place.scan)
        )
        assert archived["values"] == {"snr_db": 21.0} and archived["current"] is False

        again = sync.push_results(place, results, pictures)
        assert again.assessors_written == [] and again.files_written == []
        assert again.assessors_unchanged == 2

        results[0].values["snr_db"] = 24.0
        third = sync.push_results(place, results, pictures)
        assert third.assessors_written == [
            assessor_label(place.session, place.scan, "signal", "1.1.0")
        ]
        assert _qc(c, t, place, "signal", "1.1.0").statistics == {"snr_db": 24.0}
        assert sorted(third.files_written) == sorted(
            [f"{RESULTS_RESOURCE}/report.html", f"{RESULTS_RESOURCE}/results.json"]
        )


def test_second_push_makes_no_write(xnat_target, standin) -> None:  # noqa: ANN001
    t, place = xnat_target, _place(xnat_target)
    results = [stored("signal", "1.0.0", {"snr_db": 20.0})]
    with _client(t) as c:
        XnatSync(c).register_scan(place, DATA)
        XnatSync(c).push_results(place, results, {"signal": b"png"})
    before = len(standin.writes())
    with _client(t) as c:
        XnatSync(c).register_scan(place, DATA)
        XnatSync(c).push_results(place, results, {"signal": b"png"})
    new = standin.writes()[before:]
    assert [w[:2] for w in new] == [("POST", "/data/JSESSION"), ("DELETE", "/data/JSESSION")]


def test_every_upload_goes_as_xnatpy_sends_files(xnat_target, standin) -> None:  # noqa: ANN001
    t, place = xnat_target, _place(xnat_target)
    with _client(t) as c:
        XnatSync(c).register_scan(place, DATA)
        XnatSync(c).push_results(
            place, [stored("signal", "1.0.0", {"snr_db": 20.0})], {"signal": b"png"}
        )
    assert standin.uploads
    for path, ctype, _query in standin.uploads:
        assert ctype == "application/octet-stream", (path, ctype)  # as xnatpy uploads

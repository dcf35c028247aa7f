"""Registering scans and publishing results in XNAT: once, and nothing written twice."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from qmroct.clients.xnat import XnatClient
from qmroct.results import CriterionVerdict, ResultStatus, StoredResult, Verdict
from qmroct.xnat.fields import session_fields
from qmroct.xnat.sync import ARCHIVE_RESOURCE, RESULTS_RESOURCE, ScanPlace, XnatSync

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HASH = hashlib.sha256(b"scan-1").hexdigest()


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


def test_field_names_and_worst_verdict() -> None:
    results = [
        stored(
            "signal",
            "1.2.0",
            {"SNR dB": 23.456789, "ok": True},
            verdicts=[CriterionVerdict(criterion="O", verdict=Verdict.PASS, reason="")],
        ),
        stored(
            "sharpness",
            "1.0.0",
            {"index": 3},
            verdicts=[CriterionVerdict(criterion="O", verdict=Verdict.WARN, reason="")],
        ),
        stored("signal", "1.0.0", {"SNR dB": 1.0}, current=False, id_=2),
    ]
    f = session_fields(results)
    assert f["qc_signal_snr_db"] == "23.4568" and f["qc_signal_ok"] == "true"
    assert f["qc_signal_o"] == "pass" and f["qc_sharpness_o"] == "warn"
    assert f["qc_oscar_o"] == "warn" and f["qc_signal_version"] == "1.2.0"
    assert all(k == k.lower() for k in f)


def test_register_once_per_hash(xnat_target) -> None:  # noqa: ANN001
    t, place = xnat_target, _place(xnat_target)
    with _client(t) as c:
        sync = XnatSync(c)
        assert sync.register_scan(place, b"HSF-OCT-103 de-identified bytes") is True
        assert sync.register_scan(place, b"HSF-OCT-103 de-identified bytes") is False
        fetched = []
        assert sync.register_scan_lazy(place, lambda: fetched.append(1) or b"") is False
        assert fetched == []  # registered: the scan is not even downloaded
        names = {
            r["Name"]
            for r in c.list_files(t.project, place.subject, place.session, "OCT", scan=place.scan)
        }
        assert names == {f"{place.scan}.vol", "SHA256SUMS"}


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
        sync.register_scan(place, b"bytes")
        first = sync.push_results(place, results, pictures)
        assert first.fields_written == len(session_fields(results))
        assert sorted(first.files_written) == sorted(
            [
                f"{RESULTS_RESOURCE}/{place.scan}/signal.png",
                f"{RESULTS_RESOURCE}/{place.scan}/report.html",
                f"{RESULTS_RESOURCE}/{place.scan}/results.json",
                f"{ARCHIVE_RESOURCE}/signal/1.0.0/{place.scan}-7.json",
            ]
        )
        fields = c.get_session_fields(t.project, place.subject, place.session)
        assert fields["qc_signal_snr_db"] == "23.4" and fields["qc_oscar_s"] == "pass"
        body = json.loads(
            c.get_file(
                t.project,
                place.subject,
                place.session,
                RESULTS_RESOURCE,
                f"{place.scan}/results.json",
            )
        )
        assert body["results"][0]["values"] == {"snr_db": 23.4}
        archived = json.loads(
            c.get_file(
                t.project,
                place.subject,
                place.session,
                ARCHIVE_RESOURCE,
                f"signal/1.0.0/{place.scan}-7.json",
            )
        )
        assert archived["values"] == {"snr_db": 21.0} and archived["current"] is False

        again = sync.push_results(place, results, pictures)
        assert again.fields_written == 0 and again.files_written == []

        results[0].values["snr_db"] = 24.0
        third = sync.push_results(place, results, pictures)
        assert third.fields_written == 1
        assert sorted(third.files_written) == sorted(
            [
                f"{RESULTS_RESOURCE}/{place.scan}/report.html",
                f"{RESULTS_RESOURCE}/{place.scan}/results.json",
            ]
        )


def test_second_push_makes_no_write(xnat_target, standin) -> None:  # noqa: ANN001
    t, place = xnat_target, _place(xnat_target)
    results = [stored("signal", "1.0.0", {"snr_db": 20.0})]
    with _client(t) as c:
        XnatSync(c).register_scan(place, b"x")
        XnatSync(c).push_results(place, results, {"signal": b"png"})
    before = len(standin.writes())
    with _client(t) as c:
        XnatSync(c).register_scan(place, b"x")
        XnatSync(c).push_results(place, results, {"signal": b"png"})
    new = standin.writes()[before:]
    assert [w[:2] for w in new] == [("POST", "/data/JSESSION"), ("DELETE", "/data/JSESSION")]

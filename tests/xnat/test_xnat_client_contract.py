"""The XNAT REST contract qmroct relies on. Runs against a real XNAT when configured."""

from __future__ import annotations

import pytest
import xnat as xnatpy
from qmroct.clients.xnat import XnatClient, XnatConflict, XnatError, XnatUnavailable, duplicates
from qmroct.xnat.assessor import ScanQC, assessor_xml, qc_from_item


def _client(t, **kw) -> XnatClient:  # noqa: ANN001
    return XnatClient(t.url, t.alias, t.secret, sleep=lambda s: None, **kw)


def test_one_jsession_per_batch(xnat_target, standin) -> None:  # noqa: ANN001
    t = xnat_target
    with _client(t) as c:
        c.put_subject(t.project, t.label("sub"))
        c.put_subject(t.project, t.label("sub"))
    log = standin.requests
    assert log[0][:2] == ("POST", "/data/JSESSION") and log[0][2] == "basic"
    assert [r[2] for r in log[1:]] == ["session"] * (len(log) - 1)  # cookie only after login
    assert log[-1][:2] == ("DELETE", "/data/JSESSION")
    assert not standin.sessions_open


def test_user_agent_is_not_a_browser(xnat_target) -> None:  # noqa: ANN001
    c = _client(xnat_target)
    assert (
        "Mozilla" not in c.http.headers["User-Agent"] and "qmroct" in c.http.headers["User-Agent"]
    )


def test_wrong_token_is_a_typed_401(xnat_target) -> None:  # noqa: ANN001
    c = XnatClient(xnat_target.url, xnat_target.alias, "wrong-secret", sleep=lambda s: None)
    with pytest.raises(XnatError) as err:
        c.open()
    assert err.value.status == 401 and "/data/JSESSION" in str(err.value)


def test_create_then_update_statuses(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses, scan = t.label("sub"), t.label("ses"), "1"
    with _client(t) as c:
        assert c.put_subject(t.project, sub) == 201
        assert c.put_subject(t.project, sub) == 200
        first = c.put_session(t.project, sub, ses)
        assert first and c.put_session(t.project, sub, ses) == first  # same experiment id
        assert c.put_scan(t.project, sub, ses, scan, scan_type="OCT line") in (200, 201)


def test_files_duplicates_overwrite_and_conflict(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    with _client(t) as c:
        c.put_subject(t.project, sub)
        c.put_session(t.project, sub, ses)
        assert c.put_file(t.project, sub, ses, "QMROCT", "a/pic.png", b"\x89PNG one") == []
        # XNAT answers a duplicate with 200 and {"duplicates": [...]} typed text/html.
        dup = c.put_file(
            t.project, sub, ses, "QMROCT", "a/pic.png", b"\x89PNG two", overwrite=False
        )
        assert dup and "pic.png" in dup[0]
        assert c.get_file(t.project, sub, ses, "QMROCT", "a/pic.png") == b"\x89PNG one"  # kept
        c.put_file(t.project, sub, ses, "QMROCT", "a/pic.png", b"\x89PNG two")
        assert c.get_file(t.project, sub, ses, "QMROCT", "a/pic.png") == b"\x89PNG two"
        (row,) = c.list_files(t.project, sub, ses, "QMROCT")
        assert row["Name"] == "pic.png" and int(row["Size"]) == len(b"\x89PNG two")
        assert row["URI"].endswith("/files/a/pic.png")
        with pytest.raises(XnatConflict):
            c.create_resource(t.project, sub, ses, "QMROCT")


@pytest.mark.parametrize("ctype", ["text/html", "application/json"])
def test_unsupported_upload_type_refused_without_inbody(xnat_target, ctype) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    with _client(t) as c:
        c.put_subject(t.project, sub)
        c.put_session(t.project, sub, ses)
        path = c._resource_path(t.project, sub, ses, "QMROCT", None) + "/files/x"
        with pytest.raises(XnatError) as err:
            c._send("PUT", path, data=b"<p>hi</p>", headers={"Content-Type": ctype})
        assert err.value.status == 400 and "inbody=true" in err.value.message
        assert not isinstance(err.value, XnatUnavailable)
        # With inbody=true XNAT reads the body whatever its type.
        c._send(
            "PUT",
            path,
            params={"inbody": "true"},
            data=b"<p>hi</p>",
            headers={"Content-Type": ctype},
        )
        assert c.get_file(t.project, sub, ses, "QMROCT", "x") == b"<p>hi</p>"


def test_duplicates_parsed_from_xnats_text_html_answer() -> None:
    assert duplicates('{"duplicates":["a/b.json"]}') == ["a/b.json"]
    assert duplicates("") == [] and duplicates("<html>oops</html>") == []


def test_assessor_put_and_read_back(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    with _client(t) as c:
        c.put_subject(t.project, sub)
        sid = c.put_session(t.project, sub, ses)
        c.put_scan(t.project, sub, ses, "1", scan_type="OCT line")
        assert c.session_id(t.project, sub, ses) == sid
        qc = ScanQC(scan="1", statistics={"snr_db": 21.5}, fields={"oscar_s": "pass"})
        doc = assessor_xml(label=f"{ses}_qc", project=t.project, session_id=sid, qc=qc)
        aid = c.put_assessor(t.project, sub, ses, f"{ses}_qc", doc)
        assert aid and aid != sid
        (row,) = c.list_assessors(t.project, sub, ses)
        assert row["label"] == f"{ses}_qc" and row["xsiType"] == "xnat:qcAssessmentData"
        assert qc_from_item(c.get_assessor(t.project, sub, ses, f"{ses}_qc")) == [qc]
        # A document XNAT cannot read is refused with a 400, not stored.
        with pytest.raises(XnatError) as err:
            c.put_assessor(t.project, sub, ses, f"{ses}_bad", b"<not xml")
        assert err.value.status == 400


def test_4xx_carries_xnats_message(xnat_target) -> None:  # noqa: ANN001
    with _client(xnat_target) as c, pytest.raises(XnatError) as err:
        c.put_session("NO_SUCH_PROJECT_QMROCT", "s", "e")
    assert 400 <= err.value.status < 500 and not isinstance(err.value, XnatUnavailable)
    assert "NO_SUCH_PROJECT_QMROCT" in str(err.value)


def test_retries_transient_then_gives_up_typed(xnat_target, standin) -> None:  # noqa: ANN001
    t = xnat_target
    c = _client(t, retries=3)
    with c:
        standin.fail_next(2, 503)
        assert c.put_subject(t.project, t.label("sub")) == 201  # two 503s, then through
        standin.fail_next(10, 502)
        with pytest.raises(XnatUnavailable) as err:
            c.put_subject(t.project, t.label("sub"))
        assert err.value.status == 502
        standin.fail_next(0)


def test_500_is_an_answer_not_retried(xnat_target, standin) -> None:  # noqa: ANN001
    t = xnat_target
    with _client(t, retries=3) as c:
        before = len(standin.requests)
        standin.fail_next(1, 500)
        with pytest.raises(XnatError) as err:
            c.put_subject(t.project, t.label("sub"))
        assert err.value.status == 500 and not isinstance(err.value, XnatUnavailable)
        assert len(standin.requests) == before + 1  # asked once


def test_alias_token_expires_and_is_renewed(xnat_target, standin) -> None:  # noqa: ANN001
    t = xnat_target
    standin.advance(30 * 3600)
    with _client(t) as c:  # 30 h old: still good, and it can issue its successor
        fresh = c.issue_token()
    assert fresh.alias != t.alias and fresh.expires_ms
    standin.advance(20 * 3600)  # the first token is 50 h old now, the fresh one 20 h
    with pytest.raises(XnatError) as err:
        _client(t).open()
    assert err.value.status == 401 and not isinstance(err.value, XnatUnavailable)
    with XnatClient(t.url, fresh.alias, fresh.secret, sleep=lambda s: None) as c:
        assert c.put_subject(t.project, t.label("sub")) == 201


def test_connection_refused_is_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = XnatClient(f"http://127.0.0.1:{port}", "a", "b", retries=1, sleep=lambda s: None)
    with pytest.raises(XnatUnavailable):
        c.open()


def test_xnatpy_default_connect(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    session = xnatpy.connect(t.url, user=t.alias, password=t.secret)
    try:
        assert session.xnat_version.startswith("1.")
        assert t.project in session.projects
        # The data model came from the server's schemas: the types qmroct writes are classes.
        for xsi_type in ("xnat:optSessionData", "xnat:optScanData", "xnat:qcAssessmentData"):
            assert xsi_type in session.XNAT_CLASS_LOOKUP
    finally:
        session.disconnect()

"""The XNAT REST contract qmroct relies on. Runs against a real XNAT when configured."""

from __future__ import annotations

import pytest
import xnat as xnatpy
from qmroct.clients.xnat import XnatClient, XnatConflict, XnatError, XnatUnavailable


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


def test_fields_lower_cased_and_replaced(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    with _client(t) as c:
        c.put_subject(t.project, sub)
        c.put_session(t.project, sub, ses)
        c.set_session_fields(
            t.project, sub, ses, {"QC_Signal_SNR_dB": "23.4", "qc_oscar_o": "pass"}
        )
        assert c.get_session_fields(t.project, sub, ses) == {
            "qc_signal_snr_db": "23.4",
            "qc_oscar_o": "pass",
        }
        c.set_session_fields(t.project, sub, ses, {"qc_signal_snr_db": "19.0"})
        assert c.get_session_fields(t.project, sub, ses)["qc_signal_snr_db"] == "19.0"


def test_files_duplicates_overwrite_json_and_conflict(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    sub, ses = t.label("sub"), t.label("ses")
    with _client(t) as c:
        c.put_subject(t.project, sub)
        c.put_session(t.project, sub, ses)
        assert (
            c.put_file(
                t.project, sub, ses, "QMROCT", "a/pic.png", b"\x89PNG one", content_type="image/png"
            )
            == []
        )
        dup = c.put_file(
            t.project, sub, ses, "QMROCT", "a/pic.png", b"\x89PNG two", overwrite=False
        )
        assert dup and "pic.png" in dup[0]
        assert c.get_file(t.project, sub, ses, "QMROCT", "a/pic.png") == b"\x89PNG one"  # kept
        c.put_file(
            t.project, sub, ses, "QMROCT", "a/pic.png", b"\x89PNG two", content_type="image/png"
        )
        assert c.get_file(t.project, sub, ses, "QMROCT", "a/pic.png") == b"\x89PNG two"
        (row,) = c.list_files(t.project, sub, ses, "QMROCT")
        assert row["Name"] == "pic.png" and int(row["Size"]) == len(b"\x89PNG two")
        # JSON bodies need inbody=true; without it XNAT says 400, with its message.
        path = c._resource_path(t.project, sub, ses, "QMROCT", None) + "/files/x.json"
        with pytest.raises(XnatError) as err:
            c._send("PUT", path, data=b"{}", headers={"Content-Type": "application/json"})
        assert err.value.status == 400 and err.value.message
        assert (
            c.put_file(
                t.project, sub, ses, "QMROCT", "x.json", b"{}", content_type="application/json"
            )
            == []
        )
        with pytest.raises(XnatConflict):
            c.create_resource(t.project, sub, ses, "QMROCT")


def test_4xx_carries_xnats_message(xnat_target) -> None:  # noqa: ANN001
    with _client(xnat_target) as c, pytest.raises(XnatError) as err:
        c.put_session("NO_SUCH_PROJECT_QMROCT", "s", "e")
    assert 400 <= err.value.status < 500 and not isinstance(err.value, XnatUnavailable)
    assert "NO_SUCH_PROJECT_QMROCT" in str(err.value)


def test_retries_5xx_then_gives_up_typed(xnat_target, standin) -> None:  # noqa: ANN001
    t = xnat_target
    c = _client(t, retries=3)
    with c:
        standin.fail_next(2)
        assert c.put_subject(t.project, t.label("sub")) == 201  # two 500s, then through
        standin.fail_next(10)
        with pytest.raises(XnatUnavailable) as err:
            c.put_subject(t.project, t.label("sub"))
        assert err.value.status == 500
        standin.fail_next(0)


def test_connection_refused_is_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = XnatClient(f"http://127.0.0.1:{port}", "a", "b", retries=1, sleep=lambda s: None)
    with pytest.raises(XnatUnavailable):
        c.open()


def test_xnatpy_connect_without_model(xnat_target) -> None:  # noqa: ANN001
    t = xnat_target
    session = xnatpy.connect(t.url, user=t.alias, password=t.secret, no_parse_model=True)
    try:
        assert session.xnat_version
        assert session.logged_in_user
    finally:
        session.disconnect()

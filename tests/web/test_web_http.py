"""The web view over HTTP on the demo's data: login, roles, CSRF, rate limit, search, the scan
page, downloads and their audit rows."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
import requests
from qmroct.measures.base import get_measure
from qmroct.storage.db import connect
from web_support import PASSWORD


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def login(url: str, user: str, password: str = PASSWORD) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{url}/login")
    r = s.post(
        f"{url}/login",
        data={"username": user, "password": password, "csrf_token": _csrf(page.text)},
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text[:300]
    return s


def _hashes(html: str) -> list[str]:
    return re.findall(r'<tr data-hash="([0-9a-f]{64})"', html)


def _db_rows(demo_data, sql: str, params: dict | None = None) -> list[dict]:
    db = connect(demo_data.ledger_url)
    try:
        return db.query(sql, params)
    finally:
        db.close()


def test_pages_need_login_and_cookie_is_hardened(web_server) -> None:
    r = requests.get(f"{web_server.url}/", allow_redirects=False)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert requests.get(f"{web_server.url}/download/results/{'0' * 64}.json").status_code == 401
    page = requests.get(f"{web_server.url}/login")
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "http" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"


def test_login_refuses_wrong_password_and_missing_csrf(web_server) -> None:
    s = requests.Session()
    token = _csrf(s.get(f"{web_server.url}/login").text)
    r = s.post(
        f"{web_server.url}/login",
        data={"username": "ada", "password": "wrong password!", "csrf_token": token},
        allow_redirects=False,
    )
    assert r.status_code == 401 and "Wrong username or password" in r.text
    r = s.post(
        f"{web_server.url}/login",
        data={"username": "ada", "password": PASSWORD},
        allow_redirects=False,
    )
    assert r.status_code == 400  # no CSRF token
    # An absolute ?next= is not followed (no open redirect).
    r = s.post(
        f"{web_server.url}/login?next=https://evil.example/",
        data={"username": "ada", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_login_rate_limit(web_server) -> None:
    from qmroct.web.auth import Users

    Users(web_server.state.db).add("victim", PASSWORD, "researcher", ["DEMO"])
    s = requests.Session()
    token = _csrf(s.get(f"{web_server.url}/login").text)
    codes = []
    for _ in range(6):
        r = s.post(
            f"{web_server.url}/login",
            data={"username": "victim", "password": "guess guess guess", "csrf_token": token},
            allow_redirects=False,
        )
        codes.append(r.status_code)
    assert codes == [401] * 5 + [429]
    # Even the right password waits now: the limit is on the account.
    r = s.post(
        f"{web_server.url}/login",
        data={"username": "victim", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert r.status_code == 429


def test_roles_scope_what_is_seen(web_server, demo_data) -> None:
    everything = _db_rows(demo_data, "SELECT scan_hash FROM scans")
    admin = login(web_server.url, "root")
    assert len(_hashes(admin.get(f"{web_server.url}/").text)) == len(everything) == 4
    ada = login(web_server.url, "ada")
    assert len(_hashes(ada.get(f"{web_server.url}/").text)) == 4
    h = everything[0]["scan_hash"]
    for user in ("other", "dev"):
        s = login(web_server.url, user)
        assert _hashes(s.get(f"{web_server.url}/").text) == []
        assert s.get(f"{web_server.url}/scan/{h}").status_code == 404
        assert s.get(f"{web_server.url}/tile/{h}/bscan/0.png").status_code == 404
        assert s.get(f"{web_server.url}/download/scan/{h}").status_code == 404


def test_search_filters_match_the_results(web_server, demo_data) -> None:
    s = login(web_server.url, "ada")
    # Expected from the results table itself: scans with a failed S verdict, and a value range.
    rows = _db_rows(
        demo_data,
        "SELECT scan_hash, measure, result_values, verdicts FROM results WHERE is_current = 1",
    )
    s_fail = {
        r["scan_hash"]
        for r in rows
        if any(v["criterion"] == "S" and v["verdict"] == "fail" for v in json.loads(r["verdicts"]))
    }
    got = set(_hashes(s.get(f"{web_server.url}/", params={"v_S": "fail"}).text))
    assert got == s_fail and got  # the low-signal phantom fails S
    snr = {
        r["scan_hash"]: json.loads(r["result_values"])["peak_snr_db"]
        for r in rows
        if r["measure"] == "signal"
    }
    cut = sorted(snr.values())[1]
    url = f"{web_server.url}/?value=signal.peak_snr_db::{cut}"
    got = set(_hashes(s.get(url).text))
    assert got == {h for h, v in snr.items() if v <= cut}
    # The same search from the form's fields, and the shareable link it renders.
    page = s.get(f"{web_server.url}/", params={"vm": "signal.peak_snr_db", "vhi": str(cut)}).text
    assert set(_hashes(page)) == got
    link = re.search(r'id="share-link" href="\?([^"]+)"', page).group(1).replace("&amp;", "&")
    assert set(_hashes(s.get(f"{web_server.url}/?{link}").text)) == got
    patterns = {r["pattern"] for r in _db_rows(demo_data, "SELECT pattern FROM web_scans")}
    assert {"volume", "line", "ring"} <= patterns
    assert len(_hashes(s.get(f"{web_server.url}/", params={"pattern": "ring"}).text)) == 1
    assert len(_hashes(s.get(f"{web_server.url}/", params={"laterality": "OS"}).text)) == 0
    current = f"signal:{get_measure('signal').version}"
    assert len(_hashes(s.get(f"{web_server.url}/", params={"version": current}).text)) == 4
    assert len(_hashes(s.get(f"{web_server.url}/", params={"version": "signal:9.9.9"}).text)) == 0
    bad = s.get(f"{web_server.url}/", params={"value": "signal.peak_snr_db:x:"})
    assert bad.status_code == 400 and "min and max must be numbers" in bad.text


def test_scan_page_shows_every_measure_and_picture(web_server, demo_data) -> None:
    s = login(web_server.url, "ada")
    h = _db_rows(demo_data, "SELECT scan_hash FROM web_scans WHERE v_s = 'fail'")[0]["scan_hash"]
    page = s.get(f"{web_server.url}/scan/{h}").text
    measures = {
        r["measure"]
        for r in _db_rows(demo_data, "SELECT measure FROM results WHERE scan_hash = :h", {"h": h})
    }
    assert len(measures) == 9
    for m in measures:
        assert f'id="m-{m}"' in page
    assert "Overall: FAIL" in page and "peak_snr_db" in page and "dB" in page
    assert "https://xnat.example.org/data/projects/DEMO/subjects/" in page
    pics = re.findall(r'src="(/picture/[^"]+)"', page)
    assert len(pics) == 9
    r = s.get(f"{web_server.url}{pics[0]}")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_downloads_are_audited_and_deidentified(web_server, demo_data) -> None:
    s = login(web_server.url, "ada")
    hashes = [r["scan_hash"] for r in _db_rows(demo_data, "SELECT scan_hash FROM web_scans")]
    before = len(_db_rows(demo_data, "SELECT audit_id FROM web_audit"))
    r = s.get(f"{web_server.url}/download/results/{hashes[0]}.csv")
    assert r.status_code == 200 and "peak_snr_db" in r.text and "verdict_S" in r.text
    r = s.get(f"{web_server.url}/download/scan/{hashes[0]}")
    assert r.status_code == 200
    import hashlib

    assert hashlib.sha256(r.content).hexdigest() == hashes[0]
    audits = _db_rows(demo_data, "SELECT * FROM web_audit ORDER BY at")
    assert len(audits) == before + 2
    assert {a["action"] for a in audits[-2:]} == {"results-csv", "scan"}
    assert all(a["username"] == "ada" for a in audits[-2:])
    # A selection: started by a CSRF-protected POST, streamed as a zip.
    page = s.get(f"{web_server.url}/", params={"pattern": "volume"}).text
    token = _csrf(page)
    r = s.post(
        f"{web_server.url}/download/selection", data={"pattern": "volume", "csrf_token": token}
    )
    assert r.status_code == 200
    file_url = re.search(r'data-file="([^"]+)"', r.text).group(1)
    z = s.get(f"{web_server.url}{file_url}")
    assert z.status_code == 200
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = zf.namelist()
        manifest = zf.read("manifest.csv").decode()
    assert len([n for n in names if n.endswith(".vol")]) == 2
    assert manifest.count("\n") == 3
    row = _db_rows(demo_data, "SELECT * FROM web_audit ORDER BY at DESC LIMIT 1")[0]
    assert row["action"] == "selection" and row["finished"] == 1 and row["scan_count"] == 2
    assert s.get(f"{web_server.url}{file_url}").status_code == 410  # one stream per request
    assert (
        s.post(f"{web_server.url}/download/selection", data={"pattern": "volume"}).status_code
        == 400
    )


def test_a_scan_not_from_the_gateway_is_not_sent(web_server, demo_data) -> None:
    state = web_server.state
    h = _db_rows(demo_data, "SELECT scan_hash FROM web_scans")[0]["scan_hash"]
    assert state.deidentified(h)
    # The same scan bytes stored without the gateway's metadata is not de-identified output.
    rec = state.catalog.scan(h)
    data = state.store.get(rec.bucket, rec.key)
    state.store.put(rec.bucket, "DEMO/raw/raw/raw.vol", data)
    from qmroct.storage.records import ScanRecord

    fake = "f" * 64
    state.catalog.add_scan(ScanRecord(scan_hash=fake, bucket=rec.bucket, key="DEMO/raw/raw/raw.vol",
                                      size=len(data), project="DEMO", subject="raw", session="raw",
                                      scan="raw", stored_at=rec.stored_at))  # fmt: skip
    state.index.refresh()
    try:
        s = login(web_server.url, "ada")
        assert s.get(f"{web_server.url}/download/scan/{fake}").status_code == 403
    finally:
        state.db.execute("DELETE FROM web_scans WHERE scan_hash = :h", {"h": fake})
        state.db.execute("DELETE FROM scans WHERE scan_hash = :h", {"h": fake})


@pytest.mark.parametrize("path", ["/vendor/plotly.min.js", "/static/viewer.js", "/static/app.css"])
def test_assets_are_served_locally(web_server, path: str) -> None:
    r = requests.get(f"{web_server.url}{path}")
    assert r.status_code == 200 and len(r.content) > 500


def test_scan_page_history_shows_archived_values(web_server, demo_data) -> None:
    db = web_server.state.db
    h = _db_rows(demo_data, "SELECT scan_hash FROM web_scans")[0]["scan_hash"]
    cur = _db_rows(
        demo_data,
        "SELECT * FROM results WHERE scan_hash = :h AND measure = 'signal' AND is_current = 1",
        {"h": h},
    )[0]
    # An older version's value, archived when 1.0.0 replaced it (as the ledger archives).
    db.execute(
        "INSERT INTO results (job_key, scan_hash, measure, version, status, result_values,"
        " verdicts, started_at, ended_at, lease_token, is_current, recorded_at, superseded_at,"
        " superseded_by, superseded_reason) VALUES ('old', :h, 'signal', '0.9.0', 'ok',"
        " :v, '[]', 0, 0, 't', 0, 1, 2, :by, 'published')",
        {"h": h, "v": json.dumps({"peak_snr_db": 1.25}), "by": cur["version"]},
    )
    try:
        page = login(web_server.url, "ada").get(f"{web_server.url}/scan/{h}").text
        history = page[page.index('id="history"') :]
        assert "0.9.0" in history and "peak_snr_db=1.25" in history and "published" in history
    finally:
        db.execute("DELETE FROM results WHERE job_key = 'old'")


def test_viewer_overlay_has_the_stored_segmentation(web_server, demo_data) -> None:
    s = login(web_server.url, "ada")
    h = _db_rows(demo_data, "SELECT scan_hash FROM web_scans WHERE pattern = 'volume'")[0][
        "scan_hash"
    ]
    geo = s.get(f"{web_server.url}/api/scan/{h}/geometry.json").json()
    assert geo["has_segmentation"] and geo["n"] > 1
    ov = s.get(f"{web_server.url}/tile/{h}/overlay/{geo['n'] // 2}.json?w=256").json()
    ilm = [y for y in ov["layers"]["ILM"] if y is not None]
    assert len(ilm) > len(ov["columns"]) // 2 and all(0 <= y < ov["height"] for y in ilm)

"""The developer page over HTTP, on an embedded stack: upload a measure module, run it on
chosen test scans with parameters from the generated form, see values and pictures, download
the DICOM result; a researcher cannot open the page, a developer cannot approve, an admin can,
and the approval publishes the version."""

from __future__ import annotations

import io
import re
import time

import pydicom
import pytest
import requests
from qmroct.config import Settings
from qmroct.embedded.stack import EmbeddedStack, StackOptions
from qmroct.measures.scaffold import measure_module_path, new_measure
from qmroct.storage.records import MeasureState
from qmroct.storage.reviews import Reviews
from qmroct.web.server import start
from qmroct.web.state import WebSettings, WebState
from web_support import PASSWORD

NAME = "web_probe"


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def _login(url: str, user: str) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{url}/login")
    r = s.post(
        f"{url}/login",
        data={"username": user, "password": PASSWORD, "csrf_token": _csrf(page.text)},
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text[:300]
    return s


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webdev")
    stack = EmbeddedStack(tmp / "home", StackOptions(cap=2, alarm_interval_s=0.5)).start()
    try:
        web = WebSettings(refresh_s=0, test_projects="TEST", secret="test-secret-" + "y" * 20)
        state = WebState.from_settings(Settings(home=stack.home), web)
        state.users.add("ada", PASSWORD, "researcher", ["DEMO"])
        state.users.add("dev", PASSWORD, "measure-developer")
        state.users.add("root", PASSWORD, "admin")
        server = start(state)
        try:
            yield stack, server, tmp
        finally:
            server.stop()
    finally:
        stack.stop()


def test_developer_page_upload_run_download_and_approve(site):
    stack, server, tmp = site
    url = server.url
    assert _login(url, "ada").get(f"{url}/develop/").status_code == 403

    dev = _login(url, "dev")
    page = dev.get(f"{url}/develop/")
    assert page.status_code == 200 and 'id="upload-form"' in page.text
    # A file that is not a measure is refused with the reason.
    bad = dev.post(
        f"{url}/develop/upload",
        data={"name": NAME, "version": "1.0.0", "csrf_token": _csrf(page.text)},
        files={"measure": ("measure.zip", io.BytesIO(b"not a zip"), "application/zip")},
    )
    assert bad.status_code == 400 and "not a zip file" in bad.text

    new_measure(tmp / "folder", NAME)
    source = measure_module_path(tmp / "folder", NAME).read_bytes()
    up = dev.post(
        f"{url}/develop/upload",
        data={"name": NAME, "version": "1.0.0", "csrf_token": _csrf(page.text)},
        files={"measure": (f"measure_{NAME}.py", io.BytesIO(source), "text/x-python")},
        allow_redirects=False,
    )
    assert up.status_code == 302, up.text[:500]
    form = dev.get(url + up.headers["Location"])
    assert form.status_code == 200
    # The form comes from the measure's parameter model; the scans from the test bucket.
    assert re.search(r'name="param.warn_below"[^>]*value="0.4"', form.text.replace("\n", " "))
    assert 'name="param.max_bscans" step="1"' in form.text
    assert 'value="phantoms/clean.vol"' in form.text and "oct-ingest" not in form.text

    # The measure's own parameter model judges the form's values, in the action.
    out_of_range = dev.post(
        f"{url}/develop/{NAME}/run",
        data={
            "csrf_token": _csrf(form.text),
            "version": "1.0.0",
            "param.warn_below": "50",
            "scan": ["phantoms/clean.vol"],
        },
    )
    assert "FAILED" in out_of_range.text and "less than or equal to 10" in out_of_range.text
    run = dev.post(
        f"{url}/develop/{NAME}/run",
        data={
            "csrf_token": _csrf(form.text),
            "version": "1.0.0",
            "param.warn_below": "9",
            "param.fail_below": "0.2",
            "param.max_bscans": "8",
            "scan": ["phantoms/clean.vol", "phantoms/low_signal.vol"],
        },
    )
    assert run.status_code == 200, run.text[:800]
    outcomes = re.findall(r'class="measure outcome" data-scan="([^"]+)"', run.text)
    assert outcomes == ["phantoms/clean.vol", "phantoms/low_signal.vol"]
    # warn_below = 9 applied: no phantom's CNR reaches it, so both warn.
    report = run.text[run.text.index('id="report"') :]
    assert report.count('class="warn">warn<') == 2, report[:3000]
    assert "passed" in report
    assert re.search(r'data-value="cnr">[0-9.]+<', run.text)
    pictures = re.findall(r'<img class="picture"[^>]* src="([^"]+)"', run.text)
    dicoms = re.findall(r'<a class="dicom" href="([^"]+)"', run.text)
    assert len(pictures) == 2 and len(dicoms) == 2
    assert dev.get(url + pictures[0]).content.startswith(b"\x89PNG")
    got = dev.get(url + dicoms[0])
    assert got.headers["Content-Type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(got.content)).Modality
    assert dev.get(f"{url}/develop/runs/../../secrets.json").status_code == 404

    # A developer cannot approve; an admin can, and the version is published.
    refused = dev.post(
        f"{url}/develop/{NAME}/approve", data={"csrf_token": _csrf(form.text), "version": "1.0.0"}
    )
    assert refused.status_code == 403
    root = _login(url, "root")
    page = root.get(f"{url}/develop/{NAME}?version=1.0.0")
    done = root.post(
        f"{url}/develop/{NAME}/approve", data={"csrf_token": _csrf(page.text), "version": "1.0.0"}
    )
    assert done.status_code == 200, done.text[:800]
    assert 'id="approved"' in done.text and "by\n  root" in done.text
    ledger, _, _ = stack.require()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = ledger.catalog.measure(NAME, "1.0.0")
        if m is not None:
            break
        time.sleep(0.2)
    assert m is not None and m.state is MeasureState.PUBLISHED and m.code_digest
    (review,) = [r for r in Reviews(ledger.db).list(NAME) if r.version == "1.0.0"]
    assert review.approved_by == "root"

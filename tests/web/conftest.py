"""Web view fixtures: the demo's data (the real pipeline on phantom scans, once per session), a
server over it, users of each role, and headless Chromium driven by Selenium."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web_support import PASSWORD, SCREENSHOTS


@dataclass
class DemoData:
    home: Path
    ledger_url: str


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    """`qmroct demo` on four phantom scans (clean volume, line and ring; low-signal volume)."""
    from qmroct.embedded.demo import run_demo

    home = tmp_path_factory.mktemp("web-demo")
    made = os.environ.get("QMROCT_TEST_WEB_DEMO", "")
    if made:
        # A demo home made earlier by this same fixture (while developing), copied so the
        # tests never change it.
        shutil.copytree(made, home, dirs_exist_ok=True)
        return DemoData(home=home, ledger_url=f"sqlite:///{home / 'ledger.sqlite3'}")
    report = run_demo(4, home=home, cap=2, timeout_s=600)
    assert report.failed == 0, report.failures
    return DemoData(home=home, ledger_url=f"sqlite:///{home / 'ledger.sqlite3'}")


@pytest.fixture(scope="session")
def web_server(demo_data: DemoData) -> Iterator[object]:
    """The web view over the demo's ledger and store, with one user per role."""
    from qmroct.config import Settings
    from qmroct.web.server import start
    from qmroct.web.state import WebSettings, WebState

    settings = Settings(
        home=demo_data.home,
        ledger_url=demo_data.ledger_url,
        xnat_url="https://xnat.example.org",
    )
    web = WebSettings(refresh_s=0, test_projects="TEST", secret="test-secret-" + "x" * 20)
    state = WebState.from_settings(settings, web)
    state.users.add("ada", PASSWORD, "researcher", ["DEMO"])
    state.users.add("radiologist", PASSWORD, "researcher", ["DEMO"])
    state.users.add("other", PASSWORD, "researcher", ["ELSEWHERE"])
    state.users.add("dev", PASSWORD, "measure-developer")
    state.users.add("root", PASSWORD, "admin")
    server = start(state)
    # Every header read now, so the eye and the date are searchable from the first request.
    while state.index.read_headers(state.read_meta, limit=50):
        pass
    yield server
    server.stop()


def ensure_chromium() -> tuple[str, str]:
    """Debian's chromium and chromium-driver, installed with apt-get when missing."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
        env=env,
        capture_output=True,
        text=True,
    )
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail(f"cannot install chromium and chromium-driver: {proc.stderr[-500:]}")
    return browser, driver


@pytest.fixture(scope="module")
def browser(web_server: object) -> Iterator[object]:
    """One headless Chromium per test file, with a fresh profile and a download folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = ensure_chromium()
    profile = tempfile.mkdtemp(prefix="qmroct-chromium-")
    downloads = Path(tempfile.mkdtemp(prefix="qmroct-downloads-"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    drv.set_page_load_timeout(60)
    drv.downloads = downloads  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)

"""Headless Chromium driven by Selenium: Debian's ``chromium`` and ``chromium-driver``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from qmroct.errors import ConfigError

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # Without these, Chromium keeps trying to reach Google's services from a closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def find_chromium() -> tuple[str, str]:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        raise ConfigError(
            "the replay benchmark needs headless Chromium and its driver: "
            "apt-get install chromium chromium-driver"
        )
    return browser, driver


class Browser:
    """One headless Chromium with a fresh profile and its own download folder."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        binary, driver_path = find_chromium()
        self.profile = Path(tempfile.mkdtemp(prefix="qmroct-replay-chromium-"))
        self.downloads = Path(tempfile.mkdtemp(prefix="qmroct-replay-downloads-"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = binary
        for arg in (*FLAGS, f"--user-data-dir={self.profile}"):
            opts.add_argument(arg)
        opts.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
            },
        )
        self.driver: Any = webdriver.Chrome(service=Service(driver_path), options=opts)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(self.downloads)},
        )
        self.driver.set_page_load_timeout(120)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
            shutil.rmtree(self.downloads, ignore_errors=True)

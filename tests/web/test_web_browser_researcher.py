"""A researcher's session in headless Chromium: log in, filter and search, open a report,
download a selection, log out. Screenshots go to build/screenshots/."""

from __future__ import annotations

import time
import zipfile

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from web_support import PASSWORD, shot


def test_researcher_session(browser, web_server, demo_data) -> None:
    drv = browser
    wait = WebDriverWait(drv, 30)
    drv.get(f"{web_server.url}/")
    # Not logged in: the login page, then the scan list.
    assert "/login" in drv.current_url
    drv.find_element(By.ID, "username").send_keys("ada")
    drv.find_element(By.ID, "password").send_keys(PASSWORD)
    shot(drv, "researcher-01-login")
    drv.find_element(By.ID, "login-button").click()
    wait.until(EC.presence_of_element_located((By.ID, "scans")))
    assert drv.find_element(By.ID, "who").text == "ada · researcher"
    assert drv.find_element(By.ID, "result-count").text == "4 scans"
    shot(drv, "researcher-02-all-scans")

    # Filter: scans whose OSCAR-IB S letter failed (the low-signal phantom).
    Select(drv.find_element(By.ID, "f-v-S")).select_by_visible_text("fail")
    drv.find_element(By.ID, "search-button").click()
    wait.until(EC.url_contains("v_S=fail"))
    rows = drv.find_elements(By.CSS_SELECTOR, "#scans tbody tr")
    assert 1 <= len(rows) < 4
    for row in rows:
        s_cell = row.find_elements(By.CSS_SELECTOR, "td.v")[1]
        assert "fail" in s_cell.get_attribute("class")
    shot(drv, "researcher-03-filtered")

    # And by a value range: peak SNR below 20 dB, typed into the form.
    Select(drv.find_element(By.ID, "f-vm")).select_by_visible_text("signal.peak_snr_db")
    drv.find_element(By.ID, "f-vhi").send_keys("20")
    drv.find_element(By.ID, "search-button").click()
    wait.until(EC.url_contains("vhi=20"))
    filtered = drv.find_elements(By.CSS_SELECTOR, "#scans tbody tr")
    assert len(filtered) >= 1
    share = drv.find_element(By.ID, "share-link").get_attribute("href")
    assert "value=signal.peak_snr_db" in share

    # Open the first scan's report.
    filtered[0].find_element(By.CSS_SELECTOR, "a.report-link").click()
    wait.until(EC.presence_of_element_located((By.ID, "oscar-table")))
    assert drv.find_element(By.ID, "overall").text.startswith("Overall: FAIL")
    letters = drv.find_elements(By.CSS_SELECTOR, "#oscar-table tr")[1:]
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in letters] == list("OSCARIB")
    assert len(drv.find_elements(By.CSS_SELECTOR, "section.measure")) == 9
    pictures = drv.find_elements(By.CSS_SELECTOR, "img.picture")
    assert len(pictures) == 9
    drv.execute_script("window.scrollTo(0, 0)")
    shot(drv, "researcher-04-report")
    drv.execute_script("arguments[0].scrollIntoView()", drv.find_element(By.ID, "m-signal"))
    wait.until(
        lambda d: (
            d.execute_script("return document.querySelector('#m-signal img.picture').naturalWidth")
            > 0
        )
    )
    shot(drv, "researcher-05-report-signal")
    assert "xnat.example.org" in drv.find_element(By.ID, "xnat-link").get_attribute("href")

    # Back to the search; the group view of the value, with thresholds and clickable points.
    drv.find_element(By.ID, "back-to-search").click()
    wait.until(EC.presence_of_element_located((By.ID, "group-link"))).click()
    wait.until(lambda d: d.find_element(By.ID, "plot").get_attribute("data-ready") == "1")
    assert drv.find_elements(By.CSS_SELECTOR, "#plot .main-svg")
    shown = drv.find_element(By.ID, "plot-count").text
    assert shown == f"{len(filtered)} scan{'' if len(filtered) == 1 else 's'}"  # one point each
    assert drv.find_elements(By.CSS_SELECTOR, "#plot .shapelayer path")  # threshold lines
    shot(drv, "researcher-06-group")
    drv.back()

    # Download the whole filtered selection.
    wait.until(EC.presence_of_element_located((By.ID, "download-selection"))).click()
    wait.until(lambda d: d.find_element(By.ID, "download").get_attribute("data-finished") == "1")
    assert drv.find_element(By.ID, "download-status").text.startswith("done:")
    shot(drv, "researcher-07-download")
    deadline = time.monotonic() + 30
    zips = []
    while time.monotonic() < deadline:
        zips = list(drv.downloads.glob("*.zip"))
        if zips and not list(drv.downloads.glob("*.crdownload")):
            break
        time.sleep(0.2)
    assert zips, "the zip did not arrive"
    with zipfile.ZipFile(zips[0]) as zf:
        names = zf.namelist()
    assert "manifest.csv" in names
    assert len([n for n in names if n.endswith(".vol")]) == len(filtered)

    # Log out: the session is gone.
    drv.find_element(By.ID, "logout").click()
    wait.until(EC.url_contains("/login"))
    drv.get(f"{web_server.url}/")
    assert "/login" in drv.current_url
    shot(drv, "researcher-08-logged-out")

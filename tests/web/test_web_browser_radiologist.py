"""A radiologist's session in headless Chromium: log in, filter, open the viewer, change scan,
play and stop, toggle an overlay, scroll with the keyboard and the wheel."""

from __future__ import annotations

import time

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from web_support import PASSWORD, shot


def _shown(drv) -> int:
    return int(drv.find_element(By.ID, "bscan").get_attribute("data-shown"))


def _overlaid(drv) -> bool:
    c = drv.find_element(By.ID, "bscan")
    return c.get_attribute("data-overlaid") == c.get_attribute("data-shown")


def _canvas_mean(drv) -> float:
    return drv.execute_script(
        "const c = document.getElementById('bscan');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4);"
    )


def _red_excess(drv) -> float:
    # Overlays are coloured; the B-scan is grey: red minus blue measures what is drawn on top.
    return drv.execute_script(
        "const c = document.getElementById('bscan');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = 0; for (let i = 0; i < d.length; i += 4) s += Math.abs(d[i] - d[i+2]) + Math.abs(d[i+1] - d[i+2]);"
        "return s / (d.length / 4);"
    )


def test_radiologist_session(browser, web_server, demo_data) -> None:
    drv = browser
    wait = WebDriverWait(drv, 30)
    drv.get(f"{web_server.url}/login")
    drv.find_element(By.ID, "username").send_keys("radiologist")
    drv.find_element(By.ID, "password").send_keys(PASSWORD)
    drv.find_element(By.ID, "login-button").click()
    wait.until(EC.presence_of_element_located((By.ID, "scans")))

    # Filter: volume scans.
    Select(drv.find_element(By.ID, "f-pattern")).select_by_visible_text("volume")
    drv.find_element(By.ID, "search-button").click()
    wait.until(EC.url_contains("pattern=volume"))
    rows = drv.find_elements(By.CSS_SELECTOR, "#scans tbody tr")
    assert len(rows) == 2
    first_hash = rows[0].get_attribute("data-hash")
    rows[0].find_element(By.CSS_SELECTOR, "a.viewer-link").click()

    # The viewer: B-scan, the SLO with the position line, the overlays.
    wait.until(lambda d: d.find_element(By.ID, "viewer").get_attribute("data-ready") == "1")
    wait.until(lambda d: d.find_element(By.ID, "bscan").get_attribute("data-shown") is not None)
    start = _shown(drv)
    label = drv.find_element(By.ID, "slice-label").text
    assert label.startswith(f"B-scan {start + 1} / ")
    n = int(label.split("/")[1])
    assert n > 1
    assert "SLO" in drv.find_element(By.ID, "fundus-kind").text
    time.sleep(0.5)
    shot(drv, "radiologist-01-viewer")

    # Keyboard and wheel change the B-scan.
    canvas = drv.find_element(By.ID, "bscan")
    canvas.click()
    canvas.send_keys(Keys.ARROW_DOWN)
    wait.until(lambda d: _shown(d) == start + 1)
    canvas.send_keys(Keys.ARROW_UP, Keys.ARROW_UP)
    wait.until(lambda d: _shown(d) == start - 1)
    ActionChains(drv).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, 120).perform()
    wait.until(lambda d: _shown(d) == start)

    # Toggle the segmentation overlay off and on: the coloured pixels go and come back.
    wait.until(_overlaid)
    with_overlay = _red_excess(drv)
    drv.find_element(By.ID, "ov-seg").click()
    drv.find_element(By.ID, "ov-defects").click()
    wait.until(lambda d: "seg" not in d.find_element(By.ID, "bscan").get_attribute("data-overlays"))
    time.sleep(0.3)
    without = _red_excess(drv)
    assert with_overlay > without + 0.5, (with_overlay, without)
    shot(drv, "radiologist-02-overlays-off")
    drv.find_element(By.ID, "ov-seg").click()
    wait.until(_overlaid)
    assert _red_excess(drv) > without + 0.5
    shot(drv, "radiologist-03-overlay-on")

    # Brightness changes what is drawn.
    before = _canvas_mean(drv)
    drv.execute_script(
        "const b = document.getElementById('brightness'); b.value = 200;"
        "b.dispatchEvent(new Event('input'));"
    )
    time.sleep(0.3)
    assert _canvas_mean(drv) > before + 5

    # Play, then stop: the B-scan advances while playing and holds still after.
    drv.find_element(By.ID, "play").click()
    assert drv.find_element(By.ID, "play").text == "Stop"
    seen = {_shown(drv)}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(seen) < 4:
        seen.add(_shown(drv))
        time.sleep(0.05)
    assert len(seen) >= 4, seen
    drv.find_element(By.ID, "play").click()
    assert drv.find_element(By.ID, "play").text == "Play"
    time.sleep(0.3)
    held = _shown(drv)
    time.sleep(0.6)
    assert _shown(drv) == held
    shot(drv, "radiologist-04-stopped")

    # Change scan: the next scan of the filtered selection.
    drv.find_element(By.ID, "next-scan").click()
    wait.until(lambda d: d.find_element(By.ID, "viewer").get_attribute("data-hash") != first_hash)
    wait.until(lambda d: d.find_element(By.ID, "viewer").get_attribute("data-ready") == "1")
    wait.until(lambda d: d.find_element(By.ID, "bscan").get_attribute("data-shown") is not None)
    assert drv.find_element(By.ID, "prev-scan")
    time.sleep(0.5)
    shot(drv, "radiologist-05-next-scan")

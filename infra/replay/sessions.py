"""The scripted user sessions, action by action, as a published XNAT biobank benchmark
recorded them: a researcher (LOGIN, FILTER & SEARCH, DOWNLOAD & LOGOUT) and a radiologist
(LOGIN, FILTER & SEARCH, OPEN VIEWER, CHANGE SCAN, PLAY/STOP).

Each action ends when what the user waits for is on the screen (the result table, the viewer's
first B-scan, the finished download), so its duration is what the user waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

RESEARCHER = ("LOGIN", "FILTER & SEARCH", "DOWNLOAD & LOGOUT")
RADIOLOGIST = ("LOGIN", "FILTER & SEARCH", "OPEN VIEWER", "CHANGE SCAN", "PLAY/STOP")
ROLES = {"researcher": RESEARCHER, "radiologist": RADIOLOGIST}
TIMEOUT_S = 120.0


class ActionTiming(BaseModel):
    role: str
    action: str
    user: int
    start: float  # UNIX seconds
    end: float
    ok: bool
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _wait(drv: Any, until: Callable[[Any], Any]) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, TIMEOUT_S, poll_frequency=0.02).until(until)


def _login(drv: Any, base: str, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    drv.get(f"{base}/login")
    drv.find_element(By.ID, "username").send_keys(username)
    drv.find_element(By.ID, "password").send_keys(password)
    drv.find_element(By.ID, "login-button").click()
    _wait(drv, lambda d: d.find_elements(By.ID, "scans"))


def _search(drv: Any, select_id: str, text: str, url_part: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(drv.find_element(By.ID, select_id)).select_by_visible_text(text)
    drv.find_element(By.ID, "search-button").click()
    _wait(drv, lambda d: url_part in d.current_url and d.find_elements(By.ID, "scans"))


def _download_and_logout(drv: Any) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.ID, "download-selection").click()
    _wait(drv, lambda d: d.find_element(By.ID, "download").get_attribute("data-finished") == "1")
    drv.find_element(By.ID, "logout").click()
    _wait(drv, lambda d: "/login" in d.current_url)


def _viewer_ready(drv: Any, not_hash: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    def ready(d: Any) -> bool:
        v = d.find_element(By.ID, "viewer")
        if not_hash is not None and v.get_attribute("data-hash") == not_hash:
            return False
        return (
            v.get_attribute("data-ready") == "1"
            and d.find_element(By.ID, "bscan").get_attribute("data-shown") is not None
        )

    _wait(drv, ready)


def _open_viewer(drv: Any) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.CSS_SELECTOR, "#scans tbody tr a.viewer-link").click()
    _viewer_ready(drv)


def _change_scan(drv: Any) -> None:
    from selenium.webdriver.common.by import By

    before = drv.find_element(By.ID, "viewer").get_attribute("data-hash")
    drv.find_element(By.ID, "next-scan").click()
    _viewer_ready(drv, not_hash=before)


def _play_stop(drv: Any, frames: int = 5) -> None:
    """Play until ``frames`` B-scans have been shown, then stop."""
    from selenium.webdriver.common.by import By

    drv.find_element(By.ID, "play").click()
    seen: set[str] = set()

    def advanced(d: Any) -> bool:
        seen.add(d.find_element(By.ID, "bscan").get_attribute("data-shown"))
        return len(seen) >= frames

    _wait(drv, advanced)
    drv.find_element(By.ID, "play").click()
    _wait(drv, lambda d: d.find_element(By.ID, "play").text == "Play")


def run_session(
    role: str,
    drv: Any,
    base: str,
    username: str,
    password: str,
    user: int,
    on_action: Callable[[], None] | None = None,
) -> list[ActionTiming]:
    """One session of ``role``; an action that fails ends the session, recorded as failed.
    ``on_action`` is called before each action and once after the last."""
    mark = on_action or (lambda: None)
    steps: dict[str, Callable[[], None]] = {
        "LOGIN": lambda: _login(drv, base, username, password),
        "DOWNLOAD & LOGOUT": lambda: _download_and_logout(drv),
        "OPEN VIEWER": lambda: _open_viewer(drv),
        "CHANGE SCAN": lambda: _change_scan(drv),
        "PLAY/STOP": lambda: _play_stop(drv),
    }
    if role == "researcher":
        steps["FILTER & SEARCH"] = lambda: _search(drv, "f-v-S", "fail", "v_S=fail")
    else:
        steps["FILTER & SEARCH"] = lambda: _search(drv, "f-pattern", "volume", "pattern=volume")
    out: list[ActionTiming] = []
    for action in ROLES[role]:
        mark()
        start = time.time()
        try:
            steps[action]()
        except Exception as exc:  # noqa: BLE001 - a failed action is a result, not a crash
            out.append(
                ActionTiming(
                    role=role,
                    action=action,
                    user=user,
                    start=start,
                    end=time.time(),
                    ok=False,
                    error=f"{type(exc).__name__}: {str(exc)[:200]}",
                )
            )
            return out
        out.append(
            ActionTiming(role=role, action=action, user=user, start=start, end=time.time(), ok=True)
        )
    mark()
    if role == "radiologist":
        # Log out between sessions, as the researcher's last action does.
        from selenium.webdriver.common.by import By

        drv.find_element(By.ID, "logout").click()
        _wait(drv, lambda d: "/login" in d.current_url)
    return out

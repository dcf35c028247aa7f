"""Helpers the web view's tests share (a uniquely named module: every test folder has a
conftest, so ``from conftest import`` would find another folder's)."""

from __future__ import annotations

from pathlib import Path

PASSWORD = "correct horse battery"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def shot(drv: object, name: str) -> Path:
    """Save a screenshot of the browser under build/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    drv.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path

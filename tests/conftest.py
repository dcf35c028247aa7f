"""Shared fixtures. Real OCT samples come from ../shared/data/oct-samples or $QMROCT_SAMPLES."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def samples_root() -> Path | None:
    env = os.environ.get("QMROCT_SAMPLES")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data" / "oct-samples")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    root = samples_root()
    if root is None:
        pytest.skip(
            "real OCT samples not found: set QMROCT_SAMPLES or place them at ../shared/data/oct-samples"
        )
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return _REPO

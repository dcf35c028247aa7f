"""Fixtures of the runtime tests: the throwaway project (rtproject.py) and `qmroct up`."""

from __future__ import annotations

from pathlib import Path

import pytest
from qmroct.runtime import EmbeddedWhisk
from rtproject import write_project
from upstack import UpStack, up_env


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("rt-project"))


@pytest.fixture(scope="module")
def whisk(project: Path, tmp_path_factory: pytest.TempPathFactory) -> EmbeddedWhisk:
    stack = EmbeddedWhisk(
        project,
        tmp_path_factory.mktemp("rt-home"),
        {"RT_BOUND": "bound-from-env"},
        alarm_interval_s=0.5,
    )
    with stack:
        yield stack


@pytest.fixture(scope="module")
def up_stack(tmp_path_factory: pytest.TempPathFactory) -> UpStack:
    home = tmp_path_factory.mktemp("up") / "home"
    stack = UpStack(home, up_env(home)).start()
    try:
        yield stack
    finally:
        stack.stop()

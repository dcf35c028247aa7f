"""Where the project's wiring lives: manifest.yaml and the action folders beside it."""

from __future__ import annotations

import os
from pathlib import Path

from qmroct.errors import ConfigError


def project_root() -> Path:
    """The folder holding manifest.yaml.

    ``QMROCT_PROJECT_ROOT`` wins; otherwise the checkout this package was installed from
    (``pip install -e .``), then the current folder.
    """
    env = os.environ.get("QMROCT_PROJECT_ROOT")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2], Path.cwd()]
    for c in candidates:
        if (c / "manifest.yaml").is_file() and (c / "functions").is_dir():
            return c
    raise ConfigError(
        "cannot find manifest.yaml and functions/: run from a qmroct checkout installed with "
        "`pip install -e .`, or set QMROCT_PROJECT_ROOT"
    )


def manifest_path() -> Path:
    return project_root() / "manifest.yaml"

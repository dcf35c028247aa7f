"""Action zips: contents from the package map, determinism, the code limit, virtualenv."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest
from qmroct.errors import ConfigError
from qmroct.runtime.actionzip import build_actions, package_map
from qmroct.runtime.container import Container
from qmroct.runtime.manifest import load_manifest


def test_package_map_follows_pyproject(repo_root: Path) -> None:
    sources = {p.name: p.source.resolve() for p in package_map(repo_root / "pyproject.toml")}
    assert sources["qmroct"] == (repo_root / "layers" / "qmroct").resolve()
    assert sources["qmroct.storage"] == (repo_root / "storage").resolve()
    assert sources["qmroct.oct.readers"] == (repo_root / "layers/qmroct/oct/readers").resolve()


def _project(tmp_path: Path) -> Path:
    for folder in ("functions/orchestration/tick", "functions/measures/snr"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "__main__.py").write_text("def main(a):\n    return a\n")
    (tmp_path / "functions/measures/snr/helper.py").write_text("X = 1\n")
    path = tmp_path / "manifest.yaml"
    path.write_text(
        "project:\n  packages:\n    p:\n      actions:\n"
        "        tick: {function: functions/orchestration/tick}\n"
        "        measure-snr: {function: functions/measures/snr}\n"
    )
    return path


def test_zips_hold_action_and_library(tmp_path: Path, repo_root: Path) -> None:
    manifest = load_manifest(_project(tmp_path))
    built = {
        b.name: b for b in build_actions(manifest, tmp_path / "out", repo_root / "pyproject.toml")
    }
    with zipfile.ZipFile(built["tick"].path) as zf:
        names = set(zf.namelist())
    assert "__main__.py" in names
    assert "qmroct/__init__.py" in names
    assert "qmroct/storage/__init__.py" in names
    assert "qmroct/triggers/__init__.py" in names
    assert not any(n.startswith(("qmroct/runtime/", "qmroct/cli/")) for n in names)
    with zipfile.ZipFile(built["measure-snr"].path) as zf:
        measure_names = set(zf.namelist())
    assert "helper.py" in measure_names
    assert not any(n.startswith("qmroct/storage/") for n in measure_names)
    assert all(
        i.date_time == (1980, 1, 1, 0, 0, 0) for i in zipfile.ZipFile(built["tick"].path).infolist()
    )


def test_zips_are_deterministic(tmp_path: Path, repo_root: Path) -> None:
    manifest = load_manifest(_project(tmp_path))
    pyproject = repo_root / "pyproject.toml"
    first = build_actions(manifest, tmp_path / "a", pyproject)
    (tmp_path / "functions/measures/snr/__main__.py").touch()  # a new mtime changes nothing
    second = build_actions(manifest, tmp_path / "b", pyproject)
    assert [b.sha256 for b in first] == [b.sha256 for b in second]
    assert first[0].sha256 == hashlib.sha256(first[0].path.read_bytes()).hexdigest()


def test_code_limit_refuses_with_reason(tmp_path: Path, repo_root: Path) -> None:
    manifest = load_manifest(_project(tmp_path))
    with pytest.raises(ConfigError, match=r"over the OpenWhisk code limit of 1000 bytes"):
        build_actions(manifest, tmp_path / "out", repo_root / "pyproject.toml", code_limit=1000)


def test_with_virtualenv_embeds_activate_this(tmp_path: Path, repo_root: Path) -> None:
    manifest = load_manifest(_project(tmp_path))
    empty = tmp_path / "requirements.txt"
    empty.write_text("")
    built = build_actions(
        manifest,
        tmp_path / "out",
        repo_root / "pyproject.toml",
        with_virtualenv=True,
        requirements=empty,
    )
    with zipfile.ZipFile(built[0].path) as zf:
        assert "virtualenv/bin/activate_this.py" in zf.namelist()
    # The proxy runs activate_this.py at /init, as the stock runtime does.
    container = Container("venv", 128, tmp_path / "c", {})
    container.start()
    try:
        code = base64.b64encode(built[0].path.read_bytes()).decode()
        assert container.init("tick", "main", code, {}, 10000).ok
        outcome = container.run({"value": {"k": 1}}, 10000)
        assert outcome.response.result == {"k": 1}
    finally:
        container.destroy()

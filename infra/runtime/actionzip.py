"""Action zips: exactly what ``wsk action update NAME action.zip --kind python:3.11`` receives.

Each zip holds the action's function folder (``__main__.py`` at the top) and the ``qmroct``
package tree as installed from source. The package map is read from pyproject.toml, so the
layout lives in one place. Zips are deterministic (sorted entries, fixed timestamps and modes),
so the same sources always give the same digest.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel
from qmroct.errors import ConfigError
from qmroct.runtime.manifest import ActionSpec, Manifest

# The deployed code limit of OpenWhisk (the controller refuses larger exec.code).
CODE_LIMIT_BYTES = 48 * 1024 * 1024
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
# Deployment-side packages: the embedded runtime, the command line and the stack composition
# never run inside an action.
_NEVER_SHIPPED = frozenset({"qmroct.runtime", "qmroct.cli", "qmroct.embedded"})
# Measure code sees one scan and nothing else: no ledger, no catalog.
_NOT_IN_MEASURES = frozenset({"qmroct.storage"})
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


class BuiltAction(BaseModel):
    name: str
    path: Path
    size: int
    sha256: str


class PackageSource(BaseModel):
    """One importable package: its dotted name, source folder and extra data globs."""

    name: str
    source: Path
    data: list[str] = []


def package_map(pyproject: Path) -> list[PackageSource]:
    """The packages pyproject.toml installs, each with the folder it comes from."""
    try:
        conf = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{pyproject}: no [tool.setuptools] package map: {exc}") from exc
    dirs: dict[str, str] = conf.get("package-dir", {})
    data: dict[str, list[str]] = conf.get("package-data", {})
    out = []
    for name in conf.get("packages", []):
        # The longest mapped prefix decides the folder; the rest of the name is a sub-path.
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in dirs:
                src = Path(dirs[prefix]).joinpath(*parts[i:])
                break
        else:
            src = Path(*parts)
        out.append(PackageSource(name=name, source=pyproject.parent / src, data=data.get(name, [])))
    return out


def is_measure(spec: ActionSpec) -> bool:
    return Path(spec.function).parts[:2] == ("functions", "measures")


def shipped_packages(pyproject: Path, *, measure: bool) -> list[PackageSource]:
    skip = _NEVER_SHIPPED | (_NOT_IN_MEASURES if measure else frozenset())
    return [p for p in package_map(pyproject) if p.name not in skip]


def _package_files(pkg: PackageSource) -> Iterator[tuple[str, Path]]:
    if not pkg.source.is_dir():
        return
    arc_root = Path(*pkg.name.split("."))
    for f in sorted(pkg.source.iterdir()):
        if f.is_file() and f.suffix == ".py":
            yield (arc_root / f.name).as_posix(), f
    for pattern in pkg.data:
        for f in sorted(pkg.source.glob(pattern)):
            if f.is_file():
                yield (arc_root / f.relative_to(pkg.source)).as_posix(), f


def _tree_files(folder: Path, arc_prefix: str = "") -> Iterator[tuple[str, Path]]:
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_file() and not (set(rel.parts) & _SKIP_DIRS) and f.suffix != ".pyc":
            yield (Path(arc_prefix) / rel).as_posix() if arc_prefix else rel.as_posix(), f


def deterministic_zip(entries: Iterable[tuple[str, Path]]) -> bytes:
    """Zip (arcname, path) pairs with fixed timestamps and modes, sorted by arcname."""
    buf = io.BytesIO()
    seen: dict[str, Path] = {}
    for arc, path in entries:
        seen.setdefault(arc, path)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arc in sorted(seen):
            path = seen[arc]
            info = zipfile.ZipInfo(arc, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & 0o111
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def action_entries(
    manifest: Manifest, spec: ActionSpec, pyproject: Path, virtualenv_dir: Path | None = None
) -> list[tuple[str, Path]]:
    """Every (arcname, file) that goes into one action's zip."""
    fdir = manifest.function_dir(spec)
    if not (fdir / "__main__.py").is_file():
        raise ConfigError(f"{fdir}: action folder has no __main__.py")
    entries = list(_tree_files(fdir))
    for pkg in shipped_packages(pyproject, measure=is_measure(spec)):
        entries.extend(_package_files(pkg))
    if virtualenv_dir is not None:
        entries.extend(_tree_files(virtualenv_dir, "virtualenv"))
    return entries


def make_virtualenv(target: Path, requirements: Path | None) -> Path:
    """A ``virtualenv`` (the package: it writes bin/activate_this.py) with the runtime deps."""
    import virtualenv  # noqa: PLC0415 - only the --with-virtualenv path needs it

    virtualenv.cli_run([str(target), "--no-download", "--quiet", "--no-setuptools", "--no-wheel"])
    if not (target / "bin" / "activate_this.py").is_file():
        raise ConfigError(f"{target}: virtualenv made no bin/activate_this.py")
    if requirements is not None and requirements.read_text(encoding="utf-8").strip():
        cmd = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        done = subprocess.run(
            [*cmd, "--no-compile", "-r", str(requirements)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ConfigError(f"{requirements}: pip install failed: {done.stderr.strip()[-400:]}")
    return target


def build_actions(
    manifest: Manifest,
    out: Path,
    pyproject: Path,
    *,
    with_virtualenv: bool = False,
    requirements: Path | None = None,
    code_limit: int = CODE_LIMIT_BYTES,
    package: str | None = None,
) -> list[BuiltAction]:
    """Write ``out/<action>.zip`` for every action of the package; unchanged zips are kept.

    With ``with_virtualenv`` each zip embeds ``virtualenv/`` holding ``requirements``. A zip
    over ``code_limit`` is refused with ConfigError naming the action and both sizes.
    """
    _, pkg = manifest.package(package)
    out.mkdir(parents=True, exist_ok=True)
    built = []
    with tempfile.TemporaryDirectory(prefix="qmroct-venv-") as tmp:
        venv = make_virtualenv(Path(tmp) / "venv", requirements) if with_virtualenv else None
        for name, spec in pkg.actions.items():
            data = deterministic_zip(action_entries(manifest, spec, pyproject, venv))
            if len(data) > code_limit:
                raise ConfigError(
                    f"action {name}: zip is {len(data)} bytes, over the OpenWhisk code limit of "
                    f"{code_limit} bytes; put heavy libraries in the runtime image instead"
                )
            target = out / f"{name}.zip"
            if not target.is_file() or target.read_bytes() != data:
                target.write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            built.append(BuiltAction(name=name, path=target, size=len(data), sha256=digest))
    return built


def find_pyproject(start: Path) -> Path:
    """The pyproject.toml of the source tree holding ``start`` (a manifest folder, say)."""
    for d in [start.resolve(), *start.resolve().parents]:
        if (d / "pyproject.toml").is_file():
            return d / "pyproject.toml"
    here = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if here.is_file():
        return here
    raise ConfigError(f"{start}: no pyproject.toml above it; qmroct must be installed from source")

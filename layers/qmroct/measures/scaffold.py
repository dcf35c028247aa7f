"""``qmroct measure new``: a working measure in a developer's own folder.

A developer's measure lives in its own folder, outside the qmroct checkout, because it reaches
production only as a deployed action zip, through ``qmroct measure approve``; the developer
never edits the suite, the production manifest or the production docs. The folder is a small
wskdeploy project of the developers' package (``qmroct-dev``)::

    DIR/manifest.yaml                             action measure-NAME, annotated qmroct-version
    DIR/functions/measures/NAME/__main__.py       the thin action: run_action(args, "NAME")
    DIR/functions/measures/NAME/measure_NAME.py   the measure class, its pydantic parameters
    DIR/tests/test_measure_NAME.py                a phantom defect test (pytest)
    DIR/docs/NAME.md                              the docs entry, rendered from the class

The action zip holds the action folder plus the ``qmroct`` library, exactly as for the suite's
own measures, so ``measure_NAME`` is imported (and registered) by ``__main__.py`` inside the
action and its source digest is the ``code_digest`` every result records.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template
from types import ModuleType
from typing import Any

import yaml

from qmroct.errors import ConfigError

DEV_PACKAGE = "qmroct-dev"
#: The annotation naming the semantic version a developer deploys (``wsk ... -a qmroct-version``).
VERSION_ANNOTATION = "qmroct-version"
#: The annotation naming the measure an action computes.
MEASURE_ANNOTATION = "qmroct-measure"
FIRST_VERSION = "0.1.0"
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
LETTERS = ("O", "S", "C", "A", "R", "I", "B")

_MAIN = Template('''\
"""OpenWhisk action measure-$name: one scan in by presigned URL, one result out."""

import measure_$name  # noqa: F401 - importing registers the measure
from qmroct.measures.action import run_action, warm

# At /init: imports and one-off costs here, not in the first activation.
warm()


def main(args: dict) -> dict:
    return run_action(args, "$name")
''')

_MEASURE = Template('''\
"""$title (OSCAR-IB $letter): retina-to-vitreous contrast. A starting point: replace the
formula in ``evaluate`` with your measure, and the docstring, values_doc and tests with it."""

from __future__ import annotations

from pydantic import BaseModel, Field
from qmroct import pictures
from qmroct.measures.base import register
from qmroct.measures.common import Evaluation, SuiteMeasure, bscan_with_layers, sample_indices
from qmroct.measures.context import MIN_RETINA_CNR, ScanContext
from qmroct.measures.verdicts import grade
from qmroct.metrics.contrast import cnr


class ${cls}Params(BaseModel):
    warn_below: float = Field(
        2 * MIN_RETINA_CNR, ge=0, le=10, description="CNR below this warns"
    )
    fail_below: float = Field(
        MIN_RETINA_CNR, ge=0, le=10, description="CNR below this fails: layers lost in noise"
    )
    max_bscans: int = Field(16, ge=1, le=1024, description="B-scans sampled, evenly spread")


@register
class $cls(SuiteMeasure):
    """$title: contrast of the retina against the vitreous noise, as a CNR.

    Formula: CNR = |mu_ret - mu_bg| / sqrt(var_ret + var_bg) on the display image, the retina
    between ILM and BM, the background the vitreous above the ILM
    (``qmroct.metrics.contrast.cnr``, the pooled-variance definition).
    Citation: OSCAR-IB criterion $letter, Tewarie et al., PLoS One 2012;7(4):e34823.
    Direction: higher is better. Below ``fail_below`` (``MIN_RETINA_CNR``: pure speckle gives
    about 0.1) the layers found are no brighter than noise.
    """

    name = "$name"
    version = "$version"
    criteria = ("$letter",)
    Params = ${cls}Params
    #: value name -> (unit, direction, meaning); drives the report and the docs entry
    values_doc = {
        "cnr": ("", "higher is better", "retina/vitreous contrast-to-noise ratio"),
    }

    def evaluate(self, ctx: ScanContext, params: ${cls}Params) -> Evaluation:  # type: ignore[override]
        idx = sample_indices(ctx.display.shape[0], params.max_bscans)
        value = cnr(ctx.display[idx], ctx.retina[idx], ctx.vitreous[idx])
        verdict = grade(
            "$letter",
            "CNR",
            value,
            warn=params.warn_below,
            fail=params.fail_below,
            higher_is_better=True,
            source="MIN_RETINA_CNR",
        )
        k = ctx.centre_index
        picture = pictures.stack(
            [pictures.panel(bscan_with_layers(ctx, k), f"B-scan {k}: ILM green, BM yellow")],
            title=f"$name: CNR {value:.2f}",
        )
        return Evaluation({"cnr": value}, [verdict], picture)
''')

_TEST = Template('''\
"""Phantom defect test of $name: a clean phantom passes, and signal loss lowers the value.

Run with ``python -m pytest tests``; ``qmroct measure test $name`` runs the deployed action."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions" / "measures" / "$name"))

import measure_$name  # noqa: E402
from qmroct.oct.phantom import make_phantom  # noqa: E402
from qmroct.results import Verdict  # noqa: E402


def _compute(defects: dict[str, float], seed: int):
    scan, _, _ = make_phantom("volume", defects=defects, seed=seed, size="small")
    measure = measure_$name.$cls()
    return measure.compute(scan, measure.parse_params({}))


def test_clean_phantom_passes():
    out = _compute({}, seed=1)
    assert [v.verdict for v in out.verdicts] == [Verdict.PASS], out.verdicts
    assert out.picture_png and out.picture_png.startswith(b"\\x89PNG")


def test_signal_loss_lowers_the_value():
    for seed in (1, 2):
        clean = _compute({}, seed).values["cnr"]
        lossy = _compute({"low_signal": 0.8}, seed).values["cnr"]
        assert lossy < clean, (seed, clean, lossy)
''')

_MANIFEST_HEAD = """\
# wskdeploy manifest of a measure developer's folder (written by `qmroct measure new`): the
# developers' package. `qmroct measure test NAME` deploys and runs these actions on the test set;
# `wskdeploy -m manifest.yaml` or `wsk action update` deploys them to a real OpenWhisk.
"""


def class_name(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) + "Measure"


def check_name(name: str) -> str:
    """The measure name, or ConfigError saying why it cannot be one."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ConfigError(
            f"measure name {name!r}: use 2 to 40 lower-case letters, digits and '_', "
            "starting with a letter"
        )
    from qmroct.measures.base import registry

    if name in registry():
        raise ConfigError(f"measure name {name!r}: the suite already has a measure of that name")
    return name


def measure_module_path(folder: Path, name: str) -> Path:
    return Path(folder) / "functions" / "measures" / name / f"measure_{name}.py"


def dev_manifest_path(folder: Path) -> Path:
    return Path(folder) / "manifest.yaml"


def _action_spec(name: str, version: str) -> dict[str, Any]:
    return {
        "function": f"functions/measures/{name}",
        "runtime": "python:3.11",
        "main": "main",
        "limits": {"timeout": 120000, "memorySize": 512, "logSize": 5},
        "annotations": {VERSION_ANNOTATION: version, MEASURE_ANNOTATION: name},
    }


def _write_manifest(folder: Path, name: str, version: str) -> Path:
    path = dev_manifest_path(folder)
    doc: dict[str, Any] = {"project": {"name": DEV_PACKAGE, "packages": {}}}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if DEV_PACKAGE not in ((loaded.get("project") or {}).get("packages") or {}):
            raise ConfigError(
                f"{path}: not a measure developer's manifest (no package {DEV_PACKAGE!r}); "
                "choose another --dir"
            )
        doc = loaded
    pkg = doc["project"]["packages"].setdefault(DEV_PACKAGE, {})
    pkg.setdefault("version", FIRST_VERSION)
    pkg.setdefault("actions", {})[f"measure-{name}"] = _action_spec(name, version)
    path.write_text(_MANIFEST_HEAD + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def isolated_registry() -> Iterator[None]:
    """Import a developer's measure without leaving it in this process's measure registry."""
    from qmroct.measures import base

    base.registry()
    saved = dict(base._REGISTRY)
    try:
        yield
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(saved)


def load_measure_module(folder: Path, name: str) -> ModuleType:
    """Import ``measure_NAME.py`` from a developer folder (under a private module name)."""
    path = measure_module_path(folder, name)
    if not path.is_file():
        raise ConfigError(f"{path}: no measure module; run `qmroct measure new {name}` first")
    spec = importlib.util.spec_from_file_location(f"_qmroct_dev_measure_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with isolated_registry():
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the developer's code: name the file
            raise ConfigError(f"{path}: cannot import: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.modules.pop(spec.name, None)
    return module


def render_docs_entry(folder: Path, name: str) -> str:
    """The measure's docs entry, from its class, as docs/measures.md renders the suite's."""
    from qmroct.measures.docs import measure_section

    module = load_measure_module(folder, name)
    cls = next(
        (
            v
            for v in vars(module).values()
            if isinstance(v, type) and getattr(v, "name", "") == name
        ),
        None,
    )
    if cls is None:
        raise ConfigError(f"{measure_module_path(folder, name)}: no measure class named {name!r}")
    return "\n".join(measure_section(cls())) + "\n"


def write_docs_entry(folder: Path, name: str) -> Path:
    path = Path(folder) / "docs" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_docs_entry(folder, name), encoding="utf-8")
    return path


def folder_from_module(folder: Path, name: str, source: bytes, version: str) -> Path:
    """A developer folder around one uploaded ``measure_NAME.py`` (the web view's upload):
    the thin ``__main__.py`` and the manifest entry are written as ``new_measure`` writes them."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ConfigError(f"measure name {name!r}: lower-case letters, digits and '_'")
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"measure_{name}.py: not UTF-8 text: {exc}") from exc
    action_dir = Path(folder) / "functions" / "measures" / name
    action_dir.mkdir(parents=True, exist_ok=True)
    (action_dir / "__main__.py").write_text(_MAIN.substitute(name=name), encoding="utf-8")
    (action_dir / f"measure_{name}.py").write_bytes(source)
    _write_manifest(Path(folder), name, version)
    return Path(folder)


def new_measure(folder: Path, name: str, criterion: str = "S") -> list[Path]:
    """Write a working measure NAME into ``folder``; the paths written, manifest included.

    Refuses to overwrite an existing measure of that name (ConfigError names the file).
    """
    check_name(name)
    letter = criterion.upper()
    if letter not in LETTERS:
        raise ConfigError(f"criterion {criterion!r}: one of {', '.join(LETTERS)}")
    folder = Path(folder).resolve()
    action_dir = folder / "functions" / "measures" / name
    if action_dir.exists():
        raise ConfigError(f"{action_dir}: exists already; remove it or choose another name")
    values = {
        "name": name,
        "cls": class_name(name),
        "title": name.replace("_", " ").capitalize(),
        "letter": letter,
        "version": FIRST_VERSION,
    }
    files = {
        action_dir / "__main__.py": _MAIN.substitute(values),
        action_dir / f"measure_{name}.py": _MEASURE.substitute(values),
        folder / "tests" / f"test_measure_{name}.py": _TEST.substitute(values),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    written = [*files, _write_manifest(folder, name, FIRST_VERSION)]
    written.append(write_docs_entry(folder, name))
    return written

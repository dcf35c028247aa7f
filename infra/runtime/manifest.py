"""The wskdeploy manifest (manifest.yaml) as pydantic models.

The manifest is the single source of qmroct's wiring: packages, actions, sequences, triggers and
rules. ``wskdeploy -m manifest.yaml`` deploys it to OpenWhisk; the embedded runtime reads the same
file through :func:`load_manifest`. Input values of the form ``$VAR`` or ``${VAR}`` are taken from
the environment mapping given, as wskdeploy takes them from the shell (unset means empty).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from qmroct.errors import ConfigError

ALARM_FEED = "/whisk.system/alarms/alarm"
_VAR = re.compile(r"^\$(?:\{(\w+)\}|(\w+))$")


class Limits(BaseModel):
    """The three limits wskdeploy applies: timeout (ms), memorySize (MB), logSize (MB)."""

    model_config = ConfigDict(extra="forbid")

    timeout: int = Field(60000, ge=100, le=300000)
    memorySize: int = Field(256, ge=128, le=512)
    logSize: int = Field(10, ge=0, le=10)


class ActionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    function: str
    runtime: str = "python:3.11"
    main: str = "main"
    docker: str | None = None
    limits: Limits = Field(default_factory=Limits)
    inputs: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


class SequenceSpec(BaseModel):
    actions: str

    @property
    def components(self) -> list[str]:
        """The component action names, in order."""
        return [a.strip() for a in self.actions.split(",") if a.strip()]


class TriggerSpec(BaseModel):
    feed: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


class RuleSpec(BaseModel):
    trigger: str
    action: str


class PackageSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str = "0.0.1"
    license: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    actions: dict[str, ActionSpec] = Field(default_factory=dict)
    sequences: dict[str, SequenceSpec] = Field(default_factory=dict)
    triggers: dict[str, TriggerSpec] = Field(default_factory=dict)
    rules: dict[str, RuleSpec] = Field(default_factory=dict)

    @field_validator("actions", "sequences", "triggers", "rules", "inputs", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class Manifest(BaseModel):
    """A parsed manifest. ``root`` is the folder the function paths are relative to."""

    name: str
    packages: dict[str, PackageSpec]
    root: Path

    def package(self, name: str | None = None) -> tuple[str, PackageSpec]:
        """The named package, or the only one when ``name`` is None."""
        if name is None:
            if len(self.packages) != 1:
                raise ConfigError(f"manifest {self.name}: name one of {sorted(self.packages)}")
            name = next(iter(self.packages))
        if name not in self.packages:
            raise ConfigError(f"manifest {self.name}: no package {name!r}")
        return name, self.packages[name]

    def function_dir(self, action: ActionSpec) -> Path:
        return (self.root / action.function).resolve()


def substitute(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ``$VAR`` / ``${VAR}`` strings with ``env[VAR]`` ('' when unset), recursively."""
    if isinstance(value, str):
        m = _VAR.match(value.strip())
        if m:
            return env.get(m.group(1) or m.group(2), "")
        return value
    if isinstance(value, dict):
        # wskdeploy's long form: {type: string, value: ..., default: ...}
        if "type" in value and ("value" in value or "default" in value):
            return substitute(value.get("value", value.get("default")), env)
        return {k: substitute(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    return value


def load_manifest(path: Path, env: Mapping[str, str] | None = None) -> Manifest:
    """Read a wskdeploy manifest, resolving ``$VAR`` inputs from ``env``.

    Raises ConfigError naming the file and the reason when it is not a valid manifest, or when
    a sequence or rule names something the package does not define.
    """
    path = Path(path)
    env = env or {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read manifest: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a manifest (top level is not a mapping)")
    project = doc.get("project") or {}
    packages = project.get("packages") or doc.get("packages")
    if not isinstance(packages, dict) or not packages:
        raise ConfigError(f"{path}: no packages defined")
    try:
        parsed = {
            name: PackageSpec.model_validate(substitute(spec or {}, env))
            for name, spec in packages.items()
        }
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid manifest: {exc}") from exc
    manifest = Manifest(
        name=str(project.get("name", path.stem)), packages=parsed, root=path.parent.resolve()
    )
    _check_references(path, manifest)
    return manifest


def _check_references(path: Path, manifest: Manifest) -> None:
    for pname, pkg in manifest.packages.items():
        invocable = set(pkg.actions) | set(pkg.sequences)
        for sname, seq in pkg.sequences.items():
            for comp in seq.components:
                if comp.split("/")[-1] not in invocable:
                    raise ConfigError(f"{path}: sequence {pname}/{sname} names unknown {comp!r}")
        for rname, rule in pkg.rules.items():
            if rule.trigger not in pkg.triggers:
                raise ConfigError(f"{path}: rule {rname} names unknown trigger {rule.trigger!r}")
            if rule.action.split("/")[-1] not in invocable:
                raise ConfigError(f"{path}: rule {rname} names unknown action {rule.action!r}")

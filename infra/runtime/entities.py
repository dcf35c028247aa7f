"""The entities the embedded controller holds, in the shapes of OpenWhisk's REST API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from qmroct.runtime.records import KeyValue

SEQUENCE_KIND = "sequence"


class Exec(BaseModel):
    """``exec`` of an action: code (base64 zip when binary), or a sequence's components."""

    model_config = ConfigDict(extra="ignore")

    kind: str
    code: str | None = None
    main: str | None = None
    binary: bool = True
    image: str | None = None
    components: list[str] | None = None


class ActionLimits(BaseModel):
    model_config = ConfigDict(extra="ignore")

    timeout: int = Field(60000, ge=100, le=300000)
    memory: int = Field(256, ge=128, le=512)
    logs: int = Field(10, ge=0, le=10)
    concurrency: int = Field(1, ge=1, le=1)


class ActionPut(BaseModel):
    """The body ``wsk action update`` sends; absent fields keep their current value."""

    model_config = ConfigDict(extra="ignore")

    exec: Exec | None = None
    limits: dict[str, int] | None = None
    parameters: list[KeyValue] | None = None
    annotations: list[KeyValue] | None = None
    publish: bool | None = None


class ActionEntity(BaseModel):
    namespace: str
    package: str | None = None
    name: str
    version: str = "0.0.1"
    exec: Exec
    limits: ActionLimits = Field(default_factory=ActionLimits)
    parameters: list[KeyValue] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)
    publish: bool = False

    @property
    def path(self) -> str:
        """``namespace[/package]``, as OpenWhisk writes an entity's path."""
        return f"{self.namespace}/{self.package}" if self.package else self.namespace

    @property
    def fqn(self) -> str:
        return f"/{self.path}/{self.name}"

    @property
    def is_sequence(self) -> bool:
        return self.exec.kind == SEQUENCE_KIND

    def annotation(self, key: str, default: Any = None) -> Any:
        for a in self.annotations:
            if a.key == key:
                return a.value
        return default


class TriggerEntity(BaseModel):
    namespace: str
    name: str
    version: str = "0.0.1"
    parameters: list[KeyValue] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)


class RuleEntity(BaseModel):
    namespace: str
    name: str
    trigger: str
    action: str
    status: str = "active"


def bump(version: str) -> str:
    """0.0.1 -> 0.0.2: every update bumps the patch number."""
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def as_dict(pairs: list[KeyValue]) -> dict[str, Any]:
    return {p.key: p.value for p in pairs}


def as_pairs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=v) for k, v in values.items()]

"""The entities the embedded controller holds, serialised as OpenWhisk's controller writes them.

Sources (apache/openwhisk): ``common/scala/src/main/scala/org/apache/openwhisk/core/entity/``
``WhiskAction.scala``, ``Exec.scala``, ``WhiskTrigger.scala``, ``WhiskRule.scala``,
``WhiskPackage.scala``, ``WhiskEntity.scala`` (``updated``), and the list views of
``ansible/files/whisks_design_document_for_entities_db_v2.1.0.json``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from qmroct.runtime.records import KeyValue

SEQUENCE_KIND = "sequence"
BLACKBOX_KIND = "blackbox"
# Exec.scala isBase64Pattern: the controller computes ``binary`` from the code, never reads it.
_BASE64 = re.compile(
    r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"
)


def is_binary_code(code: str | None) -> bool:
    """Exec.scala ``isBinaryCode``: non-empty, a multiple of 4 long, and base64."""
    if not code:
        return False
    t = code.strip()
    return len(t) > 0 and len(t) % 4 == 0 and _BASE64.match(t) is not None


def now_ms() -> int:
    return int(time.time() * 1000)


class Exec(BaseModel):
    """``exec`` of an action: code (base64 zip when binary), or a sequence's components."""

    model_config = ConfigDict(extra="ignore")

    kind: str
    code: str | None = None
    main: str | None = None
    binary: bool = False
    image: str | None = None
    components: list[str] | None = None

    def to_json(self, *, code: bool = True) -> dict[str, Any]:
        """Exec.scala ``serdes.write``: only the fields of the exec's own variant."""
        if self.kind == SEQUENCE_KIND:
            return {"kind": self.kind, "components": list(self.components or [])}
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == BLACKBOX_KIND:
            out["image"] = self.image or ""
        if code and self.code is not None:
            out["code"] = self.code
        out["binary"] = is_binary_code(self.code)
        if self.main:
            out["main"] = self.main
        return out


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
    version: str | None = None


class EntityPut(BaseModel):
    """The body of ``PUT`` for triggers and packages (WhiskTriggerPut, WhiskPackagePut)."""

    model_config = ConfigDict(extra="ignore")

    parameters: list[KeyValue] | None = None
    annotations: list[KeyValue] | None = None
    publish: bool | None = None
    version: str | None = None


class RulePut(BaseModel):
    """WhiskRulePut: fully qualified names ``/ns/[pkg/]name`` (or relative ones)."""

    model_config = ConfigDict(extra="ignore")

    trigger: str | None = None
    action: str | None = None
    annotations: list[KeyValue] | None = None
    publish: bool | None = None
    version: str | None = None


def _pairs(pairs: list[KeyValue]) -> list[dict[str, Any]]:
    return [{"key": p.key, "value": p.value} for p in pairs]


def fqn_json(path: str, name: str) -> dict[str, str]:
    """FullyQualifiedEntityName as JSON: ``{"path": "guest/pkg", "name": "a"}``."""
    return {"path": path, "name": name}


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
    updated: int = Field(default_factory=now_ms)

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

    def to_json(self, *, code: bool = True) -> dict[str, Any]:
        """WhiskAction.toJson plus ``updated``: the path is the namespace (``guest/pkg``)."""
        parameters = self.parameters
        if self.is_sequence:
            # Actions.scala updateWhiskAction: a sequence's parameters are its components.
            parameters = [KeyValue(key="_actions", value=list(self.exec.components or []))]
        return {
            "namespace": self.path,
            "name": self.name,
            "version": self.version,
            "exec": self.exec.to_json(code=code),
            "limits": self.limits.model_dump(),
            "parameters": _pairs(parameters),
            "annotations": _pairs(self.annotations),
            "publish": self.publish,
            "updated": self.updated,
        }

    def summary(self) -> dict[str, Any]:
        """The ``actions`` list view: no code, no parameters, ``exec`` is only ``binary``."""
        return {
            "namespace": self.path,
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": _pairs(self.annotations),
            "limits": self.limits.model_dump(),
            "exec": {"binary": is_binary_code(self.exec.code)},
            "updated": self.updated,
        }


class PackageEntity(BaseModel):
    namespace: str
    name: str
    version: str = "0.0.1"
    parameters: list[KeyValue] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)
    publish: bool = False
    updated: int = Field(default_factory=now_ms)

    def to_json(self) -> dict[str, Any]:
        """WhiskPackage.toJson: ``binding`` is ``{}`` for a package that binds nothing."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "binding": {},
            "parameters": _pairs(self.parameters),
            "annotations": _pairs(self.annotations),
            "publish": self.publish,
            "updated": self.updated,
        }

    def summary(self) -> dict[str, Any]:
        """The ``packages`` list view: ``binding`` is ``false`` when there is none."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": _pairs(self.annotations),
            "binding": False,
            "updated": self.updated,
        }


class TriggerEntity(BaseModel):
    namespace: str
    name: str
    version: str = "0.0.1"
    parameters: list[KeyValue] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)
    publish: bool = False
    updated: int = Field(default_factory=now_ms)

    def to_json(self, rules: list[RuleEntity] | None = None) -> dict[str, Any]:
        """WhiskTrigger.toJson; ``rules`` maps ``ns/rule`` to the ReducedRule (action, status)."""
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "parameters": _pairs(self.parameters),
            "annotations": _pairs(self.annotations),
            "limits": {},
            "publish": self.publish,
            "updated": self.updated,
        }
        if rules:
            out["rules"] = {
                f"{r.namespace}/{r.name}": {"action": r.action_json(), "status": r.status}
                for r in rules
            }
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": _pairs(self.annotations),
            "updated": self.updated,
        }


class RuleEntity(BaseModel):
    namespace: str
    name: str
    trigger: str
    action: str  # the controller's key of the action: ``name`` or ``pkg/name``
    status: str = "active"
    version: str = "0.0.1"
    annotations: list[KeyValue] = Field(default_factory=list)
    publish: bool = False
    updated: int = Field(default_factory=now_ms)

    def action_json(self) -> dict[str, str]:
        pkg, _, name = self.action.rpartition("/")
        return fqn_json(f"{self.namespace}/{pkg}" if pkg else self.namespace, name)

    def to_json(self) -> dict[str, Any]:
        """WhiskRuleResponse: trigger and action as ``{path, name}``, the status from the trigger."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "trigger": fqn_json(self.namespace, self.trigger),
            "action": self.action_json(),
            "annotations": _pairs(self.annotations),
            "publish": self.publish,
            "updated": self.updated,
        }

    def summary(self) -> dict[str, Any]:
        return self.to_json()


def bump(version: str) -> str:
    """0.0.1 -> 0.0.2: every update bumps the patch number (SemVer.upPatch)."""
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def as_dict(pairs: list[KeyValue]) -> dict[str, Any]:
    return {p.key: p.value for p in pairs}


def as_pairs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=v) for k, v in values.items()]

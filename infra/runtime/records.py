"""Activation records, shaped as OpenWhisk's, and their store under the runtime's home folder.

Each record is one JSON file, ``activations/<start ms>-<activationId>-<name>.json``, written
atomically, so another process (``qmroct activations``) reads them without the runtime.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, INTERNAL_ERROR = 0, 1, 2, 3
STATUS_TEXT = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application error",
    DEVELOPER_ERROR: "action developer error",
    INTERNAL_ERROR: "whisk internal error",
}


def new_activation_id() -> str:
    return uuid.uuid4().hex


class KeyValue(BaseModel):
    key: str
    value: Any = None


class ActivationResponse(BaseModel):
    """``statusCode``: 0 success, 1 application error, 2 developer error, 3 internal error."""

    status: str
    statusCode: int
    success: bool
    result: Any = None

    @classmethod
    def of(cls, code: int, result: Any) -> ActivationResponse:
        return cls(status=STATUS_TEXT[code], statusCode=code, success=code == 0, result=result)

    @classmethod
    def error(cls, code: int, message: str) -> ActivationResponse:
        return cls.of(code, {"error": message})


class ActivationRecord(BaseModel):
    activationId: str
    name: str
    namespace: str
    subject: str = ""
    version: str
    publish: bool = False
    start: int
    end: int
    duration: int
    cause: str | None = None
    response: ActivationResponse
    logs: list[str] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)

    def annotation(self, key: str, default: Any = None) -> Any:
        for a in self.annotations:
            if a.key == key:
                return a.value
        return default

    def summary(self) -> dict[str, Any]:
        """The record without logs and result, as ``GET activations`` lists it by default."""
        data = self.model_dump(exclude={"logs"}, exclude_none=True)
        data["response"].pop("result", None)
        return data


class ActivationStore:
    """Activation records as JSON files under ``home/activations``."""

    def __init__(self, home: Path) -> None:
        self.folder = Path(home) / "activations"
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, record: ActivationRecord) -> None:
        target = self.folder / f"{record.start:013d}-{record.activationId}-{record.name}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(record.model_dump_json(exclude_none=True), encoding="utf-8")
        os.replace(tmp, target)

    def get(self, activation_id: str) -> ActivationRecord | None:
        if not activation_id.isalnum():
            return None
        for f in self.folder.glob(f"*-{activation_id}-*.json"):
            return ActivationRecord.model_validate_json(f.read_text(encoding="utf-8"))
        return None

    def list(
        self,
        name: str | None = None,
        since: int | None = None,
        limit: int | None = 30,
        skip: int = 0,
    ) -> list[ActivationRecord]:
        """Newest first; ``name`` matches the action name (a ``pkg/`` prefix is ignored)."""
        short = name.rsplit("/", 1)[-1] if name else None
        out: list[ActivationRecord] = []
        for f in sorted(self.folder.glob("*.json"), reverse=True):
            start, _, rest = f.stem.partition("-")
            _, _, rec_name = rest.partition("-")
            if short is not None and rec_name != short:
                continue
            if since is not None and int(start) < since:
                break
            if skip > 0:
                skip -= 1
                continue
            out.append(ActivationRecord.model_validate_json(f.read_text(encoding="utf-8")))
            if limit is not None and len(out) >= limit:
                break
        return out


def read_activations(
    home: Path, name: str | None = None, limit: int | None = 30
) -> list[dict[str, Any]]:
    """Activation records under a runtime home, newest first, as JSON objects (another
    process may read them while the runtime runs). An absent folder gives no records."""
    if not (Path(home) / "activations").is_dir():
        return []
    records = ActivationStore(home).list(name=name, limit=limit)
    return [r.model_dump(exclude_none=True) for r in records]

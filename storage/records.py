"""The rows of the catalog and the ledger, as the rest of qmroct sees them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_HASH = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_hash(value: str) -> str:
    """A scan's identity: the lowercase hex SHA-256 of its bytes."""
    if not _HASH.match(value):
        raise ValueError(f"not a sha256 hex digest: {value[:80]!r}")
    return value


def check_name(value: str, what: str = "name") -> str:
    """Measure names, versions and product names: short, no separators that keys rely on."""
    if not _NAME.match(value):
        raise ValueError(f"invalid {what} {value[:80]!r}: use letters, digits, '_', '.', '-'")
    return value


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions the semantic way: numeric parts as numbers, so 1.10.0 > 1.9.0.

    A pre-release suffix ("1.0.0-rc1") sorts before its release, as semantic versioning says.
    """
    core, _, pre = version.partition("-")
    parts: list[tuple[int, int | str]] = [
        (0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+]", core)
    ]
    parts.append((0, 0) if pre else (1, ""))
    if pre:
        parts.extend((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return tuple(parts)


def epoch(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def from_epoch(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class JobKind(StrEnum):
    MEASURE = "measure"
    DERIVE = "derive"
    XNAT = "xnat"


class JobState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"  # awaiting a retry once its backoff has passed
    DEAD = "dead"  # out of attempts (or cancelled); last_error says why


class MeasureState(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class ScanRecord(BaseModel):
    """One stored scan, identified by the SHA-256 of its content."""

    scan_hash: str
    bucket: str
    key: str
    version_id: str | None = None
    size: int = Field(ge=0)
    format: str = ""
    pattern: str = ""
    project: str = ""
    subject: str = ""
    session: str = ""
    scan: str = ""
    stored_at: datetime

    @field_validator("scan_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        return check_hash(v)


class MeasureVersion(BaseModel):
    """One version of one measure in the registry."""

    name: str
    version: str
    action: str = Field(description="what the scheduler invokes, e.g. run-signal")
    code_digest: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    requires: list[str] = Field(default_factory=list)
    state: MeasureState = MeasureState.DRAFT
    published_at: datetime | None = None
    retired_at: datetime | None = None

    @field_validator("name", "version")
    @classmethod
    def _names(cls, v: str) -> str:
        return check_name(v)

    @field_validator("requires")
    @classmethod
    def _products(cls, v: list[str]) -> list[str]:
        return [check_name(p, "product") for p in v]


class DerivedProduct(BaseModel):
    """An intermediate product computed once per scan (a segmentation, say)."""

    name: str
    scan_hash: str
    bucket: str
    key: str
    created_at: datetime
    job_key: str | None = None


class Job(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    job_key: str
    kind: JobKind
    scan_hash: str
    measure: str
    version: str
    action: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int
    state: JobState
    attempts: int
    max_attempts: int
    lease_token: str | None = None
    leased_at: float | None = None
    lease_expires: float | None = None
    activation_id: str | None = None
    not_before: float
    last_error: str | None = None
    enqueued_at: float
    needs: list[str] = Field(default_factory=list)


class Claim(BaseModel):
    """A leased job: the token must come back with the result, or the result is refused."""

    job: Job
    lease_token: str
    lease_expires: float


class LedgerCounts(BaseModel):
    """Jobs by kind and state, for ``qmroct status``."""

    by_kind: dict[str, dict[str, int]] = Field(default_factory=dict)

    def total(self, state: JobState | str) -> int:
        return sum(states.get(str(state), 0) for states in self.by_kind.values())

    @property
    def in_flight(self) -> int:
        return self.total(JobState.LEASED)

"""Result schemas: what a measure returns, and what the pipeline stores and publishes.

These are the boundary models between measure actions, ``record-result``, the ledger and XNAT.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Criterion = Literal["O", "S", "C", "A", "R", "I", "B"]
Value = float | int | str | bool | None


class Verdict(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


class Grading(BaseModel):
    """One value held against its thresholds for a letter."""

    value: float | None = Field(None, description="None: could not be computed")
    verdict: Verdict
    thresholds: tuple[float, float] | None = Field(None, description="(warn, fail)")


class CriterionVerdict(BaseModel):
    criterion: Criterion
    verdict: Verdict
    reason: str
    graded_by: str | None = Field(
        None,
        description="the value that decided this verdict: its key in the measure's values "
        "(in the OSCAR-IB summary prefixed with the measure, '<measure>.<value>')",
    )
    thresholds: tuple[float, float] | None = Field(
        None, description="(warn, fail) thresholds the graded value was held against"
    )
    graded_value: float | None = Field(None, description="the value named by graded_by")
    threshold_position: float | None = Field(
        None,
        description="where the graded value sits between its thresholds: 0 at warn, 1 at fail, "
        "negative while it passes; of several values at one verdict the highest decides",
    )
    gradings: dict[str, Grading] = Field(
        default_factory=dict,
        description="every value graded into this verdict, the deciding one included",
    )


class MeasureOutput(BaseModel):
    """What one measure computed on one scan. The picture travels separately (PNG bytes)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    measure: str
    version: str
    values: dict[str, Value] = Field(default_factory=dict)
    verdicts: list[CriterionVerdict] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    picture_png: bytes | None = Field(None, exclude=True)
    picture_rgb: Any = Field(
        None, exclude=True, description="the picture's RGB pixels, kept so writers need not decode"
    )
    dicom_sc: bytes | None = Field(
        None, exclude=True, description="optional DICOM Secondary Capture"
    )


class ResultStatus(StrEnum):
    OK = "ok"
    NOT_APPLICABLE = "not_applicable"
    FAILED = "failed"


class MeasureInvocation(BaseModel):
    """The parameters a measure action receives (through ``run-<measure>``)."""

    model_config = ConfigDict(extra="ignore")

    job_key: str
    lease_token: str
    scan_hash: str
    scan_url: str = Field(description="presigned GET URL of the one scan")
    scan_name: str = Field(description="the object's base name, for the format by extension")
    picture_url: str | None = Field(None, description="presigned PUT URL for the PNG picture")
    dicom_url: str | None = Field(None, description="presigned PUT URL for a Secondary Capture")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="derived products: name -> presigned GET URL"
    )
    measure: str
    version: str = Field(description="the published version: the code plus its parameters")
    params: dict[str, Any] = Field(default_factory=dict)
    code_digest: str = Field(
        "", description="digest of the published code; the action refuses to run other code"
    )


class MeasureActionResult(BaseModel):
    """What a measure action returns; ``record-result`` receives exactly this."""

    model_config = ConfigDict(extra="ignore")

    job_key: str
    lease_token: str
    scan_hash: str
    measure: str
    version: str
    status: ResultStatus
    values: dict[str, Value] = Field(default_factory=dict)
    verdicts: list[CriterionVerdict] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    # Not named "error": OpenWhisk reads any "error" key in a result as an application error,
    # which would stop the run-<measure> sequence before record-result could store the failure.
    failure: str | None = None
    picture_stored: bool = False
    dicom_stored: bool = False
    started_at: datetime
    ended_at: datetime
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    params: dict[str, Any] = Field(default_factory=dict)
    code_digest: str = ""


class StoredResult(MeasureActionResult):
    """A result as the ledger keeps it: current, or archived with when and why."""

    id: int | None = None
    current: bool = True
    recorded_at: datetime | None = None
    superseded_at: datetime | None = None
    superseded_by: str | None = Field(None, description="the version that replaced it")
    superseded_reason: str | None = None
    activation_id: str | None = None

"""Boundary models of the orchestration actions beyond those in ``qmroct.results``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from qmroct.results import MeasureInvocation, ResultStatus

#: The version of each derived product's computation; part of the derive job's key.
#: segmentation 2: the whole scan context; 3: the context without the raw B-scans; 4: the
#: retina checks stored with it (``retina_cnr``) leave wrapped A-scans out; 5: where the retina
#: wraps, the lateral means under the ILM run along it; 6: with the linear image the measures
#: read (``qmroct.measures.context``).
PRODUCT_VERSIONS: dict[str, str] = {"segmentation": "6"}


def product_version(product: str) -> str:
    return PRODUCT_VERSIONS.get(product, "1")


def product_file(product: str) -> str:
    """The file name a derived product is stored under."""
    return f"{product}.npz"


class DeriveInvocation(MeasureInvocation):
    """What a derive action receives: the scan, and where to PUT the product."""

    output_url: str = Field(description="presigned PUT URL for the product")
    output_bucket: str
    output_key: str


class DeriveActionResult(BaseModel):
    """What a derive action returns; record-result receives exactly this."""

    model_config = ConfigDict(extra="ignore")

    job_key: str
    lease_token: str
    scan_hash: str
    measure: str = Field(description="the product name")
    version: str
    status: ResultStatus
    output_bucket: str = ""
    output_key: str = ""
    failure: str | None = None  # never "error": OpenWhisk would fail the sequence on it


class ActionOutcome(BaseModel):
    """What record-result and the event actions answer (small, no parameters echoed)."""

    job_key: str = ""
    state: str
    detail: str = ""
    current: bool | None = None
    started: int = Field(0, description="activations record-result started in the slot it freed")
    claim_ms: float | None = Field(None, description="time of the ledger claim that started them")

"""Boundary models of the gateway: what de-identification produces and what an upload reports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from qmroct.errors import ScanError


class DeidRefused(ScanError):
    """The file must not leave the clinic as it is (burned-in annotation, say): flagged, kept."""


class Identity(BaseModel):
    """Pseudonymised labels that place a scan: {project}/{subject}/{session}/{scan}.{ext}."""

    subject: str
    session: str
    scan: str


class DeidResult(BaseModel):
    """A de-identified file: its bytes, its format and the pseudonymised identity it belongs to."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    data: bytes = Field(repr=False)
    format: str = Field(description="heyex_vol, heyex_e2e, topcon_fda, topcon_fds, dicom_opt")
    ext: str = Field(description="file extension, without the dot, lower-case")
    identity: Identity
    pattern: str | None = Field(None, description="line, ring, volume, radial when known")
    changes: list[str] = Field(default_factory=list, description="what was removed or replaced")


class UploadOutcome(BaseModel):
    """One file through the gateway."""

    source: str
    status: str = Field(description="uploaded, duplicate, flagged, rejected, failed")
    key: str | None = None
    sha256: str | None = None
    size: int = 0
    stored_size: int = 0
    encoding: str = Field("identity", description="identity or gzip (Content-Encoding)")
    multipart: bool = False
    reason: str | None = None


class UploadSummary(BaseModel):
    outcomes: list[UploadOutcome] = Field(default_factory=list)
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_stored: int = 0
    # CPU seconds the upload's own threads used (de-identify, hash, send): the gateway's cost.
    cpu_s: float = 0.0

    @property
    def throughput_mb_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def render(self) -> str:
        parts = [
            f"{self.count(s)} {s}"
            for s in ("uploaded", "duplicate", "flagged", "rejected", "failed")
            if self.count(s)
        ]
        return (
            f"{len(self.outcomes)} file(s): {', '.join(parts) or 'nothing to do'}; "
            f"{self.bytes_in / 1e6:.1f} MB in {self.seconds:.2f} s "
            f"({self.throughput_mb_s:.1f} MB/s), {self.bytes_stored / 1e6:.1f} MB stored"
        )

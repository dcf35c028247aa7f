"""One configuration model, read from ``QMROCT_*`` environment variables (a ``.env`` is allowed).

Defaults give the embedded stack: a local folder store, SQLite, the embedded OpenWhisk runtime.
Point the same variables at MinIO, PostgreSQL, a real OpenWhisk and XNAT for production.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from qmroct.limits import MAX_SCAN_BYTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QMROCT_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".qmroct"), description="working folder of the embedded stack")
    ledger_url: str = Field(
        "", description="sqlite:///path or postgresql://...; empty: SQLite in home"
    )
    # Object store: "local" (the folder store of `qmroct up`, served over loopback) or "minio".
    # The same QMROCT_STORE_* variables fill the orchestration actions' inputs (manifest.yaml).
    store: str = "local"
    store_endpoint: str = Field(
        "", description="host:port for MinIO; http://... for the local store"
    )
    store_access_key: str = ""
    store_secret_key: str = ""
    store_secure: bool = False
    store_region: str = "us-east-1"
    ingest_bucket: str = "oct-ingest"
    measures_bucket: str = "oct-measures"
    results_bucket: str = "oct-results"
    # OpenWhisk
    ow_api_host: str = ""
    ow_auth: str = ""
    ow_namespace: str = "_"
    ow_package: str = "qmroct"
    # Scheduling
    max_inflight: int = Field(4, ge=1, description="cap on measure activations in flight")
    lease_seconds: int = Field(300, ge=5)
    max_attempts: int = Field(3, ge=1)
    # Scans
    max_scan_bytes: int = Field(MAX_SCAN_BYTES, ge=1024)
    # XNAT
    xnat_url: str = ""
    xnat_alias: str = ""
    xnat_secret: str = ""
    xnat_project: str = ""

    def sqlite_path(self) -> Path:
        return self.home / "ledger.sqlite3"

    def effective_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.sqlite_path()}"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]

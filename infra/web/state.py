"""The web view's configuration and the objects its requests share (database, store, caches)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from qmroct.config import Settings, load_settings
from qmroct.errors import QmroctError
from qmroct.objectstore.base import ObjectStore
from qmroct.storage.buckets import DERIVED_BUCKET, INGEST_BUCKET
from qmroct.storage.catalog import Catalog
from qmroct.storage.db import Database, connect
from qmroct.web.auth import RateLimiter, Users
from qmroct.web.images import LoadedScan, ScanImages, load
from qmroct.web.index import SearchIndex

log = logging.getLogger(__name__)


class WebSettings(BaseSettings):
    """``QMROCT_WEB_*`` variables (a ``.env`` file is allowed)."""

    model_config = SettingsConfigDict(env_prefix="QMROCT_WEB_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8470, ge=0, le=65535)
    secret: str = Field("", description="session signing key; empty: one kept in QMROCT_HOME")
    secure_cookies: bool = Field(
        False, description="send the session cookie over HTTPS only (set behind TLS)"
    )
    test_projects: str = Field(
        "DEMO,TEST", description="projects holding test data, the only ones measure developers see"
    )
    session_hours: float = Field(8.0, gt=0)
    login_limit: int = Field(5, ge=1, description="failed logins per account and source")
    login_window_s: float = Field(300.0, gt=0)
    refresh_s: float = Field(
        15.0, ge=0, description="how often the search index follows the catalog"
    )

    def test_project_list(self) -> list[str]:
        return [p.strip() for p in self.test_projects.split(",") if p.strip()]


class ScanUnavailable(QmroctError):
    """A scan's file could not be read from the object store."""


def _secret(home: Path) -> str:
    path = home / "web-secret"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    os.chmod(path, 0o600)
    return value


def open_store(settings: Settings) -> ObjectStore:
    """The configured object store; on one machine without a running stack, the folder store
    itself (read in-process), so `qmroct web` works on a stopped `qmroct up` home."""
    from qmroct.objectstore import store_from_settings

    stack = settings.home / "stack.json"
    if settings.store == "local" and not settings.store_endpoint and not stack.is_file():
        from qmroct.localstore.store import LocalFolderStore

        root = settings.home / "store"
        if not root.is_dir():
            raise QmroctError(f"{root}: no object store here (run `qmroct up` or the demo)")
        return LocalFolderStore(root)  # type: ignore[return-value]
    return store_from_settings(settings)


def unwrap(data: bytes, name: str) -> bytes:
    """The scan's own bytes: the gateway may have gzipped them, and a store may hand the gzip
    bytes back (the local store does; MinIO decodes Content-Encoding)."""
    if data[:2] == b"\x1f\x8b" and not name.endswith(".gz"):
        return gzip.decompress(data)
    return data


class WebState:
    """Shared by every request of one app."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        settings: Settings,
        web: WebSettings,
    ) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.web = web
        self.users = Users(db)
        self.catalog = Catalog(db)
        self.index = SearchIndex(db)
        self.limiter = RateLimiter(web.login_limit, web.login_window_s)
        self.images = ScanImages(self._load)
        self.test_projects = web.test_project_list()
        self._facets: tuple[float, Any, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: called by close(): what pages opened for the app's life (the developer sandbox)
        self.closers: list[Any] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        web: WebSettings | None = None,
        *,
        store: ObjectStore | None = None,
    ) -> WebState:
        settings = settings or load_settings()
        web = web or WebSettings()
        url = settings.ledger_url or f"sqlite:///{Path(settings.home).resolve() / 'ledger.sqlite3'}"
        db = connect(url)
        return cls(db, store or open_store(settings), settings, web)

    def secret_key(self) -> str:
        return self.web.secret or _secret(Path(self.settings.home).resolve())

    # ---- scans ----
    def scan_bytes(self, scan_hash: str) -> tuple[bytes, str]:
        rec = self.catalog.scan(scan_hash)
        if rec is None:
            raise ScanUnavailable(f"scan {scan_hash[:12]}: not in the catalog")
        try:
            data = self.store.get(rec.bucket, rec.key, version_id=rec.version_id)
        except Exception as exc:  # every store error names the bucket and key
            raise ScanUnavailable(f"{rec.bucket}/{rec.key}: {exc}") from exc
        return unwrap(data, rec.key), rec.key

    def deidentified(self, scan_hash: str) -> bool:
        """True when the stored object came through the gateway's de-identification: it sits in
        the ingest bucket with the gateway's ``sha256`` metadata (written only after
        de-identification; ``qmroct.gateway.upload``)."""
        rec = self.catalog.scan(scan_hash)
        if rec is None or rec.bucket != INGEST_BUCKET:
            return False
        try:
            info = self.store.stat(rec.bucket, rec.key, version_id=rec.version_id)
        except Exception:
            return False
        meta = {k.lower().removeprefix("x-amz-meta-"): v for k, v in info.metadata.items()}
        return bool(meta.get("sha256"))

    def _load(self, scan_hash: str) -> LoadedScan:
        from qmroct.measures.context import ScanContext
        from qmroct.oct.readers.dispatch import read_scan
        from qmroct.oct.segmentation import Segmentation

        data, key = self.scan_bytes(scan_hash)
        scan = read_scan(data, name=key)
        seg = None
        product = self.catalog.derived("segmentation", scan_hash)
        if product is not None:
            try:
                blob = self.store.get(product.bucket, product.key)
                # The derived product is the whole scan context now (PRODUCT_VERSIONS 2); one
                # stored before it holds the boundaries alone.
                if ScanContext.is_stored_context(blob):
                    seg = ScanContext.from_bytes(blob, source=product.key).segmentation
                else:
                    seg = Segmentation.from_bytes(blob)
            except Exception:
                seg = None  # the viewer works without overlays; the scan page shows the measure
        return load(scan, seg)

    def read_meta(self, scan_hash: str) -> Any | None:
        """The scan's header, for the index (None when it cannot be read)."""
        try:
            return self.images.scan(scan_hash).meta
        except Exception:
            return None

    # ---- index ----
    def refresh_index(self) -> None:
        self.index.refresh()
        self.index.read_headers(self.read_meta, limit=20)

    def facets(self, scope: list[str] | None) -> Any:
        from qmroct.web.search import facets

        key = json.dumps(scope)
        now = time.monotonic()
        if self._facets and self._facets[1] == key and now - self._facets[0] < 30:
            return self._facets[2]
        got = facets(self.db, scope)
        self._facets = (now, key, got)
        return got

    def start_refresher(self) -> None:
        """Follow the catalog in the background every ``refresh_s`` seconds."""
        if self.web.refresh_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.web.refresh_s):
                try:
                    self.refresh_index()
                except Exception:  # the next round tries again; searches use what is indexed
                    log.exception("refreshing the search index failed")

        self._thread = threading.Thread(target=loop, name="qmroct-web-index", daemon=True)
        self._thread.start()

    def close(self) -> None:
        for closer in self.closers:
            closer()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        close = getattr(getattr(self.store, "notifier", None), "close", None)
        if close is not None:
            close()
        self.db.close()


__all__ = ["DERIVED_BUCKET", "ScanUnavailable", "WebSettings", "WebState", "open_store"]

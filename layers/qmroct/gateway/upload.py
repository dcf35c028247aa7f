"""Upload: de-identify, hash, compress where it pays, and put each scan into the ingest bucket
at ``{project}/{subject}/{session}/{scan}.{ext}`` (pseudonymised labels only).

- Idempotent: the sha256 of the de-identified bytes is checked (local record, then the stored
  object's metadata) before any upload; the same content twice gives one object.
- Big files go multipart. Each part is retried with backoff; an upload cut off by a dropped
  connection keeps its upload id in the gateway state, and the next run lists the parts already
  stored and sends only the missing ones.
- The clinic's originals are opened read-only and are never moved, renamed or deleted.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qmroct.errors import InvalidKey, QmroctError, ScanError, ScanTooLarge
from qmroct.gateway.compress import WORTH, gzip_parallel, trial_ratio
from qmroct.gateway.deid import deidentify
from qmroct.gateway.models import DeidRefused, DeidResult, UploadOutcome, UploadSummary
from qmroct.gateway.pseudonyms import PseudonymStore
from qmroct.gateway.state import GatewayState
from qmroct.objectstore.base import ObjectStore
from qmroct.storage.buckets import ScanKey

MIB = 1 << 20
Progress = Callable[[int], None]


class UploadFailed(QmroctError):
    """An upload did not complete after its retries; nothing was lost and a rerun resumes it."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source} -> {key}: {reason}")


def _permanent(exc: BaseException) -> bool:
    # Credentials, bucket and key problems do not heal by retrying.
    name = type(exc).__name__
    # MultipartError: the server forgot the upload; starting over is the remedy, not retrying.
    return isinstance(exc, InvalidKey) or name in (
        "AccessDenied",
        "BucketNotFound",
        "InvalidKey",
        "MultipartError",
    )


def _md5(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Uploader:
    """Push files from the clinic into the ingest bucket of ``store``."""

    def __init__(
        self,
        store: ObjectStore,
        pseudonyms: PseudonymStore,
        state: GatewayState,
        *,
        project: str,
        bucket: str = "oct-ingest",
        compress: str = "auto",
        multipart_threshold: int = 64 * MIB,
        part_size: int = 16 * MIB,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_bytes: int = 4096 * MIB,
        on_progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if compress not in ("auto", "gzip", "none"):
            raise ValueError(f"compress must be auto, gzip or none, not {compress!r}")
        if part_size < 5 * MIB:
            raise ValueError("S3 parts are at least 5 MiB")
        self.store = store
        self.pseudonyms = pseudonyms
        self.state = state
        self.project = project
        self.bucket = bucket
        self.compress = compress
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_bytes = max_bytes
        self.on_progress = on_progress
        self._sleep = sleep
        # End-to-end MB/s seen with and without gzip (moving averages), for compress="auto".
        self._rate: dict[bool, float | None] = {True: None, False: None}
        self._rate_lock = threading.Lock()

    # ------------------------------------------------------------------ public
    def upload_paths(self, paths: Iterable[str | Path], *, workers: int = 2) -> UploadSummary:
        files = list(_expand(paths))
        started = time.perf_counter()
        spent: list[float] = []

        def one(path: Path) -> UploadOutcome:
            t0 = time.thread_time()
            try:
                return self.upload_file(path)
            finally:
                spent.append(time.thread_time() - t0)  # list.append is atomic

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="upload") as pool:
            outcomes = list(pool.map(one, files))
        return UploadSummary(
            outcomes=outcomes,
            seconds=time.perf_counter() - started,
            cpu_s=round(sum(spent), 3),
            bytes_in=sum(o.size for o in outcomes),
            bytes_stored=sum(o.stored_size for o in outcomes if o.status == "uploaded"),
        )

    def upload_file(self, path: str | Path) -> UploadOutcome:
        """One file: never raises for bad input; the outcome says what happened and why."""
        src = Path(path)
        try:
            size = src.stat().st_size
            if size > self.max_bytes:
                raise ScanTooLarge(src, f"{size} bytes is over the gateway limit {self.max_bytes}")
            with src.open("rb") as fh:  # read-only: the original stays as it is
                data = fh.read()
        except ScanError as exc:
            return UploadOutcome(source=str(src), status="rejected", reason=exc.reason)
        except OSError as exc:
            return UploadOutcome(source=str(src), status="rejected", reason=f"cannot read: {exc}")
        outcome = self.upload_bytes(data, source=str(src))
        self._progress(size)  # every file counts, whatever came of it
        return outcome

    def upload_bytes(self, data: bytes, *, source: str) -> UploadOutcome:
        """De-identify and upload one file's bytes (from a folder, or a DICOM association)."""
        try:
            result = deidentify(data, self.pseudonyms, name=source)
        except DeidRefused as exc:
            return UploadOutcome(source=source, status="flagged", size=len(data), reason=exc.reason)
        except ScanError as exc:
            return UploadOutcome(
                source=source, status="rejected", size=len(data), reason=exc.reason
            )
        try:
            return self.upload_deidentified(result, source=source, original_size=len(data))
        except UploadFailed as exc:
            return UploadOutcome(
                source=source, status="failed", key=exc.key, size=len(data), reason=exc.reason
            )

    def upload_deidentified(
        self, result: DeidResult, *, source: str, original_size: int | None = None
    ) -> UploadOutcome:
        data = result.data
        sha = hashlib.sha256(data).hexdigest()
        ident = result.identity
        key = ScanKey(
            project=self.project,
            subject=ident.subject,
            session=ident.session,
            scan=ident.scan,
            ext=result.ext,
        ).key
        size = original_size if original_size is not None else len(data)
        if self._already_stored(key, sha):
            return UploadOutcome(source=source, status="duplicate", key=key, sha256=sha, size=size)

        multipart = len(data) >= self.multipart_threshold and hasattr(self.store, "start_multipart")
        # Content-Encoding travels on single PUTs only (multipart metadata is user metadata), so
        # multipart uploads go as they are.
        gz = not multipart and (
            self.compress == "gzip" or (self.compress == "auto" and self._pays(data))
        )
        began = time.perf_counter()
        body = gzip_parallel(data) if gz else data
        metadata = {
            "sha256": sha,
            "format": result.format,
            "pattern": result.pattern or "unknown",
            "encoding": "gzip" if gz else "identity",
            "original-size": str(len(data)),
        }
        if gz:
            metadata["Content-Encoding"] = "gzip"
        if multipart:
            self._put_multipart(key, sha, body, metadata, source)
        else:
            self._retry(
                source,
                key,
                lambda: self.store.put(self.bucket, key, body, length=len(body), metadata=metadata),
            )
        self._observe(gz, len(data), time.perf_counter() - began)
        self.state.record_upload(self.bucket, sha, key)
        return UploadOutcome(
            source=source,
            status="uploaded",
            key=key,
            sha256=sha,
            size=size,
            stored_size=len(body),
            encoding="gzip" if gz else "identity",
            multipart=multipart,
        )

    # ------------------------------------------------------------------ internals
    def _pays(self, data: bytes) -> bool:
        """Compress when the trial shrinks the file and gzip has not proved the slower way.

        Each way's end-to-end rate (input MB/s over compress + send) is measured on real uploads;
        gzip is tried first (a clinic's uplink is slow), plain once, then the faster one wins,
        and keeps being re-measured as it is used.
        """
        if trial_ratio(data)[0] >= WORTH:
            return False
        with self._rate_lock:
            gz, plain = self._rate[True], self._rate[False]
        if gz is None:
            return True
        if plain is None:
            return False
        return gz >= plain

    def _observe(self, gz: bool, n: int, seconds: float) -> None:
        # Only files big enough to say something about the rate count.
        if n < MIB or seconds <= 0:
            return
        rate = n / 1e6 / seconds
        with self._rate_lock:
            old = self._rate[gz]
            self._rate[gz] = rate if old is None else 0.5 * old + 0.5 * rate

    def _progress(self, n: int) -> None:
        if self.on_progress is not None:
            self.on_progress(n)

    def _already_stored(self, key: str, sha: str) -> bool:
        """Check by hash before upload: our record first, then the object's own metadata."""
        try:
            info = self.store.stat(self.bucket, key)
        except Exception:  # absent (or unreachable: then the upload will say so)
            if self.state.uploaded_key(self.bucket, sha):
                self.state.forget_upload(self.bucket, sha)  # the store lost it: send again
            return False
        meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
        stored = meta.get("sha256") or meta.get("x-amz-meta-sha256")
        if stored == sha:
            self.state.record_upload(self.bucket, sha, key)
            return True
        return False

    def _retry(self, source: str, key: str, call: Callable[[], Any]) -> Any:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return call()
            except Exception as exc:
                if _permanent(exc) or attempt == self.retries:
                    raise UploadFailed(
                        source,
                        key,
                        f"{type(exc).__name__}: {exc} (after {attempt + 1} attempt(s); "
                        "rerun the upload to resume)",
                    ) from exc
                self._sleep(delay)
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _put_multipart(
        self, key: str, sha: str, body: bytes, metadata: dict[str, str], source: str
    ) -> None:
        store: Any = self.store
        opened = self.state.open_multipart(self.bucket, key, sha)
        done: dict[int, str] = {}
        if opened is not None:
            upload_id, part_size = opened
            try:
                listed = self._retry(
                    source, key, lambda: store.list_parts(self.bucket, key, upload_id)
                )
                done = {p.part_number: p.etag.strip('"') for p in listed}
            except UploadFailed:
                opened = None  # the server forgot the upload (expired or aborted): start over
        if opened is None:
            part_size = self.part_size
            upload_id = self._retry(
                source,
                key,
                lambda: store.start_multipart(
                    self.bucket, key, "application/octet-stream", metadata
                ),
            )
            self.state.remember_multipart(self.bucket, key, sha, upload_id, part_size)
        view = memoryview(body)
        parts: list[tuple[int, str]] = []
        for number, offset in enumerate(range(0, len(body), part_size), start=1):
            piece = view[offset : offset + part_size]
            etag = _md5(piece)
            if done.get(number) != etag:
                chunk = bytes(piece)
                etag = self._retry(
                    source,
                    key,
                    lambda n=number, c=chunk: store.upload_part(self.bucket, key, upload_id, n, c),
                ).strip('"')
            parts.append((number, etag))
        self._retry(
            source, key, lambda: store.complete_multipart(self.bucket, key, upload_id, parts)
        )
        self.state.close_multipart(self.bucket, key, sha)


def _expand(paths: Iterable[str | Path]) -> Iterable[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(
                f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")
            )
        else:
            yield path

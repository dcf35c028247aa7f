"""The local folder store: the embedded stand-in for MinIO, with MinIO's contract.

Layout under ``root``::

    {bucket}/{key}                          the current version, read-only (a hard link)
    .qmroct/buckets/{bucket}.json           versioning and notification targets
    .qmroct/objects/{bucket}/{sha256(key)}/ meta.json (every version) + {version_id}.data
    .qmroct/uploads/{upload_id}/            multipart uploads in progress
    .qmroct/events/webhook-{arn}/           the on-disk webhook queues
    .qmroct/tmp/                            partial writes (atomic rename from here)

Every version is kept. Every path is resolved and checked against ``root`` before a write, so
no key can write outside it. Like MinIO's old FS mode, a folder tree cannot hold both ``a``
and ``a/b``; the second is refused with :class:`KeyConflict`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from pydantic import BaseModel, Field
from qmroct.errors import InvalidKey
from qmroct.events import object_created, render_body
from qmroct.localstore.notify import Notifier
from qmroct.objectstore.base import NotificationTarget, ObjectInfo, PartInfo
from qmroct.objectstore.errors import (
    BucketNotFound,
    KeyConflict,
    MultipartError,
    ObjectNotFound,
    StoreError,
)
from qmroct.objectstore.keys import validate_bucket, validate_key

CHUNK = 1 << 20
MIN_PART_SIZE = 5 * 1024 * 1024  # S3 and MinIO refuse smaller parts, except the last
MAX_PARTS = 10_000
NULL_VERSION = "null"
#: MinIO's content type of an object stored without one (cmd/handler-utils.go,
#: extractMetadata: "Set content-type to default value if it is not set").
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
_S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_META_KEY_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class _Version(BaseModel):
    version_id: str
    size: int
    etag: str
    content_type: str
    # A real header, stored and served as such (MinIO keeps it beside Content-Type, not as
    # x-amz-meta-*), so an HTTP client inflates a gzip body as it does from MinIO.
    content_encoding: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    last_modified: datetime


class _Meta(BaseModel):
    key: str
    versions: list[_Version] = Field(default_factory=list)


class BucketConfig(BaseModel):
    versioning: bool = True
    targets: list[NotificationTarget] = Field(default_factory=list)


class RequestContext(BaseModel):
    """Who caused a write; it lands in the event as MinIO puts it there."""

    principal: str = ""
    source_host: str = "127.0.0.1"
    user_agent: str = ""
    # The Host and scheme of the request, for the Location MinIO's completion reply carries.
    host: str = ""
    scheme: str = "http"


class _Upload(BaseModel):
    bucket: str
    key: str
    content_type: str
    content_encoding: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    initiated: datetime


def normalize_metadata(bucket: str, key: str, metadata: dict[str, str] | None) -> dict[str, str]:
    """User metadata as S3 holds it: lowercase header-safe names, printable ASCII values."""
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        low = name.lower().removeprefix("x-amz-meta-")
        if not low or not set(low) <= _META_KEY_OK:
            raise StoreError(bucket, key, f"metadata name {name!r} is not a header token")
        if not all(" " <= c <= "~" for c in value):
            raise StoreError(bucket, key, f"metadata {name!r} is not printable ASCII")
        out[low] = value
    return out


def _canonical_header(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def _go_xml_text(text: str) -> str:
    """Go's encoding/xml EscapeText, which MinIO's XML replies go through."""
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;",
             "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}  # fmt: skip
    return "".join(table.get(c, c) for c in text)


def complete_multipart_reply(bucket: str, key: str, etag: str, ctx: RequestContext) -> bytes:
    """The body MinIO answers a CompleteMultipartUpload with (cmd/api-response.go
    generateCompleteMultipartUploadResponse, encoded by cmd/api-headers.go encodeResponse):
    its length is the ``content-length`` the event's responseElements carry."""
    path = posixpath.normpath(f"/{bucket}/{key}")
    # Go's url.URL.String escapes a path as url.PathEscape does, keeping "/" (net/url).
    location = f"{ctx.scheme}://{ctx.host}{quote(path, safe='/$&+,:;=@')}" if ctx.host else path
    body = (
        f'<CompleteMultipartUploadResult xmlns="{_S3_XMLNS}">'
        f"<Location>{_go_xml_text(location)}</Location><Bucket>{_go_xml_text(bucket)}</Bucket>"
        f"<Key>{_go_xml_text(key)}</Key><ETag>{_go_xml_text(chr(34) + etag + chr(34))}</ETag>"
        "</CompleteMultipartUploadResult>"
    )
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


class LocalFolderStore:
    """Buckets as folders, versioned, with MinIO-format webhook events.

    This is the server side: only the process serving the store touches the folder. Other
    processes use :class:`qmroct.objectstore.local.LocalStoreClient` over HTTP.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        queue_dir: str | os.PathLike[str] | None = None,
        retry_interval: float = 3.0,
        region: str = "",
        origin_endpoint: str = "",
        min_part_size: int = MIN_PART_SIZE,
    ) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._sys = self.root / ".qmroct"
        for sub in ("buckets", "objects", "uploads", "tmp"):
            (self._sys / sub).mkdir(parents=True, exist_ok=True)
        self.region = region
        self.origin_endpoint = origin_endpoint
        self.min_part_size = min_part_size
        self.deployment_id = self._deployment_id()
        self._lock = threading.RLock()
        self.notifier = Notifier(
            Path(queue_dir) if queue_dir else self._sys / "events", retry_interval=retry_interval
        )
        # Start a worker for every configured target now, so events queued before a restart
        # are redelivered without waiting for a new write.
        for cfg_file in sorted((self._sys / "buckets").glob("*.json")):
            for target in BucketConfig.model_validate_json(cfg_file.read_bytes()).targets:
                if target.endpoint:
                    self.notifier.queue(target)

    # ---- paths -------------------------------------------------------------------------
    def _deployment_id(self) -> str:
        path = self._sys / "deployment-id"
        if not path.exists():
            self._atomic_write(path, str(uuid.uuid4()).encode())
        return path.read_text().strip()

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidKey(str(path), "resolves outside the store root")
        return resolved

    def _bucket_cfg_path(self, bucket: str) -> Path:
        return self._sys / "buckets" / f"{validate_bucket(bucket)}.json"

    def _object_dir(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._sys / "objects" / bucket / digest

    def _visible_path(self, bucket: str, key: str) -> Path:
        for segment in key.split("/"):
            if len(segment.encode()) > 255:
                raise InvalidKey(key, "a path segment is over 255 bytes, the file-name limit")
        return self._inside(self.root / bucket / key)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = self._sys / "tmp" / f"{uuid.uuid4().hex}.tmp"
        # Owner-only from the first byte: bucket configs carry the webhook's OpenWhisk key.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._inside(path))

    # ---- buckets -----------------------------------------------------------------------
    def _config(self, bucket: str) -> BucketConfig:
        path = self._bucket_cfg_path(bucket)
        if not path.exists():
            raise BucketNotFound(bucket, "", "no such bucket")
        return BucketConfig.model_validate_json(path.read_bytes())

    def _save_config(self, bucket: str, cfg: BucketConfig) -> None:
        self._atomic_write(self._bucket_cfg_path(bucket), cfg.model_dump_json(indent=1).encode())

    def ensure_bucket(self, bucket: str, *, versioning: bool = True) -> None:
        validate_bucket(bucket)
        with self._lock:
            (self.root / bucket).mkdir(exist_ok=True)
            if not self._bucket_cfg_path(bucket).exists():
                self._save_config(bucket, BucketConfig(versioning=versioning))

    def bucket_exists(self, bucket: str) -> bool:
        try:
            return self._bucket_cfg_path(bucket).exists()
        except InvalidKey:
            return False

    def set_versioning(self, bucket: str, enabled: bool) -> None:
        with self._lock:
            cfg = self._config(bucket)
            cfg.versioning = enabled
            self._save_config(bucket, cfg)

    def set_notification(self, bucket: str, targets: list[NotificationTarget]) -> None:
        """Replace the bucket's notification targets (MinIO's PutBucketNotification)."""
        with self._lock:
            cfg = self._config(bucket)
            cfg.targets = list(targets)
            self._save_config(bucket, cfg)
        for target in targets:
            if target.endpoint:
                self.notifier.queue(target)

    def get_notification(self, bucket: str) -> list[NotificationTarget]:
        return self._config(bucket).targets

    # ---- objects -----------------------------------------------------------------------
    def _load_meta(self, bucket: str, key: str) -> _Meta | None:
        path = self._object_dir(bucket, key) / "meta.json"
        if not path.exists():
            return None
        return _Meta.model_validate_json(path.read_bytes())

    def _spool(self, data: bytes | BinaryIO, length: int | None) -> tuple[Path, int, str]:
        """Write the payload to a temporary file; returns (path, size, md5 hex)."""
        tmp = self._sys / "tmp" / f"{uuid.uuid4().hex}.data"
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with open(tmp, "wb") as fh:
                if isinstance(data, bytes | bytearray | memoryview):
                    buf = bytes(data)
                    if length is not None and length != len(buf):
                        raise ValueError(f"length {length} does not match {len(buf)} bytes")
                    fh.write(buf)
                    md5.update(buf)
                    size = len(buf)
                else:
                    remaining = length
                    while remaining is None or remaining > 0:
                        want = CHUNK if remaining is None else min(CHUNK, remaining)
                        chunk = data.read(want)
                        if not chunk:
                            break
                        fh.write(chunk)
                        md5.update(chunk)
                        size += len(chunk)
                        if remaining is not None:
                            remaining -= len(chunk)
                    if remaining:
                        raise ValueError(f"stream ended {remaining} bytes short of {length}")
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, size, md5.hexdigest()

    def _commit(
        self,
        bucket: str,
        key: str,
        tmp: Path,
        size: int,
        etag: str,
        content_type: str,
        metadata: dict[str, str],
        event_name: str,
        ctx: RequestContext | None,
        *,
        content_encoding: str = "",
        reply_length: int | None = None,
    ) -> ObjectInfo:
        """Make a spooled payload the newest version, link it visible, emit the event."""
        ctx = ctx or RequestContext()
        try:
            with self._lock:
                cfg = self._config(bucket)
                visible = self._visible_path(bucket, key)
                if visible.is_dir():
                    raise KeyConflict(bucket, key, "a folder of that name holds other objects")
                try:
                    visible.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise KeyConflict(
                        bucket, key, "a parent path is already an object in this bucket"
                    ) from None
                self._inside(visible.parent)
                odir = self._object_dir(bucket, key)
                odir.mkdir(parents=True, exist_ok=True)
                meta = self._load_meta(bucket, key) or _Meta(key=key)
                version_id = str(uuid.uuid4()) if cfg.versioning else NULL_VERSION
                if not cfg.versioning:
                    for old in meta.versions:
                        if old.version_id == NULL_VERSION:
                            (odir / f"{NULL_VERSION}.data").unlink(missing_ok=True)
                    meta.versions = [v for v in meta.versions if v.version_id != NULL_VERSION]
                data_path = odir / f"{version_id}.data"
                os.chmod(tmp, 0o444)
                os.replace(tmp, data_path)
                now = datetime.now(UTC)
                meta.versions.append(
                    _Version(
                        version_id=version_id,
                        size=size,
                        etag=etag,
                        content_type=content_type,
                        content_encoding=content_encoding,
                        metadata=metadata,
                        last_modified=now,
                    )
                )
                self._atomic_write(odir / "meta.json", meta.model_dump_json().encode())
                link_tmp = self._sys / "tmp" / f"{uuid.uuid4().hex}.link"
                try:
                    os.link(data_path, link_tmp)
                except OSError:
                    shutil.copyfile(data_path, link_tmp)
                os.replace(link_tmp, visible)
                info = self._info(bucket, key, meta.versions[-1])
                self._emit(cfg, info, event_name, ctx, now, content_encoding, reply_length)
                return info
        finally:
            tmp.unlink(missing_ok=True)

    def _emit(
        self,
        cfg: BucketConfig,
        info: ObjectInfo,
        event_name: str,
        ctx: RequestContext,
        at: datetime,
        content_encoding: str = "",
        reply_length: int | None = None,
    ) -> None:
        if not cfg.targets:
            return
        # MinIO's userMetadata is the object's stored metadata: content-type, content-encoding
        # and the X-Amz-Meta-* names (cmd/event-notification.go ToEvent).
        user_metadata = {"content-type": info.content_type} if info.content_type else {}
        if content_encoding:
            user_metadata["content-encoding"] = content_encoding
        for name, value in info.metadata.items():
            user_metadata[f"X-Amz-Meta-{_canonical_header(name)}"] = value
        stamp = f"{time.time_ns():X}"
        log = object_created(
            event_name=event_name,
            bucket=info.bucket,
            key=info.key,
            size=info.size,
            etag=info.etag,
            content_type=info.content_type,
            user_metadata=user_metadata,
            version_id=info.version_id,
            at=at,
            sequencer=stamp,
            request_id=stamp,
            principal=ctx.principal,
            source_host=ctx.source_host,
            user_agent=ctx.user_agent,
            region=self.region,
            deployment_id=self.deployment_id,
            origin_endpoint=self.origin_endpoint,
            amz_id_2=hashlib.sha256(self.deployment_id.encode()).hexdigest(),
            content_length="" if reply_length is None else str(reply_length),
        )
        self.notifier.emit(cfg.targets, event_name, info.key, render_body(log))

    def _info(self, bucket: str, key: str, v: _Version) -> ObjectInfo:
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=v.size,
            etag=v.etag,
            version_id=None if v.version_id == NULL_VERSION else v.version_id,
            content_type=v.content_type,
            metadata=dict(v.metadata),
            last_modified=v.last_modified,
        )

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | BinaryIO,
        *,
        length: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        context: RequestContext | None = None,
        content_encoding: str = "",
    ) -> ObjectInfo:
        validate_key(key)
        self._config(bucket)
        self._visible_path(bucket, key)
        meta = normalize_metadata(bucket, key, metadata)
        tmp, size, etag = self._spool(data, length)
        return self._commit(
            bucket, key, tmp, size, etag, content_type or DEFAULT_CONTENT_TYPE, meta,
            "s3:ObjectCreated:Put", context, content_encoding=content_encoding,
        )  # fmt: skip

    def _version(self, bucket: str, key: str, version_id: str | None) -> _Version:
        validate_key(key)
        self._config(bucket)
        meta = self._load_meta(bucket, key)
        if meta is None or not meta.versions:
            raise ObjectNotFound(bucket, key, "no such key")
        if version_id is None:
            return meta.versions[-1]
        for v in meta.versions:
            if v.version_id == version_id:
                return v
        raise ObjectNotFound(bucket, key, f"no version {version_id!r}")

    def data_path(
        self, bucket: str, key: str, *, version_id: str | None = None
    ) -> tuple[ObjectInfo, Path]:
        """The stored file of one version (read-only), for streaming it out."""
        with self._lock:
            v = self._version(bucket, key, version_id)
            return self._info(bucket, key, v), self._object_dir(
                bucket, key
            ) / f"{v.version_id}.data"

    def content_encoding(self, bucket: str, key: str, *, version_id: str | None = None) -> str:
        """The Content-Encoding header the version was stored with ("" for none)."""
        with self._lock:
            return self._version(bucket, key, version_id).content_encoding

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        _, path = self.data_path(bucket, key, version_id=version_id)
        return path.read_bytes()

    def stat(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        with self._lock:
            return self._info(bucket, key, self._version(bucket, key, version_id))

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.stat(bucket, key)
        except (ObjectNotFound, InvalidKey):
            return False
        return True

    def list_versions(self, bucket: str, key: str) -> list[ObjectInfo]:
        """Every version of one object, oldest first."""
        validate_key(key)
        self._config(bucket)
        meta = self._load_meta(bucket, key)
        return [self._info(bucket, key, v) for v in (meta.versions if meta else [])]

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Latest versions of the objects under ``prefix``, in key order."""
        self._config(bucket)
        base = self.root / bucket
        start = base
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder:
            start = base / folder
            try:
                validate_key(folder)
                self._inside(start)
            except InvalidKey:
                return
        if not start.is_dir():
            return
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(start):
            rel = Path(dirpath).relative_to(base).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            meta = self._load_meta(bucket, key)
            if meta and meta.versions:
                yield self._info(bucket, key, meta.versions[-1])

    # ---- multipart ---------------------------------------------------------------------
    def _upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, _Upload]:
        if not upload_id.isalnum():
            raise MultipartError(bucket, key, f"no such upload {upload_id[:40]!r}")
        folder = self._sys / "uploads" / upload_id
        meta_path = folder / "upload.json"
        if not meta_path.exists():
            raise MultipartError(bucket, key, f"no such upload {upload_id!r}")
        up = _Upload.model_validate_json(meta_path.read_bytes())
        if (up.bucket, up.key) != (bucket, key):
            raise MultipartError(bucket, key, f"upload {upload_id!r} belongs to another object")
        return folder, up

    def start_multipart(
        self,
        bucket: str,
        key: str,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        *,
        content_encoding: str = "",
    ) -> str:
        validate_key(key)
        self._config(bucket)
        self._visible_path(bucket, key)
        up = _Upload(
            bucket=bucket,
            key=key,
            content_type=content_type,
            content_encoding=content_encoding,
            metadata=normalize_metadata(bucket, key, metadata),
            initiated=datetime.now(UTC),
        )
        upload_id = uuid.uuid4().hex
        folder = self._sys / "uploads" / upload_id
        folder.mkdir()
        self._atomic_write(folder / "upload.json", up.model_dump_json().encode())
        return upload_id

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | BinaryIO,
        *,
        length: int | None = None,
    ) -> str:
        if not 1 <= part_number <= MAX_PARTS:
            raise MultipartError(bucket, key, f"part number {part_number} is not in 1..{MAX_PARTS}")
        folder, _ = self._upload(bucket, key, upload_id)
        tmp, size, etag = self._spool(data, length)
        with self._lock:
            self._upload(bucket, key, upload_id)  # not aborted meanwhile
            os.replace(tmp, folder / f"{part_number:05d}.part")
            info = PartInfo(part_number, etag, size)
            self._atomic_write(folder / f"{part_number:05d}.json", json.dumps(info).encode())
        return etag

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        folder, _ = self._upload(bucket, key, upload_id)
        parts = []
        for p in sorted(folder.glob("*.json")):
            if p.stem.isdigit():
                n, etag, size = json.loads(p.read_bytes())
                parts.append(PartInfo(int(n), str(etag), int(size)))
        return parts

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]] | list[PartInfo],
        *,
        context: RequestContext | None = None,
    ) -> ObjectInfo:
        folder, up = self._upload(bucket, key, upload_id)
        have = {p.part_number: p for p in self.list_parts(bucket, key, upload_id)}
        wanted = [(int(p[0]), str(p[1]).strip('"')) for p in parts]
        if not wanted:
            raise MultipartError(bucket, key, "no parts given")
        numbers = [n for n, _ in wanted]
        if numbers != sorted(set(numbers)):
            raise MultipartError(bucket, key, "parts must be in ascending order, without repeats")
        for i, (n, etag) in enumerate(wanted):
            got = have.get(n)
            if got is None or got.etag != etag:
                raise MultipartError(bucket, key, f"part {n} was not uploaded with etag {etag}")
            if i < len(wanted) - 1 and got.size < self.min_part_size:
                raise MultipartError(
                    bucket, key, f"part {n} is {got.size} bytes, under {self.min_part_size}"
                )
        tmp = self._sys / "tmp" / f"{uuid.uuid4().hex}.data"
        digests = b""
        size = 0
        with open(tmp, "wb") as out:
            for n, _ in wanted:
                with open(folder / f"{n:05d}.part", "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
                digests += bytes.fromhex(have[n].etag)
                size += have[n].size
            out.flush()
            os.fsync(out.fileno())
        # S3's multipart etag: md5 of the concatenated part digests, then "-<number of parts>".
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(wanted)}"
        reply = complete_multipart_reply(bucket, key, etag, context or RequestContext())
        info = self._commit(
            bucket,
            key,
            tmp,
            size,
            etag,
            up.content_type,
            up.metadata,
            "s3:ObjectCreated:CompleteMultipartUpload",
            context,
            content_encoding=up.content_encoding,
            reply_length=len(reply),
        )
        shutil.rmtree(folder, ignore_errors=True)
        return info

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        folder, _ = self._upload(bucket, key, upload_id)
        with self._lock:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the delivery threads; queued events stay on disk for the next start."""
        self.notifier.close()

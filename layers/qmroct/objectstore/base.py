"""One interface over the object stores qmroct talks to: the local folder store (embedded
default) and MinIO/S3. Both hand out presigned single-object URLs, so measure actions read and
write over HTTP and never hold credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import BinaryIO, NamedTuple, Protocol

from pydantic import BaseModel, Field


class ObjectInfo(BaseModel):
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = Field(default_factory=dict)
    last_modified: datetime | None = None


class NotificationTarget(BaseModel):
    """Where a bucket's events go (MinIO's webhook target, or the local store's equivalent)."""

    arn: str
    endpoint: str = ""
    auth_token: str = ""
    events: list[str] = Field(default_factory=lambda: ["s3:ObjectCreated:*"])
    prefix: str = ""
    suffix: str = ""


class ObjectStore(Protocol):
    def ensure_bucket(self, bucket: str, *, versioning: bool = True) -> None: ...

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | BinaryIO,
        *,
        length: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes: ...

    def stat(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo: ...

    def exists(self, bucket: str, key: str) -> bool: ...

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def presign_get(
        self,
        bucket: str,
        key: str,
        *,
        expires: timedelta = timedelta(hours=1),
        version_id: str | None = None,
    ) -> str: ...

    def presign_put(
        self,
        bucket: str,
        key: str,
        *,
        expires: timedelta = timedelta(hours=1),
        content_type: str = "application/octet-stream",
    ) -> str: ...


class PartInfo(NamedTuple):
    """One uploaded part of a multipart upload (a plain tuple: number, etag, size)."""

    part_number: int
    etag: str
    size: int


class MultipartStore(Protocol):
    """Optional capability: resumable multipart uploads (S3 semantics, parts of >= 5 MiB
    except the last, at most 10000 parts). ``list_parts`` tells a resuming client what is
    already there."""

    def start_multipart(
        self, bucket: str, key: str, content_type: str, metadata: dict[str, str] | None
    ) -> str: ...

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes
    ) -> str: ...

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]: ...

    def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo: ...

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None: ...

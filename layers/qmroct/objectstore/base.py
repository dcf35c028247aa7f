"""One interface over the object stores qmroct talks to: the local folder store (embedded
default) and MinIO/S3. Both hand out presigned single-object URLs, so measure actions read and
write over HTTP and never hold credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol

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

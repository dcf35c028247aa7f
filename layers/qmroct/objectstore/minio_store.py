"""MinIO (or any S3 server) behind the :class:`~qmroct.objectstore.base.ObjectStore` interface.

Every ``minio`` call passes keyword arguments: the next major version of the client makes
them keyword-only. Bucket notifications use MinIO's webhook ARNs
(``arn:minio:sqs::<ID>:webhook``); the target itself is server configuration (see
``infra/minio``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from typing import BinaryIO

from minio import Minio
from minio.commonconfig import ENABLED
from minio.datatypes import Part
from minio.error import S3Error
from minio.notificationconfig import (
    NotificationConfig,
    PrefixFilterRule,
    QueueConfig,
    SuffixFilterRule,
)
from minio.versioningconfig import SUSPENDED, VersioningConfig

from qmroct.errors import InvalidKey
from qmroct.objectstore.base import NotificationTarget, ObjectInfo, PartInfo
from qmroct.objectstore.errors import (
    AccessDenied,
    BucketNotFound,
    MultipartError,
    ObjectNotFound,
    StoreError,
)
from qmroct.objectstore.keys import validate_bucket, validate_key
from qmroct.objectstore.signing import MAX_EXPIRY

PART_SIZE = 16 * 1024 * 1024
META_PREFIX = "x-amz-meta-"
# Metadata names the minio client sends as headers of their own, not as x-amz-meta-*
# (minio/helpers.py normalize_headers): a stat returns them as headers, not user metadata.
_STANDARD_HEADERS = {
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
}


def _error(exc: S3Error, bucket: str, key: str) -> StoreError:
    reason = f"{exc.code}: {exc.message}"
    if exc.code in ("NoSuchKey", "NoSuchVersion"):
        return ObjectNotFound(bucket, key, reason)
    if exc.code == "NoSuchBucket":
        return BucketNotFound(bucket, key, reason)
    if exc.code in ("NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
        return MultipartError(bucket, key, reason)
    if exc.code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
        return AccessDenied(bucket, key, reason)
    return StoreError(bucket, key, reason)


def _user_metadata(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {k.lower()[len(META_PREFIX) :]: v for k, v in items if k.lower().startswith(META_PREFIX)}


def _check_expiry(expires: timedelta) -> None:
    if expires > MAX_EXPIRY or expires.total_seconds() < 1:
        raise ValueError(f"expiry must be between 1 s and 7 days, got {expires}")


class MinioStore:
    """ObjectStore and MultipartStore over the ``minio`` client."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        client: Minio | None = None,
    ) -> None:
        # The endpoint may be given as a URL; the client wants host[:port].
        host = endpoint.split("://", 1)[-1].rstrip("/")
        if endpoint.startswith("https://"):
            secure = True
        self.region = region
        # Content type and metadata of the multipart uploads this client started, for the
        # ObjectInfo their completion returns (a completion's reply carries neither).
        self._started: dict[str, tuple[str, dict[str, str]]] = {}
        self.client = client or Minio(
            endpoint=host,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
        )

    # ---- buckets -----------------------------------------------------------------------
    def ensure_bucket(self, bucket: str, *, versioning: bool = True) -> None:
        validate_bucket(bucket)
        try:
            if not self.client.bucket_exists(bucket_name=bucket):
                self.client.make_bucket(bucket_name=bucket, location=self.region)
            if versioning:
                self.set_versioning(bucket, True)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou",):
                raise _error(exc, bucket, "") from exc

    def set_versioning(self, bucket: str, enabled: bool) -> None:
        try:
            self.client.set_bucket_versioning(
                bucket_name=bucket, config=VersioningConfig(ENABLED if enabled else SUSPENDED)
            )
        except S3Error as exc:
            raise _error(exc, bucket, "") from exc

    def versioning_enabled(self, bucket: str) -> bool:
        return self.client.get_bucket_versioning(bucket_name=bucket).status == ENABLED

    def set_notification(self, bucket: str, targets: list[NotificationTarget]) -> None:
        """PutBucketNotification with one queue configuration per target (its ARN must be a
        webhook target configured on the server: ``arn:minio:sqs::<ID>:webhook``)."""
        config = NotificationConfig(queue_config_list=[queue_config(t) for t in targets])
        try:
            self.client.set_bucket_notification(bucket_name=bucket, config=config)
        except S3Error as exc:
            raise _error(exc, bucket, "") from exc

    def get_notification(self, bucket: str) -> list[NotificationTarget]:
        config = self.client.get_bucket_notification(bucket_name=bucket)
        out = []
        for q in config.queue_config_list:
            out.append(
                NotificationTarget(
                    arn=q.queue or "",
                    events=list(q.events),
                    prefix=q.prefix_filter_rule.value if q.prefix_filter_rule else "",
                    suffix=q.suffix_filter_rule.value if q.suffix_filter_rule else "",
                )
            )
        return out

    # ---- objects -----------------------------------------------------------------------
    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | BinaryIO,
        *,
        length: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """PUT one object; payloads over 16 MiB (or of unknown length) go multipart.

        The answer is built from the PUT's own reply, not read back with a HEAD: MinIO
        authorises a HEAD as ``s3:GetObject``, which an upload-only role does not hold, so a
        read-back would report a stored upload as failed.
        """
        validate_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            length = len(data)
            data = io.BytesIO(bytes(data))
        counted = _Counting(data)
        meta = dict(metadata or {})
        try:
            result = self.client.put_object(
                bucket_name=bucket,
                object_name=key,
                data=counted,
                length=-1 if length is None else length,
                content_type=content_type,
                metadata=meta,
                part_size=PART_SIZE,
            )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc
        return _written(result, content_type, meta, counted.count)

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        validate_key(key)
        try:
            resp = self.client.get_object(
                bucket_name=bucket, object_name=key, version_id=version_id
            )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def stat(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        validate_key(key)
        try:
            st = self.client.stat_object(bucket_name=bucket, object_name=key, version_id=version_id)
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=st.size or 0,
            etag=(st.etag or "").strip('"'),
            version_id=st.version_id if st.version_id not in (None, "null") else None,
            content_type=st.content_type or "application/octet-stream",
            metadata=_user_metadata(st.metadata),
            last_modified=st.last_modified,
        )

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.stat(bucket, key)
        except (ObjectNotFound, InvalidKey):
            return False
        return True

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            for obj in self.client.list_objects(bucket_name=bucket, prefix=prefix, recursive=True):
                yield ObjectInfo(
                    bucket=bucket,
                    key=obj.object_name or "",
                    size=obj.size or 0,
                    etag=(obj.etag or "").strip('"'),
                    version_id=obj.version_id if obj.version_id not in (None, "null") else None,
                    content_type=obj.content_type or "application/octet-stream",
                    last_modified=obj.last_modified,
                )
        except S3Error as exc:
            raise _error(exc, bucket, prefix) from exc

    def list_versions(self, bucket: str, key: str) -> list[ObjectInfo]:
        """Every version of one object, oldest first."""
        validate_key(key)
        out = []
        try:
            for obj in self.client.list_objects(
                bucket_name=bucket, prefix=key, recursive=True, include_version=True
            ):
                if obj.object_name != key or obj.is_delete_marker:
                    continue
                out.append(
                    ObjectInfo(
                        bucket=bucket,
                        key=key,
                        size=obj.size or 0,
                        etag=(obj.etag or "").strip('"'),
                        version_id=obj.version_id,
                        last_modified=obj.last_modified,
                    )
                )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc
        out.reverse()  # S3 lists the versions of a key newest first
        return out

    # ---- presigned URLs ----------------------------------------------------------------
    def presign_get(
        self,
        bucket: str,
        key: str,
        *,
        expires: timedelta = timedelta(hours=1),
        version_id: str | None = None,
    ) -> str:
        validate_key(key)
        _check_expiry(expires)
        return self.client.presigned_get_object(
            bucket_name=bucket, object_name=key, expires=expires, version_id=version_id
        )

    def presign_put(
        self,
        bucket: str,
        key: str,
        *,
        expires: timedelta = timedelta(hours=1),
        content_type: str = "application/octet-stream",
    ) -> str:
        """A PUT URL. S3 presigned PUTs do not sign the content type, so the uploader must
        still send one (moto stores an empty body without it)."""
        validate_key(key)
        _check_expiry(expires)
        return self.client.presigned_put_object(
            bucket_name=bucket, object_name=key, expires=expires
        )

    # ---- multipart (the client's S3 calls, for resumable uploads) ----------------------
    def start_multipart(
        self,
        bucket: str,
        key: str,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> str:
        validate_key(key)
        headers: dict[str, str | list[str] | tuple[str]] = {"Content-Type": content_type}
        for name, value in (metadata or {}).items():
            headers[f"{META_PREFIX}{name}"] = value
        try:
            upload_id = self.client._create_multipart_upload(
                bucket_name=bucket, object_name=key, headers=headers
            )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc
        self._started[upload_id] = (content_type, dict(metadata or {}))
        return upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes
    ) -> str:
        try:
            return self.client._upload_part(
                bucket_name=bucket,
                object_name=key,
                data=bytes(data),
                headers=None,
                upload_id=upload_id,
                part_number=part_number,
            )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        parts: list[PartInfo] = []
        marker: str | None = None
        try:
            while True:
                result = self.client._list_parts(
                    bucket_name=bucket,
                    object_name=key,
                    upload_id=upload_id,
                    part_number_marker=marker,
                )
                parts += [PartInfo(p.part_number, p.etag, p.size or 0) for p in result.parts]
                if not result.is_truncated:
                    return parts
                marker = result.next_part_number_marker
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]] | list[PartInfo],
    ) -> ObjectInfo:
        # The size comes from the part listing (s3:ListMultipartUploadParts, which an uploader
        # holds), not from a HEAD after completion (s3:GetObject, which it may not; see put).
        chosen = {int(p[0]) for p in parts}
        size = sum(
            p.size for p in self.list_parts(bucket, key, upload_id) if p.part_number in chosen
        )
        try:
            result = self.client._complete_multipart_upload(
                bucket_name=bucket,
                object_name=key,
                upload_id=upload_id,
                parts=[Part(part_number=int(p[0]), etag=str(p[1]).strip('"')) for p in parts],
            )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc
        # An upload resumed by another process has no record here: then the type and metadata
        # are unknown to the caller (the object has them; a stat shows them).
        content_type, metadata = self._started.pop(upload_id, ("", {}))
        return _written(result, content_type, metadata, size)

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self._started.pop(upload_id, None)
        try:
            self.client._abort_multipart_upload(
                bucket_name=bucket, object_name=key, upload_id=upload_id
            )
        except S3Error as exc:
            raise _error(exc, bucket, key) from exc


class _Counting(io.RawIOBase):
    """A reader that counts the bytes read through it (the size of a streamed PUT)."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner, self.count = inner, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.inner.read(size)
        self.count += len(chunk)
        return chunk


def _written(result: object, content_type: str, metadata: dict[str, str], size: int) -> ObjectInfo:
    """The ObjectInfo of a write, from the server's reply (``ObjectWriteResult``)."""
    version = getattr(result, "version_id", None)
    return ObjectInfo(
        bucket=getattr(result, "bucket_name", ""),
        key=getattr(result, "object_name", ""),
        size=size,
        etag=(getattr(result, "etag", "") or "").strip('"'),
        version_id=version if version not in (None, "null") else None,
        content_type=content_type or "application/octet-stream",
        metadata={
            k.lower().removeprefix(META_PREFIX): v
            for k, v in metadata.items()
            if k.lower() not in _STANDARD_HEADERS
        },
        last_modified=getattr(result, "last_modified", None),
    )


def queue_config(target: NotificationTarget) -> QueueConfig:
    """The QueueConfig MinIO expects for one webhook target, with prefix/suffix rules."""
    return QueueConfig(
        queue=target.arn,
        events=list(target.events),
        config_id=None,
        prefix_filter_rule=PrefixFilterRule(target.prefix) if target.prefix else None,
        suffix_filter_rule=SuffixFilterRule(target.suffix) if target.suffix else None,
    )

"""Typed object-store errors: each names the bucket and key and says why."""

from __future__ import annotations

from qmroct.errors import QmroctError


class StoreError(QmroctError):
    """An object-store call failed. ``bucket``/``key`` name the object, ``reason`` says why."""

    def __init__(self, bucket: str, key: str, reason: str) -> None:
        self.bucket = bucket
        self.key = key
        self.reason = reason
        where = f"{bucket}/{key}" if key else bucket
        super().__init__(f"{where}: {reason}")


class BucketNotFound(StoreError):
    """The bucket does not exist."""


class ObjectNotFound(StoreError):
    """No such object (or no such version of it)."""


class KeyConflict(StoreError):
    """A folder store cannot hold both ``a`` and ``a/b``: one would be a file and a folder."""


class MultipartError(StoreError):
    """A multipart upload is unknown, or its parts do not match what was uploaded."""


class AccessDenied(StoreError):
    """The server refused the credentials, the signature or an expired presigned URL."""

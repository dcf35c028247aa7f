"""Object stores: the local folder store (embedded) and MinIO/S3 behind one interface."""

from __future__ import annotations

from typing import Any

from qmroct.errors import ConfigError
from qmroct.objectstore.base import MultipartStore, ObjectInfo, ObjectStore, PartInfo

__all__ = ["MultipartStore", "ObjectInfo", "ObjectStore", "PartInfo", "open_store"]


def open_store(
    kind: str, endpoint: str, access_key: str, secret_key: str, **kw: Any
) -> ObjectStore:
    """Open a client: ``"local"`` (the folder store's HTTP API) or ``"minio"`` (any S3).

    Extra keywords go to :class:`~qmroct.objectstore.minio_store.MinioStore` (``secure``,
    ``region``). Imports are lazy so an action loads only the client it uses.
    """
    if kind == "local":
        from qmroct.objectstore.local import LocalStoreClient

        if kw:
            raise ConfigError(f"the local store takes no options, got {sorted(kw)}")
        return LocalStoreClient(endpoint, access_key, secret_key)
    if kind == "minio":
        from qmroct.objectstore.minio_store import MinioStore

        return MinioStore(endpoint, access_key, secret_key, **kw)
    raise ConfigError(f"unknown object store kind {kind!r} (expected 'local' or 'minio')")

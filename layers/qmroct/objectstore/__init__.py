"""Object stores: the local folder store (embedded) and MinIO/S3 behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qmroct.errors import ConfigError
from qmroct.objectstore.base import MultipartStore, ObjectInfo, ObjectStore, PartInfo

if TYPE_CHECKING:  # the settings stay out of the measure actions' start-up (qmroct.limits)
    from qmroct.config import Settings

__all__ = [
    "MultipartStore",
    "ObjectInfo",
    "ObjectStore",
    "PartInfo",
    "open_store",
    "store_from_settings",
]


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


def store_from_settings(settings: Settings, role: str | None = None) -> ObjectStore:
    """The store the configuration names.

    For the local store with no endpoint configured, the one a running ``qmroct up`` announced
    in ``QMROCT_HOME/stack.json`` is used, so commands on the same machine need no setup; with
    ``role`` (``gateway``, ``measure-developer``, ...), with that role's keys, so the command
    holds the same rights as on MinIO. Configured keys (``QMROCT_STORE_ACCESS_KEY``) are used
    as they are: on MinIO they are the role's.
    """
    if settings.store == "local" and not settings.store_endpoint:
        import json

        info = settings.home / "stack.json"
        if not info.is_file():
            raise ConfigError(
                f"no object store configured and no running stack found ({info} is missing): "
                "start one with `qmroct up`, or set QMROCT_STORE=minio and QMROCT_STORE_ENDPOINT"
            )
        s = json.loads(info.read_text())
        keys = s.get("roles", {}).get(role or "", {})
        return open_store(
            "local",
            s["store_endpoint"],
            keys.get("access_key", s["store_access_key"]),
            keys.get("secret_key", s["store_secret_key"]),
        )
    kw: dict[str, Any] = {}
    if settings.store == "minio":
        kw = {"secure": settings.store_secure, "region": settings.store_region}
    return open_store(
        settings.store,
        settings.store_endpoint,
        settings.store_access_key,
        settings.store_secret_key,
        **kw,
    )

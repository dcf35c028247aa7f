"""Test doubles for the orchestration: an in-memory object store and an OpenWhisk client that
records invocations. Both are plain fakes for unit tests; the real ones run end to end."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from qmroct.events import object_created
from qmroct.objectstore.base import ObjectInfo
from qmroct.objectstore.errors import ObjectNotFound


class FakeThrottled(Exception):
    """Stands for the OpenWhisk client's 429 error in these unit tests."""


class MemoryStore:
    """A dict-backed object store whose presigned URLs are recognisable strings."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {}

    def ensure_bucket(self, bucket: str, *, versioning: bool = True) -> None:
        pass

    def put(self, bucket, key, data, *, length=None, content_type="", metadata=None) -> ObjectInfo:
        body = data if isinstance(data, bytes) else data.read()
        self.objects[(bucket, key)] = (body, dict(metadata or {}))
        return self.stat(bucket, key)

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        if (bucket, key) not in self.objects:
            raise ObjectNotFound(bucket, key, "NoSuchKey: the specified key does not exist")
        return self.objects[(bucket, key)][0]

    def stat(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        body, meta = self.objects[(bucket, key)]
        return ObjectInfo(bucket=bucket, key=key, size=len(body), etag="e", metadata=meta)

    def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.objects

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        for b, k in sorted(self.objects):
            if b == bucket and k.startswith(prefix):
                yield self.stat(b, k)

    def presign_get(self, bucket, key, *, expires=timedelta(hours=1), version_id=None) -> str:
        return f"http://store/{bucket}/{key}?op=get"

    def presign_put(self, bucket, key, *, expires=timedelta(hours=1), content_type="") -> str:
        return f"http://store/{bucket}/{key}?op=put&type={content_type}"


def _filter_name(record: dict[str, Any]) -> str:
    path = next((a["value"] for a in record.get("annotations", []) if a["key"] == "path"), "")
    parts = path.split("/")
    return f"{parts[1]}/{record['name']}" if len(parts) == 3 else record["name"]


class RecordingInvoker:
    """Records non-blocking invokes; throttles once ``budget`` invokes of run-* are used."""

    def __init__(self, budget: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.budget = budget
        self.records: list[dict[str, Any]] = []
        self.looked_up: list[str] = []
        self.listed = 0
        self._ids = itertools.count(1)

    def invoke(self, name: str, params: dict[str, Any], *, blocking: bool = False) -> dict:
        assert blocking is False
        runs = sum(1 for n, _ in self.calls if "/run-" in n)
        if "/run-" in name and self.budget is not None and runs >= self.budget:
            raise FakeThrottled("Too many concurrent requests in flight (count: 2, allowed: 2)")
        self.calls.append((name, params))
        return {"activationId": f"act{next(self._ids):04d}"}

    def activations(self, *, name=None, since=None, limit=200) -> list[dict[str, Any]]:
        """Filtered as the real API filters: ``pkg/name`` for a packaged action's records."""
        self.listed += 1
        return [r for r in self.records if name is None or _filter_name(r) == name][:limit]

    def activation(self, activation_id: str) -> dict[str, Any]:
        """The record by id; the real client's NotFound (a 404) while none is stored."""
        from qmroct.clients.openwhisk import NotFound

        self.looked_up.append(activation_id)
        for r in self.records:
            if r["activationId"] == activation_id:
                return r
        raise NotFound(
            f"get activation {activation_id}", 404, "The requested resource does not exist."
        )

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        return [(n, p) for n, p in self.calls if "/run-" in n]


def stored_event(key: str, data: bytes, *, with_hash: bool = True, event: str = "Put") -> dict:
    """The body MinIO sends when ``data`` is stored under oct-ingest/``key``."""
    meta = {"sha256": hashlib.sha256(data).hexdigest()} if with_hash else {}
    log = object_created(
        event_name=f"s3:ObjectCreated:{event}",
        bucket="oct-ingest",
        key=key,
        size=len(data),
        etag=hashlib.md5(data).hexdigest(),
        content_type="application/octet-stream",
        user_metadata=meta,
        version_id="v1",
        at=datetime.now(UTC),
        sequencer="1",
        request_id="r",
        principal="gateway",
        source_host="127.0.0.1",
        user_agent="test",
    )
    return log.model_dump(by_alias=True)


def measures_event(key: str) -> dict:
    log = object_created(
        event_name="s3:ObjectCreated:Put",
        bucket="oct-measures",
        key=key,
        size=1,
        etag="e",
        content_type="application/json",
        user_metadata={},
        version_id="",
        at=datetime.now(UTC),
        sequencer="1",
        request_id="r",
        principal="dev",
        source_host="127.0.0.1",
        user_agent="test",
    )
    return log.model_dump(by_alias=True)

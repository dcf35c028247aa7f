"""MinioStore against moto in server mode (real S3 over HTTP)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from minio.notificationconfig import NotificationConfig
from qmroct.objectstore import open_store
from qmroct.objectstore.base import NotificationTarget
from qmroct.objectstore.errors import MultipartError, ObjectNotFound
from qmroct.objectstore.minio_store import MinioStore, queue_config
from qmroct.objectstore.transfer import download, upload

KEY = "p1/s 01/ses+1/scan é%.vol"


@pytest.fixture
def s3(moto_endpoint: str) -> tuple[MinioStore, str]:
    store = open_store("minio", moto_endpoint, "testing", "testing", region="us-east-1")
    assert isinstance(store, MinioStore)
    bucket = f"oct-ingest-{uuid.uuid4().hex[:8]}"
    store.ensure_bucket(bucket)
    return store, bucket


def test_put_get_stat_list(s3) -> None:
    store, bucket = s3
    info = store.put(
        bucket, KEY, b"hello", content_type="application/x-vol", metadata={"site": "A"}
    )
    assert info.etag == "5d41402abc4b2a76b9719d911017c592"
    assert info.content_type == "application/x-vol"
    assert info.metadata == {"site": "A"}
    assert store.get(bucket, KEY) == b"hello"
    assert [i.key for i in store.list(bucket, "p1/")] == [KEY]
    assert store.exists(bucket, KEY) and not store.exists(bucket, "nope")
    with pytest.raises(ObjectNotFound):
        store.get(bucket, "nope")


def test_versioning_keeps_every_version(s3) -> None:
    store, bucket = s3
    assert store.versioning_enabled(bucket)
    a = store.put(bucket, KEY, b"one")
    b = store.put(bucket, KEY, b"two")
    assert a.version_id and b.version_id and a.version_id != b.version_id
    assert store.get(bucket, KEY) == b"two"
    assert store.get(bucket, KEY, version_id=a.version_id) == b"one"
    assert {v.version_id for v in store.list_versions(bucket, KEY)} == {a.version_id, b.version_id}


def test_presigned_get_and_put(s3) -> None:
    store, bucket = s3
    v1 = store.put(bucket, KEY, b"first")
    store.put(bucket, KEY, b"second")
    assert download(store.presign_get(bucket, KEY), max_bytes=100) == b"second"
    old = store.presign_get(bucket, KEY, version_id=v1.version_id)
    assert download(old, max_bytes=100) == b"first"
    url = store.presign_put(bucket, "ab/signal/1/picture.png", content_type="image/png")
    upload(url, b"\x89PNG-data", content_type="image/png")  # explicit Content-Type
    assert store.get(bucket, "ab/signal/1/picture.png") == b"\x89PNG-data"
    # moto does not check presigned signatures; check the URL's scope instead.
    assert f"/{bucket}/ab/signal/1/picture.png?" in url and "X-Amz-Expires=3600" in url
    week = store.presign_get(bucket, KEY, expires=timedelta(days=7))
    assert "X-Amz-Expires=604800" in week
    with pytest.raises(ValueError):
        store.presign_get(bucket, KEY, expires=timedelta(days=8))


def test_big_payload_goes_multipart(s3) -> None:
    store, bucket = s3
    data = bytes(range(256)) * (17 * 4096)  # 17 MiB > one 16 MiB part
    info = store.put(bucket, "big.vol", data)
    assert info.etag.endswith("-2") and info.size == len(data)
    assert store.get(bucket, "big.vol") == data


def test_resumable_multipart(s3) -> None:
    store, bucket = s3
    uid = store.start_multipart(bucket, "m.vol", "application/octet-stream", {"a": "1"})
    p1 = b"a" * (5 * 1024 * 1024)
    e1 = store.upload_part(bucket, "m.vol", uid, 1, p1)
    assert [(p.part_number, p.etag, p.size) for p in store.list_parts(bucket, "m.vol", uid)] == [
        (1, e1, len(p1))
    ]
    e2 = store.upload_part(bucket, "m.vol", uid, 2, b"tail")
    info = store.complete_multipart(bucket, "m.vol", uid, [(1, e1), (2, e2)])
    assert info.etag.endswith("-2") and info.metadata == {"a": "1"}
    assert store.get(bucket, "m.vol") == p1 + b"tail"
    uid2 = store.start_multipart(bucket, "x.vol", "a/b", None)
    store.abort_multipart(bucket, "x.vol", uid2)
    with pytest.raises(MultipartError):
        store.list_parts(bucket, "x.vol", uid2)


def test_bucket_notification_round_trip(s3) -> None:
    store, bucket = s3
    # moto accepts only AWS-style queue ARNs; MinIO's are checked through the XML below.
    target = NotificationTarget(
        arn="arn:aws:sqs:us-east-1:123456789012:qmroct",
        events=["s3:ObjectCreated:*"],
        prefix="p1/",
        suffix=".vol",
    )
    store.set_notification(bucket, [target])
    (got,) = store.get_notification(bucket)
    assert (got.arn, got.prefix, got.suffix, got.events) == (
        target.arn,
        "p1/",
        ".vol",
        ["s3:ObjectCreated:*"],
    )


def test_minio_webhook_queue_config_xml() -> None:
    target = NotificationTarget(
        arn="arn:minio:sqs::QMROCT:webhook", events=["s3:ObjectCreated:*"], suffix=".vol"
    )
    xml = NotificationConfig(queue_config_list=[queue_config(target)]).toxml(None)
    text = ET.tostring(xml).decode()
    assert "<Queue>arn:minio:sqs::QMROCT:webhook</Queue>" in text
    assert "<Event>s3:ObjectCreated:*</Event>" in text
    assert "<Name>suffix</Name><Value>.vol</Value>" in text
    assert "prefix" not in text

"""One content model in both stores: Content-Encoding is a real header, get() gives the same
bytes from MinIO (moto) and from the embedded store, and events carry what MinIO's carry."""

from __future__ import annotations

import gzip
import json
import uuid

import pytest
from objectstore_support import wait_for
from qmroct.localstore.store import (
    DEFAULT_CONTENT_TYPE,
    RequestContext,
    complete_multipart_reply,
)
from qmroct.objectstore import open_store
from qmroct.objectstore.base import NotificationTarget

RAW = b"OCT scan bytes " * 4000


@pytest.fixture(params=["moto", "local"])
def any_store(request, moto_endpoint, served):  # noqa: ANN001, ANN201
    if request.param == "moto":
        store = open_store("minio", moto_endpoint, "testing", "testing")
        bucket = f"content-{uuid.uuid4().hex[:8]}"
    else:
        store, bucket = served[1], "content"
    store.ensure_bucket(bucket)
    return store, bucket


def test_gzip_upload_reads_back_as_the_same_bytes_in_both_stores(any_store) -> None:  # noqa: ANN001
    store, bucket = any_store
    body = gzip.compress(RAW)
    store.put(bucket, "p/s/ses/a.vol", body, metadata={"Content-Encoding": "gzip", "sha": "1"})
    # Both clients inflate a body served with Content-Encoding: gzip (urllib3 / requests).
    assert store.get(bucket, "p/s/ses/a.vol") == RAW
    info = store.stat(bucket, "p/s/ses/a.vol")
    assert info.size == len(body)  # the stored size is the encoded one, as in S3
    assert info.metadata == {"sha": "1"}  # a header, not user metadata
    plain = store.put(bucket, "p/s/ses/b.vol", RAW)
    assert store.get(bucket, "p/s/ses/b.vol") == RAW and plain.size == len(RAW)


def _subscribe(store, receiver) -> None:  # noqa: ANN001
    store.ensure_bucket("oct-ingest")
    target = NotificationTarget(arn="arn:minio:sqs::Q:webhook", endpoint=receiver.url)
    store.set_notification("oct-ingest", [target])


def test_events_carry_content_encoding_default_type_and_multipart_reply_length(
    local_store,
    receiver,  # noqa: ANN001
) -> None:
    _subscribe(local_store, receiver)
    local_store.put("oct-ingest", "p/a.vol", b"x", content_type="", content_encoding="gzip")
    ctx = RequestContext(host="127.0.0.1:9000")
    uid = local_store.start_multipart("oct-ingest", "p/b & <c>.vol", "application/octet-stream")
    etag = local_store.upload_part("oct-ingest", "p/b & <c>.vol", uid, 1, b"part")
    done = local_store.complete_multipart(
        "oct-ingest", "p/b & <c>.vol", uid, [(1, etag)], context=ctx
    )
    wait_for(lambda: len(receiver.delivered()) == 2, what="two deliveries")
    put_rec, mp_rec = (json.loads(b)["Records"][0] for b in receiver.delivered())
    # MinIO's default type when none is sent (cmd/handler-utils.go), and the stored encoding
    # in userMetadata; a PUT's reply is empty, so no content-length.
    assert put_rec["s3"]["object"]["contentType"] == DEFAULT_CONTENT_TYPE
    assert put_rec["s3"]["object"]["userMetadata"] == {
        "content-type": DEFAULT_CONTENT_TYPE,
        "content-encoding": "gzip",
    }
    assert "content-length" not in put_rec["responseElements"]
    reply = complete_multipart_reply("oct-ingest", "p/b & <c>.vol", done.etag, ctx)
    assert mp_rec["responseElements"]["content-length"] == str(len(reply))
    assert reply.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult'
    )
    assert (
        b"<Location>http://127.0.0.1:9000/oct-ingest/p/b%20&amp;%20%3Cc%3E.vol</Location>" in reply
    )
    assert f"<ETag>&#34;{done.etag}&#34;</ETag>".encode() in reply

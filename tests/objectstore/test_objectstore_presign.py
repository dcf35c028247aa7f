"""The local store over HTTP: presigned URL scope, expiry and tampering; the signed API."""

from __future__ import annotations

import http.client
import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from qmroct.objectstore import open_store
from qmroct.objectstore.errors import AccessDenied, KeyConflict, ObjectNotFound
from qmroct.objectstore.local import LocalStoreClient
from qmroct.objectstore.signing import presign
from qmroct.objectstore.transfer import TransferError, download, upload

KEY = "p1/s 01/ses+1/scan é%.vol"


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


def _code(resp: requests.Response) -> str:
    assert resp.headers["Content-Type"] == "application/xml"
    return resp.text.split("<Code>")[1].split("</Code>")[0]


@pytest.fixture
def seeded(served):
    srv, client = served
    client.ensure_bucket("oct-ingest")
    client.ensure_bucket("oct-results")
    v1 = client.put("oct-ingest", KEY, b"version one")
    v2 = client.put("oct-ingest", KEY, b"version two")
    return srv, client, v1, v2


def test_presigned_get_reads_one_object_and_version(seeded) -> None:
    srv, client, v1, v2 = seeded
    assert download(client.presign_get("oct-ingest", KEY), max_bytes=100) == b"version two"
    old = client.presign_get("oct-ingest", KEY, version_id=v1.version_id)
    assert download(old, max_bytes=100) == b"version one"


def test_presigned_get_is_scoped(seeded) -> None:
    srv, client, v1, _ = seeded
    url = client.presign_get("oct-ingest", KEY)
    other_key = url.replace("scan%20%C3%A9%25.vol", "other.vol")
    assert requests.get(other_key).status_code == 403
    other_bucket = url.replace("/oct-ingest/", "/oct-results/")
    assert requests.get(other_bucket).status_code == 403
    assert requests.put(url, data=b"x", headers={"Content-Type": "a/b"}).status_code == 403
    swapped = _with_query(url, versionId=v1.version_id)
    assert _code(requests.get(swapped)) == "SignatureDoesNotMatch"
    assert client.get("oct-ingest", KEY) == b"version two"


def test_tampered_signature_or_expiry_is_refused(seeded) -> None:
    _, client, _, _ = seeded
    url = client.presign_get("oct-ingest", KEY)
    sig = dict(parse_qsl(urlsplit(url).query))["X-Qmroct-Signature"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert _code(requests.get(_with_query(url, **{"X-Qmroct-Signature": flipped}))) == (
        "SignatureDoesNotMatch"
    )
    assert requests.get(_with_query(url, **{"X-Qmroct-Expires": "7200"})).status_code == 403
    assert requests.get(url.split("?")[0]).status_code == 403  # no anonymous access


def test_expired_and_over_seven_days_are_refused(seeded) -> None:
    srv, client, _, _ = seeded
    expired = presign(
        srv.endpoint,
        srv.access_key,
        client._secret,
        "GET",
        "oct-ingest",
        KEY,
        expires=timedelta(hours=1),
        now=time.time() - 7200,
    )
    resp = requests.get(expired)
    assert resp.status_code == 403 and _code(resp) == "AccessDenied"
    assert "expired" in resp.text
    with pytest.raises(ValueError):
        client.presign_get("oct-ingest", KEY, expires=timedelta(days=7, seconds=1))
    # Even a correctly signed URL cannot grant more than seven days.
    from qmroct.objectstore import signing

    date = int(time.time())
    seconds = 8 * 24 * 3600
    sig = signing._hmac(
        client._secret,
        signing._presign_string("GET", "oct-ingest", KEY, "", "", srv.access_key, date, seconds),
    )
    q = {
        signing.Q_ALG: signing.ALGORITHM,
        signing.Q_CRED: srv.access_key,
        signing.Q_DATE: str(date),
        signing.Q_EXPIRES: str(seconds),
        signing.Q_SIG: sig,
    }
    long_url = expired.split("?")[0] + "?" + urlencode(q)
    resp = requests.get(long_url)
    assert resp.status_code == 403 and "7 days" in resp.text
    with pytest.raises(TransferError, match="403"):
        download(expired, max_bytes=100)


def test_presigned_put_needs_the_signed_content_type(seeded) -> None:
    _, client, _, _ = seeded
    url = client.presign_put("oct-results", "ab/signal/1/picture.png", content_type="image/png")
    with pytest.raises(TransferError, match="403"):
        upload(url, b"\x89PNG", content_type="text/plain")
    upload(url, b"\x89PNG", content_type="image/png")
    info = client.stat("oct-results", "ab/signal/1/picture.png")
    assert (info.size, info.content_type) == (4, "image/png")
    assert client.get("oct-results", "ab/signal/1/picture.png") == b"\x89PNG"
    # The PUT URL is for PUT only.
    assert requests.get(url).status_code == 403


def test_presigned_put_signs_the_metadata_it_allows(seeded) -> None:
    _, client, _, _ = seeded
    key = "ab/signal/1/values.json"
    bare = client.presign_put("oct-results", key, content_type="application/json")
    # Unsigned user metadata is refused as MinIO refuses it (ErrUnsignedHeaders, 400).
    resp = requests.put(
        bare,
        data=b"{}",
        headers={"Content-Type": "application/json", "x-amz-meta-sha256": "forged"},
    )
    assert resp.status_code == 400 and "not signed" in resp.text
    url = client.presign_put(
        "oct-results", key, content_type="application/json", metadata={"sha256": "abc"}
    )
    assert "X-Qmroct-SignedHeaders=x-amz-meta-sha256" in url
    for headers, status in (
        ({"x-amz-meta-sha256": "forged"}, 403),  # a signed header with another value
        ({}, 403),  # a signed header left out
        ({"x-amz-meta-sha256": "abc", "x-amz-meta-extra": "1"}, 400),  # one more, unsigned
    ):
        resp = requests.put(
            url, data=b"{}", headers={"Content-Type": "application/json", **headers}
        )
        assert resp.status_code == status, (headers, resp.text)
    assert not client.exists("oct-results", key)
    resp = requests.put(
        url, data=b"{}", headers={"Content-Type": "application/json", "X-Amz-Meta-Sha256": "abc"}
    )
    assert resp.status_code == 200, resp.text
    assert client.stat("oct-results", key).metadata == {"sha256": "abc"}


def test_api_refuses_wrong_credentials(seeded) -> None:
    srv, client, _, _ = seeded
    wrong_secret = LocalStoreClient(srv.endpoint, srv.access_key, "not-the-secret")
    with pytest.raises(AccessDenied):
        wrong_secret.get("oct-ingest", KEY)
    wrong_key = LocalStoreClient(srv.endpoint, "someone", client._secret)
    with pytest.raises(AccessDenied):
        wrong_key.stat("oct-ingest", KEY)
    # A replayed signature with another body fails the body hash.
    headers = {"X-Qmroct-Date": str(int(time.time())), "X-Qmroct-Content-Sha256": "0" * 64}
    resp = requests.put(f"{srv.endpoint}/_api/object/oct-ingest/x", data=b"x", headers=headers)
    assert resp.status_code == 403


def test_api_object_calls_and_errors(seeded) -> None:
    srv, client, v1, v2 = seeded
    assert client.stat("oct-ingest", KEY).version_id == v2.version_id
    assert [i.version_id for i in client.list_versions("oct-ingest", KEY)] == [
        v1.version_id,
        v2.version_id,
    ]
    assert [i.key for i in client.list("oct-ingest", "p1/")] == [KEY]
    assert client.exists("oct-ingest", KEY) and not client.exists("oct-ingest", "nope")
    with pytest.raises(ObjectNotFound):
        client.get("oct-ingest", "nope")
    with pytest.raises(KeyConflict):
        client.put("oct-ingest", KEY + "/below", b"")
    # Hostile keys are refused at the server too, not only by the client's own check.
    headers = {"Content-Type": "a/b"}
    from qmroct.objectstore.signing import sign_request

    path = "/_api/object/oct-ingest/a/%2E%2E/%2E%2E/escape"
    headers.update(sign_request(srv.access_key, client._secret, "PUT", path, "", b"x"))
    # http.client sends the path as given (requests would normalise the dot segments).
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("PUT", path, body=b"x", headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 400 and "<Code>InvalidObjectName</Code>" in body
    assert "'..' path segment" in body


def test_multipart_over_http_with_resume(served) -> None:
    srv, client = served
    store = open_store("local", srv.endpoint, srv.access_key, client._secret)
    store.ensure_bucket("oct-ingest")
    key = "p/s/e/big.vol"
    uid = store.start_multipart("oct-ingest", key, "application/octet-stream", {"a": "1"})
    e1 = store.upload_part("oct-ingest", key, uid, 1, b"a" * 4096)
    # "Crash", then resume from what the server says it has.
    have = store.list_parts("oct-ingest", key, uid)
    assert [(p.part_number, p.etag, p.size) for p in have] == [(1, e1, 4096)]
    e2 = store.upload_part("oct-ingest", key, uid, 2, b"b" * 10)
    info = store.complete_multipart("oct-ingest", key, uid, [(1, e1), (2, e2)])
    assert info.etag.endswith("-2") and info.size == 4106
    assert store.get("oct-ingest", key) == b"a" * 4096 + b"b" * 10
    uid2 = store.start_multipart("oct-ingest", "x/y", "a/b", None)
    store.abort_multipart("oct-ingest", "x/y", uid2)
    assert not store.exists("oct-ingest", "x/y")

"""The local folder store itself: versions, etags, sidecars, atomicity, hostile keys."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qmroct.errors import InvalidKey
from qmroct.localstore.store import LocalFolderStore
from qmroct.objectstore.errors import (
    BucketNotFound,
    KeyConflict,
    MultipartError,
    ObjectNotFound,
    StoreError,
)


def test_versions_etag_metadata_and_visible_copy(local_store: LocalFolderStore) -> None:
    local_store.ensure_bucket("oct-ingest")
    key = "p1/s 01/ses+1/scan é%.vol"
    a = local_store.put("oct-ingest", key, b"first", metadata={"Pseudonym": "P-1"})
    b = local_store.put("oct-ingest", key, io.BytesIO(b"second!"), length=7, content_type="x/y")
    assert a.etag == hashlib.md5(b"first").hexdigest()
    assert a.version_id and b.version_id and a.version_id != b.version_id
    assert a.metadata == {"pseudonym": "P-1"}
    assert local_store.get("oct-ingest", key) == b"second!"
    assert local_store.get("oct-ingest", key, version_id=a.version_id) == b"first"
    assert local_store.stat("oct-ingest", key).content_type == "x/y"
    assert [v.version_id for v in local_store.list_versions("oct-ingest", key)] == [
        a.version_id,
        b.version_id,
    ]
    # The bucket is a folder a person can browse; the current version is there, read-only.
    visible = local_store.root / "oct-ingest" / key
    assert visible.read_bytes() == b"second!"
    assert not os.access(visible, os.W_OK) or os.geteuid() == 0
    with pytest.raises(ObjectNotFound):
        local_store.get("oct-ingest", key, version_id="no-such-version")


def test_unversioned_bucket_keeps_one_null_version(local_store: LocalFolderStore) -> None:
    local_store.ensure_bucket("plain", versioning=False)
    local_store.put("plain", "k", b"1")
    info = local_store.put("plain", "k", b"22")
    assert info.version_id is None
    assert [v.size for v in local_store.list_versions("plain", "k")] == [2]


def test_list_by_prefix_and_errors(local_store: LocalFolderStore) -> None:
    local_store.ensure_bucket("oct-ingest")
    for k in ["p1/a/x.vol", "p1/b/y.vol", "p2/z.vol", "p10/w.vol"]:
        local_store.put("oct-ingest", k, k.encode())
    assert [i.key for i in local_store.list("oct-ingest", "p1/")] == ["p1/a/x.vol", "p1/b/y.vol"]
    assert [i.key for i in local_store.list("oct-ingest", "p1")] == [
        "p1/a/x.vol",
        "p1/b/y.vol",
        "p10/w.vol",
    ]
    assert list(local_store.list("oct-ingest", "../")) == []
    with pytest.raises(BucketNotFound):
        local_store.put("nobucket", "k", b"")
    with pytest.raises(KeyConflict):
        local_store.put("oct-ingest", "p2/z.vol/inner", b"")
    with pytest.raises(KeyConflict):
        local_store.put("oct-ingest", "p1", b"")
    with pytest.raises(StoreError):
        local_store.put("oct-ingest", "m", b"", metadata={"bad name": "v"})


def test_failed_write_leaves_nothing_behind(local_store: LocalFolderStore) -> None:
    local_store.ensure_bucket("oct-ingest")
    with pytest.raises(ValueError):
        local_store.put("oct-ingest", "short.vol", io.BytesIO(b"abc"), length=10)
    assert not local_store.exists("oct-ingest", "short.vol")
    assert list((local_store.root / ".qmroct" / "tmp").iterdir()) == []


def test_multipart_resume_and_s3_etag(local_store: LocalFolderStore) -> None:
    local_store.ensure_bucket("oct-ingest")
    key = "p/s/e/big.vol"
    uid = local_store.start_multipart("oct-ingest", key, "application/x-vol", {"site": "B"})
    p1, p2 = os.urandom(2048), os.urandom(100)
    e1 = local_store.upload_part("oct-ingest", key, uid, 1, p1)
    # A resuming client asks what is there, then sends only the rest.
    assert [tuple(p) for p in local_store.list_parts("oct-ingest", key, uid)] == [(1, e1, 2048)]
    e2 = local_store.upload_part("oct-ingest", key, uid, 2, p2)
    with pytest.raises(MultipartError):
        local_store.complete_multipart("oct-ingest", key, uid, [(2, e2), (1, e1)])
    with pytest.raises(MultipartError):
        local_store.complete_multipart("oct-ingest", key, uid, [(1, "0" * 32), (2, e2)])
    info = local_store.complete_multipart("oct-ingest", key, uid, [(1, e1), (2, e2)])
    digest = hashlib.md5(bytes.fromhex(e1) + bytes.fromhex(e2)).hexdigest()
    assert info.etag == f"{digest}-2"
    assert info.metadata == {"site": "B"} and info.content_type == "application/x-vol"
    assert local_store.get("oct-ingest", key) == p1 + p2
    with pytest.raises(MultipartError):
        local_store.list_parts("oct-ingest", key, uid)  # gone once completed


def test_small_non_last_part_is_refused(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "s")  # the real 5 MiB minimum
    try:
        store.ensure_bucket("b-1")
        uid = store.start_multipart("b-1", "k", "a/b", None)
        e1 = store.upload_part("b-1", "k", uid, 1, b"x" * 10)
        e2 = store.upload_part("b-1", "k", uid, 2, b"y")
        with pytest.raises(MultipartError, match="under"):
            store.complete_multipart("b-1", "k", uid, [(1, e1), (2, e2)])
        store.abort_multipart("b-1", "k", uid)
        with pytest.raises(MultipartError):
            store.upload_part("b-1", "k", uid, 3, b"z")
    finally:
        store.close()


_FRAGMENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "é",
        "+",
        "%2F",
        "%2e%2e",
        " ",
        "\\",
        "\x00",
        "/",
        "..\\",
        "日本",
        "%",
        "x" * 300,
        "\n",
        "~",
        "$HOME",
        "C:",
        "\u202e",
        "\ufeff",
    ]
)
_KEYS = st.one_of(
    st.lists(_FRAGMENTS, min_size=1, max_size=8).map("".join),
    st.lists(st.one_of(_FRAGMENTS, st.text(max_size=12)), min_size=1, max_size=6).map("/".join),
    st.text(min_size=1, max_size=60),
)
_counter = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=_KEYS, payload=st.binary(max_size=64))
def test_hostile_keys_never_escape_root(tmp_path: Path, key: str, payload: bytes) -> None:
    root = tmp_path / "root"
    outside_before = sorted(p for p in tmp_path.rglob("*") if root not in p.parents and p != root)
    store = LocalFolderStore(root)
    try:
        bucket = f"b-{next(_counter)}"
        store.ensure_bucket(bucket)
        try:
            store.put(bucket, key, payload)
        except InvalidKey:
            assert not store.exists(bucket, key)
        else:
            assert store.get(bucket, key) == payload
            assert [i.key for i in store.list(bucket)] == [key]
    finally:
        store.close()
    outside_after = sorted(p for p in tmp_path.rglob("*") if root not in p.parents and p != root)
    assert outside_after == outside_before
    resolved_root = root.resolve()
    for p in root.rglob("*"):
        assert p.resolve().is_relative_to(resolved_root)

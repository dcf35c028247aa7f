"""Upload into real S3 over HTTP (moto's server) and into the local folder store."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import requests
from gateway_fixtures import identified_dicom
from gateway_proxy import DroppingProxy
from qmroct.gateway.compress import gunzip
from qmroct.gateway.deid import deidentify
from qmroct.gateway.upload import MIB, Uploader
from qmroct.storage.buckets import parse_scan_key

VOLS = ("heidelberg_vol/Willis_B_716_0.vol", "heidelberg_vol/Willis_B_716_2.vol")


def _uploader(store, home, **kw) -> Uploader:  # noqa: ANN001
    pseudonyms, state = home
    return Uploader(
        store,
        pseudonyms,
        state,
        project="glaucoma",
        bucket=store.test_bucket,
        sleep=lambda s: None,
        **kw,
    )


def _fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_ino


def test_upload_to_s3_layout_metadata_and_transparent_gzip(
    minio_store,
    gateway_home,
    samples_dir: Path,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for rel in VOLS:
        shutil.copy(samples_dir / rel, inbox)
    before = {p.name: _fingerprint(p) for p in inbox.iterdir()}
    seen: list[int] = []
    summary = _uploader(minio_store, gateway_home, on_progress=seen.append).upload_paths([inbox])
    assert sum(seen) == sum(p.stat().st_size for p in inbox.iterdir())
    assert [o.status for o in summary.outcomes] == ["uploaded", "uploaded"], summary.outcomes
    # The clinic's originals are where they were, byte for byte.
    assert {p.name: _fingerprint(p) for p in inbox.iterdir()} == before
    expected = deidentify((inbox / "Willis_B_716_0.vol").read_bytes(), gateway_home[0])
    out = summary.outcomes[0]
    key = parse_scan_key(out.key)
    assert (key.project, key.subject, key.session, key.scan, key.ext) == (
        "glaucoma",
        expected.identity.subject,
        expected.identity.session,
        expected.identity.scan,
        "vol",
    )
    info = minio_store.stat(minio_store.test_bucket, out.key)
    assert info.metadata["sha256"] == hashlib.sha256(expected.data).hexdigest() == out.sha256
    assert info.metadata["format"] == "heyex_vol" and info.metadata["pattern"] == "line"
    assert out.encoding == "gzip" and info.size == out.stored_size < len(expected.data)
    # A presigned GET (what a measure does) hands back the de-identified bytes themselves.
    url = minio_store.presign_get(minio_store.test_bucket, out.key)
    assert requests.get(url, timeout=10).content == expected.data
    assert minio_store.get(minio_store.test_bucket, out.key) == expected.data
    assert gunzip(requests.get(url, stream=True, timeout=10).raw.read()) == expected.data
    assert "MB/s" in summary.render()


def test_same_content_twice_is_one_object(minio_store, gateway_home, samples_dir: Path) -> None:  # noqa: ANN001
    src = samples_dir / VOLS[0]
    first = _uploader(minio_store, gateway_home).upload_file(src)
    again = _uploader(minio_store, gateway_home).upload_file(src)
    assert (first.status, again.status) == ("uploaded", "duplicate")
    assert first.key == again.key
    assert len(minio_store.list_versions(minio_store.test_bucket, first.key)) == 1
    # Without the local record, the stored object's sha256 metadata still says "already there".
    pseudonyms, _ = gateway_home
    from qmroct.gateway.state import GatewayState

    fresh = GatewayState(Path(str(gateway_home[1].path) + ".fresh"))
    third = _uploader(minio_store, (pseudonyms, fresh)).upload_file(src)
    assert third.status == "duplicate"
    assert len(minio_store.list_versions(minio_store.test_bucket, first.key)) == 1


def test_upload_to_local_store(local_store, gateway_home, samples_dir: Path) -> None:  # noqa: ANN001
    out = _uploader(local_store, gateway_home, compress="none").upload_file(samples_dir / VOLS[1])
    assert out.status == "uploaded" and out.encoding == "identity"
    expected = deidentify((samples_dir / VOLS[1]).read_bytes(), gateway_home[0])
    assert local_store.get("oct-ingest", out.key) == expected.data
    assert local_store.stat("oct-ingest", out.key).metadata["sha256"] == out.sha256


def test_bad_input_is_reported_not_uploaded(minio_store, gateway_home, tmp_path: Path) -> None:  # noqa: ANN001
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan at all\n" * 50)
    burned = tmp_path / "screenshot.dcm"
    burned.write_bytes(identified_dicom(burned_in="YES"))
    truncated = tmp_path / "cut.vol"
    truncated.write_bytes(b"HSF-OCT-103\0" + b"\0" * 100)
    summary = _uploader(minio_store, gateway_home).upload_paths([notes, burned, truncated])
    by_name = {Path(o.source).name: o for o in summary.outcomes}
    assert by_name["notes.txt"].status == "rejected"
    assert "not an OCT file" in by_name["notes.txt"].reason
    assert by_name["screenshot.dcm"].status == "flagged"
    assert "BurnedInAnnotation" in by_name["screenshot.dcm"].reason
    assert by_name["cut.vol"].status == "rejected" and "2048-byte" in by_name["cut.vol"].reason
    assert list(minio_store.list(minio_store.test_bucket)) == []
    assert notes.exists() and burned.exists() and truncated.exists()


def test_shell_metacharacters_in_names(
    minio_store, gateway_home, samples_dir: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    hostile = tmp_path / "a b;rm -rf ~ $(reboot) `id` |&>x'\"*?.vol"
    shutil.copy(samples_dir / VOLS[0], hostile)
    out = _uploader(minio_store, gateway_home).upload_file(hostile)
    assert out.status == "uploaded", out.reason
    assert all(c.isalnum() or c in "/-." for c in out.key)  # only pseudonyms reach the key
    assert hostile.exists()


def _big_vol(samples_dir: Path, path: Path, size: int) -> None:
    head = (samples_dir / VOLS[0]).read_bytes()
    path.write_bytes(head + os.urandom(size - len(head)))


def test_multipart_resumes_after_dropped_connection(
    moto_endpoint: str,
    gateway_home,
    samples_dir: Path,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    from qmroct.objectstore import open_store

    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = DroppingProxy(host, int(port))
    try:
        store = open_store("minio", proxy.endpoint, "testing", "testing")
        store.ensure_bucket("resume-test")
        store.test_bucket = "resume-test"
        src = tmp_path / "big.vol"
        _big_vol(samples_dir, src, 13 * MIB)
        kw = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB, "compress": "none"}
        proxy.cut_after(8 * MIB)  # part 1 gets through, part 2 is cut mid-stream
        lost = _uploader(store, gateway_home, retries=0, **kw).upload_file(src)
        assert lost.status == "failed"
        assert "rerun the upload to resume" in lost.reason
        assert gateway_home[1].open_multipart(
            "resume-test", lost.key, _sha_of_deid(src, gateway_home)
        )
        proxy.restore()
        assert not store.exists("resume-test", lost.key)
        sent_before = proxy.bytes_up
        done = _uploader(store, gateway_home, **kw).upload_file(src)
        assert done.status == "uploaded" and done.multipart and done.key == lost.key
        # Only the missing parts went over the wire again (part 1 stayed on the server).
        assert proxy.bytes_up - sent_before < 9 * MIB
        expected = deidentify(src.read_bytes(), gateway_home[0]).data
        assert store.get("resume-test", done.key) == expected
        assert gateway_home[1].open_multipart("resume-test", done.key, done.sha256) is None
    finally:
        proxy.close()


def _sha_of_deid(src: Path, home) -> str:  # noqa: ANN001
    return hashlib.sha256(deidentify(src.read_bytes(), home[0]).data).hexdigest()


@pytest.mark.parametrize("compress", ["auto", "none"])
def test_compression_choice(
    minio_store, gateway_home, tmp_path: Path, samples_dir: Path, compress: str
) -> None:  # noqa: ANN001
    noise = tmp_path / "noise.vol"
    _big_vol(samples_dir, noise, 9 * MIB)  # random pixels do not compress: sent as they are
    out = _uploader(minio_store, gateway_home, compress=compress).upload_file(noise)
    assert out.status == "uploaded" and out.encoding == "identity"


def test_forgotten_multipart_starts_over(
    minio_store, gateway_home, samples_dir: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    src = tmp_path / "big.vol"
    _big_vol(samples_dir, src, 11 * MIB)
    kw = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB, "compress": "none"}
    up = _uploader(minio_store, gateway_home, **kw)
    result = deidentify(src.read_bytes(), gateway_home[0])
    sha = hashlib.sha256(result.data).hexdigest()
    key = f"glaucoma/{result.identity.subject}/{result.identity.session}/{result.identity.scan}.vol"
    # An upload id the server no longer knows (expired, or aborted by a lifecycle rule).
    gateway_home[1].remember_multipart(minio_store.test_bucket, key, sha, "no-such-upload", 5 * MIB)
    out = up.upload_file(src)
    assert out.status == "uploaded" and out.multipart and out.key == key
    assert minio_store.get(minio_store.test_bucket, key) == result.data


def test_auto_compression_keeps_the_faster_way(
    minio_store, gateway_home, samples_dir: Path
) -> None:  # noqa: ANN001
    up = _uploader(minio_store, gateway_home)
    data = (samples_dir / VOLS[0]).read_bytes()  # raw Spectralis floats: shrink to about 0.6
    assert up._pays(data) is True  # nothing measured yet: a clinic's uplink is slow, gzip first
    up._observe(True, 32 * MIB, 1.0)
    assert up._pays(data) is False  # gzip measured, plain not yet: try it once
    up._observe(False, 32 * MIB, 4.0)  # plain was slower (a slow link)
    assert up._pays(data) is True
    up._rate = {True: 40.0, False: 90.0}  # a fast link: gzip only costs time
    assert up._pays(data) is False
    assert up._pays(b"\x00" * 10) is False  # too small to be worth a trial

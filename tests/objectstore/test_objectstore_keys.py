"""Key rules and the bucket/key layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qmroct.errors import InvalidKey
from qmroct.storage.buckets import (
    BUCKETS,
    INGEST_BUCKET,
    measure_key,
    parse_result_key,
    parse_scan_key,
    result_key,
    validate_bucket,
    validate_key,
)

HOSTILE = [
    ("", "empty"),
    ("../etc/passwd", "'..'"),
    ("a/../../b", "'..'"),
    ("a/./b", "'.'"),
    ("/abs/key", "leading '/'"),
    ("a//b", "empty path segment"),
    ("a/b/", "empty path segment"),
    ("a\\..\\b", "backslash"),
    ("a\x00b", "U+0000"),
    ("a\nb", "U+000A"),
    ("a\x7fb", "U+007F"),
    ("a\x85b", "U+0085"),
    ("x" * 1025, "over the limit"),
    ("é" * 513, "over the limit"),  # 1026 bytes of UTF-8 in 513 characters
    ("a\udc80b", "surrogate"),
]


@pytest.mark.parametrize(("key", "why"), HOSTILE)
def test_hostile_keys_are_rejected_with_reason(key: str, why: str) -> None:
    with pytest.raises(InvalidKey) as err:
        validate_key(key)
    assert why in err.value.reason


@pytest.mark.parametrize(
    "key",
    [
        "p1/s 01/ses+1/scan.vol",
        "p%41/x",
        "ünï/cödé/日本/scan.e2e",
        "a/..b/c..",
        "x" * 1024,
        "~/-_.!",
    ],
)
def test_unusual_but_safe_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) is key


@given(st.text(min_size=1, max_size=300))
def test_validate_key_accepts_only_safe_keys(key: str) -> None:
    try:
        out = validate_key(key)
    except InvalidKey:
        return
    assert out == key
    segments = key.split("/")
    assert all(s not in ("", ".", "..") for s in segments)
    assert "\\" not in key and "\x00" not in key and not key.startswith("/")


def test_bucket_names() -> None:
    for spec in BUCKETS:
        assert validate_bucket(spec.name) == spec.name
    for bad in ["ab", "UPPER", "-x-", "a..b", "192.168.1.1", ".qmroct", "x" * 64, "a_b"]:
        with pytest.raises(InvalidKey):
            validate_bucket(bad)


def test_scan_key_layout_round_trip() -> None:
    sk = parse_scan_key("p1/s 01/ses+1/scan.vol")
    assert (sk.project, sk.subject, sk.session, sk.scan, sk.ext) == (
        "p1",
        "s 01",
        "ses+1",
        "scan",
        "vol",
    )
    assert sk.key == "p1/s 01/ses+1/scan.vol"
    gz = parse_scan_key("p/s/e/od.macula.vol.gz")
    assert (gz.scan, gz.ext) == ("od.macula", "vol.gz")
    for bad in ["p/s/scan.vol", "p/s/e/f/scan.vol", "p/s/e/noext", "p/s/e/.vol", "p/../e/x.vol"]:
        with pytest.raises(InvalidKey):
            parse_scan_key(bad)


def test_result_key_layout() -> None:
    h = "ab" * 32
    key = result_key(h, "signal", "1.2.0")
    assert key == f"{h}/signal/1.2.0/picture.png"
    assert parse_result_key(key) == (h, "signal", "1.2.0", "picture.png")
    assert measure_key("signal", "1.2.0") == "signal/1.2.0.json"
    with pytest.raises(InvalidKey):
        result_key("not-a-hash", "signal", "1")
    with pytest.raises(InvalidKey):
        result_key(h, "../x", "1")
    assert any(b.name == INGEST_BUCKET and b.trigger == "image-stored" for b in BUCKETS)

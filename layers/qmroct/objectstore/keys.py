"""Object key and bucket name rules, shared by every store and by the event bridge.

A key is accepted only when it can be mapped onto a folder tree without escaping it and when
every store (MinIO, S3, the local folder store) will hold it byte-exact. Unicode, ``+``, ``%``
and spaces are fine; what could climb out of a root or confuse a path parser is not.
"""

from __future__ import annotations

import re
import unicodedata

from qmroct.errors import InvalidKey

MAX_KEY_BYTES = 1024  # S3 and MinIO limit on an object name, in UTF-8 bytes
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged when it is safe, else raise :class:`InvalidKey` with the reason."""
    if not isinstance(key, str):
        raise InvalidKey(repr(key), f"a key is a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey(key, "empty key")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey(key, "not valid UTF-8 (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(key, f"{size} bytes of UTF-8 is over the limit of {MAX_KEY_BYTES}")
    if key.startswith("/"):
        raise InvalidKey(key, "leading '/'")
    if "\\" in key:
        raise InvalidKey(key, "backslash (a path separator on some systems)")
    for ch in key:
        # Cc covers NUL, C0, DEL and C1: none survives every hop (headers, logs, file names).
        if unicodedata.category(ch) == "Cc":
            raise InvalidKey(key, f"control character U+{ord(ch):04X}")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidKey(key, "empty path segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise InvalidKey(key, f"'{segment}' path segment")
    return key


def validate_bucket(bucket: str) -> str:
    """Return ``bucket`` when it is a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')."""
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
        raise InvalidKey(str(bucket), "not a valid bucket name (3-63 of a-z, 0-9, '.', '-')")
    if ".." in bucket or _IPV4_RE.match(bucket):
        raise InvalidKey(bucket, "not a valid bucket name ('..' or an IP address)")
    return bucket

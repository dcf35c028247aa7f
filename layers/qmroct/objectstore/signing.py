"""HMAC-SHA256 signatures of the local folder store, shared by its server and its client.

Two kinds:

- **Presigned URLs** scope one method on one object (and version) until an expiry of at most
  seven days, as S3 presigned URLs do. The string to sign is::

      QMROCT-HMAC-SHA256 \\n METHOD \\n bucket \\n key \\n versionId \\n content-type (PUT)
      \\n access key \\n date (epoch s) \\n expires (s) \\n signed metadata (PUT)

  The signature, credential, date and expiry travel in the query string. A PUT URL may allow
  user metadata: the header names go in ``X-Qmroct-SignedHeaders`` and their values are signed,
  so the uploader must send exactly them. Any ``x-amz-meta-*`` header not signed is refused, as
  MinIO refuses it (``checkMetaHeaders`` in minio/minio cmd/signature-v4-utils.go answers
  ``ErrUnsignedHeaders``: 400 AccessDenied "There were headers present in the request which
  were not signed"), and a signed one whose value differs fails the signature.
- **Signed requests** from trusted clients (the API): method, raw path, sorted query, date and
  the SHA-256 of the body, carried in headers.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta
from urllib.parse import parse_qsl, quote, urlencode

ALGORITHM = "QMROCT-HMAC-SHA256"
MAX_EXPIRY = timedelta(days=7)
CLOCK_SKEW_S = 15 * 60

Q_ALG = "X-Qmroct-Algorithm"
Q_CRED = "X-Qmroct-Credential"
Q_DATE = "X-Qmroct-Date"
Q_EXPIRES = "X-Qmroct-Expires"
Q_SIG = "X-Qmroct-Signature"
Q_SIGNED = "X-Qmroct-SignedHeaders"
META_PREFIX = "x-amz-meta-"
H_DATE = "X-Qmroct-Date"
H_SHA = "X-Qmroct-Content-Sha256"


class SignatureError(Exception):
    """A signature or expiry check failed. ``code`` is the S3 error code to answer with."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")


def object_path(bucket: str, key: str) -> str:
    """The URL path of an object: ``/bucket/`` then the key, percent-encoded but for ``/``."""
    return f"/{bucket}/{quote(key, safe='/')}"


def _hmac(secret: str, msg: str) -> str:
    return hmac.new(secret.encode(), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def _presign_string(
    method: str,
    bucket: str,
    key: str,
    version_id: str,
    content_type: str,
    access_key: str,
    date: int,
    expires: int,
    signed_meta: str = "",
) -> str:
    return "\n".join(
        [
            ALGORITHM,
            method,
            bucket,
            key,
            version_id,
            content_type,
            access_key,
            str(date),
            str(expires),
            signed_meta,
        ]
    )


def _meta(headers: dict[str, str] | None) -> dict[str, str]:
    """``x-amz-meta-<name>`` (lower-case) -> value, from names given with or without it."""
    return {
        f"{META_PREFIX}{k.lower().removeprefix(META_PREFIX)}": v for k, v in (headers or {}).items()
    }


def _meta_block(names: list[str], values: dict[str, str]) -> str:
    """The signed metadata as canonical ``name:value`` lines (names sorted)."""
    return "\n".join(f"{name}:{values.get(name, '').strip()}" for name in names)


def presign(
    endpoint: str,
    access_key: str,
    secret_key: str,
    method: str,
    bucket: str,
    key: str,
    *,
    expires: timedelta,
    version_id: str | None = None,
    content_type: str = "",
    metadata: dict[str, str] | None = None,
    now: float | None = None,
) -> str:
    """A URL that allows ``method`` on this one object until ``now + expires``; for a PUT,
    with exactly the user ``metadata`` given (names with or without ``x-amz-meta-``)."""
    seconds = int(expires.total_seconds())
    if seconds < 1 or expires > MAX_EXPIRY:
        raise ValueError(f"expiry must be between 1 s and 7 days, got {expires}")
    method = method.upper()
    date = int(time.time() if now is None else now)
    ctype = content_type if method == "PUT" else ""
    meta = _meta(metadata)
    if meta and method != "PUT":
        raise ValueError("only a PUT URL can carry metadata")
    names = sorted(meta)
    sig = _hmac(
        secret_key,
        _presign_string(
            method,
            bucket,
            key,
            version_id or "",
            ctype,
            access_key,
            date,
            seconds,
            _meta_block(names, meta),
        ),
    )
    query = [
        (Q_ALG, ALGORITHM),
        (Q_CRED, access_key),
        (Q_DATE, str(date)),
        (Q_EXPIRES, str(seconds)),
    ]
    if version_id:
        query.append(("versionId", version_id))
    if names:
        query.append((Q_SIGNED, ";".join(names)))
    query.append((Q_SIG, sig))
    return f"{endpoint.rstrip('/')}{object_path(bucket, key)}?{urlencode(query)}"


def is_presigned(query: dict[str, str]) -> bool:
    return Q_SIG in query


def verify_presigned(
    *,
    access_key: str,
    secret_key: str,
    method: str,
    bucket: str,
    key: str,
    query: dict[str, str],
    content_type: str,
    meta_headers: dict[str, str] | None = None,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless the query is a valid, unexpired signature for
    exactly this method, object, version and (for PUT) content type and user metadata.

    ``meta_headers`` are the request's ``x-amz-meta-*`` headers (names with or without the
    prefix)."""
    now = time.time() if now is None else now
    if query.get(Q_ALG) != ALGORITHM:
        raise SignatureError("AccessDenied", "unsupported or missing signature algorithm")
    if query.get(Q_CRED) != access_key:
        raise SignatureError("InvalidAccessKeyId", "the access key does not exist")
    try:
        date = int(query[Q_DATE])
        seconds = int(query[Q_EXPIRES])
    except (KeyError, ValueError):
        raise SignatureError("AccessDenied", "missing or malformed date or expiry") from None
    if seconds < 1 or seconds > int(MAX_EXPIRY.total_seconds()):
        raise SignatureError("AccessDenied", "expiry must be between 1 s and 7 days")
    if date > now + CLOCK_SKEW_S:
        raise SignatureError("AccessDenied", "request is signed in the future")
    sent = _meta(meta_headers)
    names = sorted(n for n in query.get(Q_SIGNED, "").split(";") if n)
    if any(not n.startswith(META_PREFIX) for n in names):
        raise SignatureError("AccessDenied", "only x-amz-meta-* headers are signed")
    if set(sent) - set(names):
        # minio/minio cmd/signature-v4-utils.go checkMetaHeaders -> ErrUnsignedHeaders (400).
        raise SignatureError(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            status=400,
        )
    ctype = content_type if method == "PUT" else ""
    expected = _hmac(
        secret_key,
        _presign_string(
            method,
            bucket,
            key,
            query.get("versionId", ""),
            ctype,
            access_key,
            date,
            seconds,
            _meta_block(names, sent),
        ),
    )
    if not hmac.compare_digest(expected, query.get(Q_SIG, "")):
        raise SignatureError(
            "SignatureDoesNotMatch",
            "the signature does not match this method, object, version, content type or metadata",
        )
    # Checked after the signature, so a tampered expiry reads as a bad signature.
    if now > date + seconds:
        raise SignatureError("AccessDenied", "Request has expired")


def canonical_query(raw_query: str) -> str:
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return urlencode(pairs)


def _request_string(method: str, path: str, raw_query: str, date: str, body_sha: str) -> str:
    return "\n".join([ALGORITHM, method.upper(), path, canonical_query(raw_query), date, body_sha])


def sign_request(
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    raw_query: str,
    body: bytes,
    *,
    now: float | None = None,
) -> dict[str, str]:
    """Headers that authenticate one API request (``path`` as sent, percent-encoded)."""
    date = str(int(time.time() if now is None else now))
    body_sha = hashlib.sha256(body).hexdigest()
    sig = _hmac(secret_key, _request_string(method, path, raw_query, date, body_sha))
    return {
        H_DATE: date,
        H_SHA: body_sha,
        "Authorization": f"{ALGORITHM} Credential={access_key},Signature={sig}",
    }


def verify_request(
    *,
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless the headers sign exactly this request and body."""
    now = time.time() if now is None else now
    auth = headers.get("authorization", "")
    prefix = f"{ALGORITHM} "
    if not auth.startswith(prefix):
        raise SignatureError("AccessDenied", "missing or unsupported Authorization header")
    fields = dict(p.split("=", 1) for p in auth[len(prefix) :].split(",") if "=" in p)
    if fields.get("Credential") != access_key:
        raise SignatureError("InvalidAccessKeyId", "the access key does not exist")
    date = headers.get(H_DATE.lower(), "")
    if not date.isdigit() or abs(now - int(date)) > CLOCK_SKEW_S:
        raise SignatureError("RequestTimeTooSkewed", "date missing or more than 15 min off")
    body_sha = hashlib.sha256(body).hexdigest()
    if headers.get(H_SHA.lower()) != body_sha:
        raise SignatureError("XAmzContentSHA256Mismatch", "the body does not match its hash")
    expected = _hmac(secret_key, _request_string(method, path, raw_query, date, body_sha))
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        raise SignatureError("SignatureDoesNotMatch", "the request signature does not match")

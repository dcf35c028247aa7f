"""The local folder store over HTTP, on loopback, the way MinIO serves its buckets.

Two doors:

- ``GET|PUT /{bucket}/{key}?X-Qmroct-...``: presigned single-object URLs for code that holds no
  credentials (measure actions). Each is scoped to one method, one object, one version (and
  for PUT one content type) and expires within seven days. A bad or expired one gets a 403
  with an S3-style XML error.
- ``/_api/...``: signed requests (access key + HMAC-SHA256) from trusted clients
  (:class:`qmroct.objectstore.local.LocalStoreClient`): buckets, objects, listings, versions,
  notification targets and multipart uploads.

Every request is authorised as MinIO authorises it: the owner's key (the server's
``access_key``) may do everything, as MinIO's root user may; any other key is a user with a
policy (:meth:`LocalStoreServer.add_user`, one per role), and each call is checked against it
with the IAM action MinIO's handler checks for that call (cited per route below). A presigned
URL carries its signer's rights, as in MinIO: a URL signed by a role that may not read scans
reads none.
"""

from __future__ import annotations

import json
import logging
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

from pydantic import TypeAdapter, ValidationError
from qmroct.errors import ConfigError, InvalidKey
from qmroct.httpservice import BackgroundHTTPServer, CountingHTTPServer
from qmroct.localstore.iam import Policy, resource_arn
from qmroct.localstore.store import DEFAULT_CONTENT_TYPE, LocalFolderStore, RequestContext
from qmroct.objectstore.base import NotificationTarget, ObjectInfo
from qmroct.objectstore.errors import (
    AccessDenied,
    BucketNotFound,
    KeyConflict,
    MultipartError,
    ObjectNotFound,
    StoreError,
)
from qmroct.objectstore.signing import (
    ALGORITHM,
    Q_CRED,
    SignatureError,
    is_presigned,
    verify_presigned,
    verify_request,
)

log = logging.getLogger(__name__)

API_PREFIX = "/_api/"
MAX_API_BODY = 64 * 1024 * 1024  # bigger payloads go as multipart parts
MAX_PRESIGNED_PUT = 5 * 1024**3  # S3's single-PUT limit
META_HEADER = "x-amz-meta-"

_ERRORS: list[tuple[type[Exception], int, str]] = [
    (ObjectNotFound, 404, "NoSuchKey"),
    (BucketNotFound, 404, "NoSuchBucket"),
    (KeyConflict, 409, "XMinioParentIsObject"),
    (MultipartError, 400, "InvalidPart"),
    (AccessDenied, 403, "AccessDenied"),
    (InvalidKey, 400, "InvalidObjectName"),
    (StoreError, 400, "InvalidArgument"),
    (ValidationError, 400, "MalformedJSON"),
    (ValueError, 400, "InvalidArgument"),
]
_TARGETS = TypeAdapter(list[NotificationTarget])
_PARTS = TypeAdapter(list[tuple[int, str]])


class User:
    """One credential of the store: its secret and, except for the owner, its policy."""

    def __init__(self, access_key: str, secret: str, policy: Policy | None, role: str) -> None:
        self.access_key, self.secret, self.policy, self.role = access_key, secret, policy, role

    def authorize(self, actions: tuple[str, ...], bucket: str, key: str = "") -> None:
        """Raise a 403 unless one of ``actions`` (MinIO's checks for this call, tried in turn)
        is allowed on the bucket or object."""
        if self.policy is None:
            return  # the owner, like MinIO's root user
        arn = resource_arn(bucket, key)
        if not any(self.policy.allows(a, arn) for a in actions):
            raise _Reply(
                403, "AccessDenied", f"{self.role or self.access_key} may not {actions[0]} on {arn}"
            )


def _request_credential(headers: dict[str, str]) -> str:
    """The access key named by a signed request's Authorization header."""
    auth = headers.get("authorization", "")
    if not auth.startswith(f"{ALGORITHM} "):
        return ""
    fields = dict(p.split("=", 1) for p in auth[len(ALGORITHM) + 1 :].split(",") if "=" in p)
    return fields.get("Credential", "")


class _Reply(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


def error_xml(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small replies otherwise wait on delayed ACKs

    # ---- plumbing ----------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        # The default logs the request line, which would leak presigned signatures.
        log.debug("%s %s", self.client_address[0], format % args)

    def _split(self) -> tuple[str, str, dict[str, str]]:
        raw_path, _, raw_query = self.path.partition("?")
        return raw_path, raw_query, dict(parse_qsl(raw_query, keep_blank_values=True))

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, code: str, message: str) -> None:
        raw_path = self.path.partition("?")[0]
        log.info("%s %s -> %s %s: %s", self.command, raw_path, status, code, message)
        # The request body may be unread: close the connection, and say so, so that no
        # client reuses it for its next request.
        self.close_connection = True
        self._send(
            status,
            error_xml(code, message, raw_path, f"{id(self):X}"),
            "application/xml",
            {"Connection": "close"},
        )

    def _read_body(self, limit: int) -> bytes:
        length = self._content_length(limit)
        return self.rfile.read(length) if length else b""

    def _content_length(self, limit: int) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.command in ("PUT", "POST"):
                raise _Reply(411, "MissingContentLength", "Content-Length is required")
            return 0
        try:
            length = int(raw)
        except ValueError:
            raise _Reply(400, "InvalidArgument", "malformed Content-Length") from None
        if length < 0 or length > limit:
            raise _Reply(400, "EntityTooLarge", f"body of {length} bytes is over {limit}")
        return length

    def _context(self, principal: str) -> RequestContext:
        return RequestContext(
            principal=principal,
            source_host=self.client_address[0],
            user_agent=self.headers.get("User-Agent", ""),
            host=self.headers.get("Host", ""),
        )

    def _dispatch(self) -> None:
        try:
            raw_path, raw_query, query = self._split()
            if raw_path.startswith(API_PREFIX):
                self._api(raw_path, raw_query, query)
            elif is_presigned(query):
                self._presigned(raw_path, query)
            else:
                raise _Reply(403, "AccessDenied", "anonymous access is not allowed")
        except _Reply as r:
            self._error(r.status, r.code, r.message)
        except SignatureError as exc:
            self._error(exc.status, exc.code, exc.message)
        except Exception as exc:  # every failure becomes a typed S3 error, never a crash
            for cls, status, code in _ERRORS:
                if isinstance(exc, cls):
                    self._error(status, code, str(exc))
                    return
            log.exception("local store: unexpected failure on %s", self.command)
            self._error(500, "InternalError", f"{type(exc).__name__}: {exc}")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch  # noqa: N815

    @staticmethod
    def _bucket_key(path: str, *, need_key: bool = True) -> tuple[str, str]:
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise _Reply(400, "InvalidObjectName", "the path is not valid UTF-8") from None
        bucket, _, key = decoded.lstrip("/").partition("/")
        if need_key and not key:
            raise _Reply(400, "InvalidObjectName", "no object key in the path")
        return bucket, key

    # ---- presigned ---------------------------------------------------------------------
    def _presigned(self, raw_path: str, query: dict[str, str]) -> None:
        bucket, key = self._bucket_key(raw_path)
        if self.command not in ("GET", "PUT"):
            raise _Reply(405, "MethodNotAllowed", f"{self.command} is not allowed by URL")
        srv = self.server
        ctype = self.headers.get("Content-Type", "")
        user = srv.user(query.get(Q_CRED, ""))
        verify_presigned(
            access_key=user.access_key,
            secret_key=user.secret,
            method=self.command,
            bucket=bucket,
            key=key,
            query=query,
            content_type=ctype,
            meta_headers=self._meta_headers(),
        )
        if self.command == "GET":
            version_id = query.get("versionId") or None
            user.authorize(_read_actions(version_id), bucket, key)
            self._stream_object(bucket, key, version_id)
            return
        user.authorize(("s3:PutObject",), bucket, key)
        length = self._content_length(MAX_PRESIGNED_PUT)
        info = srv.store.put(
            bucket,
            key,
            self.rfile,
            length=length,
            content_type=ctype or DEFAULT_CONTENT_TYPE,
            metadata=self._meta_headers(),
            context=self._context(query.get("X-Qmroct-Credential", "")),
            content_encoding=self.headers.get("Content-Encoding", ""),
        )
        self._send(200, b"", "text/plain", self._object_headers(info))

    def _meta_headers(self) -> dict[str, str]:
        return {
            k.lower()[len(META_HEADER) :]: v
            for k, v in self.headers.items()
            if k.lower().startswith(META_HEADER)
        }

    @staticmethod
    def _object_headers(info: ObjectInfo) -> dict[str, str]:
        headers = {"ETag": f'"{info.etag}"'}
        if info.version_id:
            headers["x-amz-version-id"] = info.version_id
        return headers

    def _stream_object(self, bucket: str, key: str, version_id: str | None) -> None:
        info, path = self.server.store.data_path(bucket, key, version_id=version_id)
        headers = self._object_headers(info)
        if info.last_modified:
            headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
        for name, value in info.metadata.items():
            headers[f"{META_HEADER}{name}"] = value
        encoding = self.server.store.content_encoding(bucket, key, version_id=info.version_id)
        if encoding:
            # As MinIO serves it: the stored bytes, with the header that says how to read them.
            headers["Content-Encoding"] = encoding
        self.send_response(200)
        self.send_header("Content-Type", info.content_type)
        self.send_header("Content-Length", str(info.size))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as fh:
            # sendfile(2): the kernel copies file to socket, no pass through this process (the
            # store serves each scan context to nine measure activations).
            self.wfile.flush()
            self.connection.sendfile(fh)

    # ---- signed API --------------------------------------------------------------------
    def _api(self, raw_path: str, raw_query: str, query: dict[str, str]) -> None:
        srv = self.server
        body = self._read_body(MAX_API_BODY)
        headers = {k.lower(): v for k, v in self.headers.items()}
        user = srv.user(_request_credential(headers))
        verify_request(
            access_key=user.access_key,
            secret_key=user.secret,
            method=self.command,
            path=raw_path,
            raw_query=raw_query,
            headers=headers,
            body=body,
        )
        route, _, rest = raw_path[len(API_PREFIX) :].partition("/")
        store = srv.store
        ctx = self._context(user.access_key)
        method = self.command
        if route == "bucket":
            bucket, _ = self._bucket_key("/" + rest, need_key=False)
            if method == "PUT":
                # MinIO: PutBucketHandler checks s3:CreateBucket, PutBucketVersioningHandler
                # s3:PutBucketVersioning (cmd/bucket-handlers.go, bucket-versioning-handler.go).
                versioning = query.get("versioning", "true") == "true"
                exists = store.bucket_exists(bucket)
                user.authorize(("s3:HeadBucket", "s3:ListBucket"), bucket)
                if not exists:
                    user.authorize(("s3:CreateBucket",), bucket)
                if "setVersioning" in query or (versioning and not exists):
                    user.authorize(("s3:PutBucketVersioning",), bucket)
                store.ensure_bucket(bucket, versioning=versioning)
                if "setVersioning" in query:
                    store.set_versioning(bucket, versioning)
                return self._json(200, {"bucket": bucket})
            if method == "GET":
                # MinIO's HeadBucketHandler: s3:HeadBucket, else s3:ListBucket.
                user.authorize(("s3:HeadBucket", "s3:ListBucket"), bucket)
                return self._json(200, {"exists": store.bucket_exists(bucket)})
        elif route == "notification":
            bucket, _ = self._bucket_key("/" + rest, need_key=False)
            if method == "PUT":
                user.authorize(("s3:PutBucketNotification",), bucket)
                store.set_notification(bucket, _TARGETS.validate_json(body))
                return self._json(200, {"bucket": bucket})
            if method == "GET":
                user.authorize(("s3:GetBucketNotification",), bucket)
                targets = store.get_notification(bucket)
                return self._json(200, [t.model_dump() for t in targets])
        elif route == "list":
            bucket, _ = self._bucket_key("/" + rest, need_key=False)
            user.authorize(("s3:ListBucket",), bucket)
            infos = store.list(bucket, query.get("prefix", ""))
            return self._json(200, [i.model_dump(mode="json") for i in infos])
        elif route in ("object", "stat", "versions", "uploads"):
            bucket, key = self._bucket_key("/" + rest)
            self._authorize_object(user, route, method, bucket, key, query)
            return self._object_api(route, method, bucket, key, query, body, ctx)
        raise _Reply(400, "InvalidRequest", f"unknown API call {method} {route!r}")

    @staticmethod
    def _authorize_object(
        user: User, route: str, method: str, bucket: str, key: str, query: dict[str, str]
    ) -> None:
        """The IAM action of each object call, as MinIO's handlers check it."""
        if route == "versions":
            # ListObjectVersions: s3:ListBucketVersions, else s3:ListBucket (cmd/auth-handler.go).
            user.authorize(("s3:ListBucketVersions", "s3:ListBucket"), bucket)
        elif route in ("object", "stat") and method in ("GET", "HEAD"):
            user.authorize(_read_actions(query.get("versionId") or None), bucket, key)
        elif route == "uploads" and method == "GET":
            # ListObjectPartsHandler (cmd/object-multipart-handlers.go).
            user.authorize(("s3:ListMultipartUploadParts",), bucket, key)
        elif route == "uploads" and method == "DELETE":
            user.authorize(("s3:AbortMultipartUpload",), bucket, key)
        else:
            # PUT object, and create / upload part / complete of a multipart upload: every one
            # is s3:PutObject in MinIO (isPutActionAllowed, cmd/object-*handlers.go).
            user.authorize(("s3:PutObject",), bucket, key)

    def _object_api(
        self,
        route: str,
        method: str,
        bucket: str,
        key: str,
        query: dict[str, str],
        body: bytes,
        ctx: RequestContext,
    ) -> None:
        store = self.server.store
        version_id = query.get("versionId") or None
        if route == "object" and method == "PUT":
            info = store.put(
                bucket,
                key,
                body,
                content_type=self.headers.get("Content-Type", DEFAULT_CONTENT_TYPE),
                metadata=self._meta_headers(),
                context=ctx,
                content_encoding=self.headers.get("Content-Encoding", ""),
            )
            return self._json(200, info.model_dump(mode="json"))
        if route == "object" and method in ("GET", "HEAD"):
            return self._stream_object(bucket, key, version_id)
        if route == "stat" and method == "GET":
            info = store.stat(bucket, key, version_id=version_id)
            return self._json(200, info.model_dump(mode="json"))
        if route == "versions" and method == "GET":
            infos = store.list_versions(bucket, key)
            return self._json(200, [i.model_dump(mode="json") for i in infos])
        if route == "uploads":
            upload_id = query.get("uploadId", "")
            if method == "POST" and not upload_id:
                spec = json.loads(body or b"{}")
                uid = store.start_multipart(
                    bucket,
                    key,
                    str(spec.get("content_type") or DEFAULT_CONTENT_TYPE),
                    dict(spec.get("metadata") or {}),
                    content_encoding=str(spec.get("content_encoding") or ""),
                )
                return self._json(200, {"upload_id": uid})
            if method == "PUT":
                try:
                    number = int(query.get("partNumber", ""))
                except ValueError:
                    raise _Reply(400, "InvalidArgument", "partNumber must be an integer") from None
                etag = store.upload_part(bucket, key, upload_id, number, body)
                return self._json(200, {"etag": etag})
            if method == "GET":
                return self._json(200, [list(p) for p in store.list_parts(bucket, key, upload_id)])
            if method == "POST":
                info = store.complete_multipart(
                    bucket, key, upload_id, _PARTS.validate_json(body), context=ctx
                )
                return self._json(200, info.model_dump(mode="json"))
            if method == "DELETE":
                store.abort_multipart(bucket, key, upload_id)
                return self._json(200, {"aborted": upload_id})
        raise _Reply(400, "InvalidRequest", f"unknown API call {method} {route!r}")


def _read_actions(version_id: str | None) -> tuple[str, ...]:
    # HEAD and GET are both s3:GetObject (MinIO's HeadObjectHandler and GetObjectHandler). A
    # versioned read also needs s3:GetObjectVersion in AWS and moto; MinIO asks s3:GetObject
    # only. The stricter rule holds here, so a policy that works here works on all three.
    return ("s3:GetObjectVersion",) if version_id else ("s3:GetObject",)


class _Server(CountingHTTPServer):
    store: LocalFolderStore
    secret: str
    access_key: str
    users: dict[str, User]

    def user(self, access_key: str) -> User:
        found = self.users.get(access_key) if access_key else None
        if found is None:
            raise _Reply(403, "InvalidAccessKeyId", "the access key does not exist")
        return found


class LocalStoreServer(BackgroundHTTPServer):
    """Serve ``store`` on ``host:port`` (port 0 picks a free one).

    ``secret`` signs both presigned URLs and API requests; ``access_key`` names the one
    trusted credential. Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    thread_name = "localstore-http"

    def __init__(
        self,
        store: LocalFolderStore,
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str = "",
        *,
        access_key: str = "qmroct",
    ) -> None:
        if not secret:
            raise ConfigError("the local store server needs a non-empty secret")
        self.store = store
        httpd = _Server((host, port), _Handler)
        httpd.store = store
        httpd.secret = secret
        httpd.access_key = access_key
        httpd.users = {access_key: User(access_key, secret, None, "owner")}
        self._httpd_users = httpd.users
        super().__init__(httpd, host)
        self.access_key = access_key
        if not store.origin_endpoint:
            store.origin_endpoint = self.endpoint

    def add_user(
        self, access_key: str, secret: str, policy: dict[str, Any], *, role: str = ""
    ) -> None:
        """Add (or replace) a credential held to ``policy`` (an IAM policy document), as
        ``mc admin user add`` plus ``mc admin policy attach`` do on MinIO."""
        if not access_key or not secret:
            raise ConfigError("a store user needs a non-empty access key and secret")
        if access_key == self.access_key:
            raise ConfigError(f"{access_key!r} is the owner's key; pick another for a user")
        self._httpd_users[access_key] = User(
            access_key, secret, Policy(policy, name=role or access_key), role
        )

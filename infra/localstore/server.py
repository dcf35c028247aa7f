"""The local folder store over HTTP, on loopback, the way MinIO serves its buckets.

Two doors:

- ``GET|PUT /{bucket}/{key}?X-Qmroct-...``: presigned single-object URLs for code that holds no
  credentials (measure actions). Each is scoped to one method, one object, one version (and
  for PUT one content type) and expires within seven days. A bad or expired one gets a 403
  with an S3-style XML error.
- ``/_api/...``: signed requests (access key + HMAC-SHA256) from trusted clients
  (:class:`qmroct.objectstore.local.LocalStoreClient`): buckets, objects, listings, versions,
  notification targets and multipart uploads.
"""

from __future__ import annotations

import json
import logging
import shutil
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

from pydantic import TypeAdapter, ValidationError
from qmroct.errors import ConfigError, InvalidKey
from qmroct.httpservice import BackgroundHTTPServer
from qmroct.localstore.store import LocalFolderStore, RequestContext
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
            self._error(403, exc.code, exc.message)
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
        verify_presigned(
            access_key=srv.access_key,
            secret_key=srv.secret,
            method=self.command,
            bucket=bucket,
            key=key,
            query=query,
            content_type=ctype,
        )
        if self.command == "GET":
            self._stream_object(bucket, key, query.get("versionId") or None)
            return
        length = self._content_length(MAX_PRESIGNED_PUT)
        info = srv.store.put(
            bucket,
            key,
            self.rfile,
            length=length,
            content_type=ctype or "application/octet-stream",
            metadata=self._meta_headers(),
            context=self._context(query.get("X-Qmroct-Credential", "")),
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
        self.send_response(200)
        self.send_header("Content-Type", info.content_type)
        self.send_header("Content-Length", str(info.size))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, self.wfile, 1 << 20)

    # ---- signed API --------------------------------------------------------------------
    def _api(self, raw_path: str, raw_query: str, query: dict[str, str]) -> None:
        srv = self.server
        body = self._read_body(MAX_API_BODY)
        verify_request(
            access_key=srv.access_key,
            secret_key=srv.secret,
            method=self.command,
            path=raw_path,
            raw_query=raw_query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        route, _, rest = raw_path[len(API_PREFIX) :].partition("/")
        store = srv.store
        ctx = self._context(srv.access_key)
        method = self.command
        if route == "bucket":
            bucket, _ = self._bucket_key("/" + rest, need_key=False)
            if method == "PUT":
                versioning = query.get("versioning", "true") == "true"
                store.ensure_bucket(bucket, versioning=versioning)
                if "setVersioning" in query:
                    store.set_versioning(bucket, versioning)
                return self._json(200, {"bucket": bucket})
            if method == "GET":
                return self._json(200, {"exists": store.bucket_exists(bucket)})
        elif route == "notification":
            bucket, _ = self._bucket_key("/" + rest, need_key=False)
            if method == "PUT":
                store.set_notification(bucket, _TARGETS.validate_json(body))
                return self._json(200, {"bucket": bucket})
            if method == "GET":
                targets = store.get_notification(bucket)
                return self._json(200, [t.model_dump() for t in targets])
        elif route == "list":
            bucket, _ = self._bucket_key("/" + rest, need_key=False)
            infos = store.list(bucket, query.get("prefix", ""))
            return self._json(200, [i.model_dump(mode="json") for i in infos])
        elif route in ("object", "stat", "versions", "uploads"):
            bucket, key = self._bucket_key("/" + rest)
            return self._object_api(route, method, bucket, key, query, body, ctx)
        raise _Reply(400, "InvalidRequest", f"unknown API call {method} {route!r}")

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
                content_type=self.headers.get("Content-Type", "application/octet-stream"),
                metadata=self._meta_headers(),
                context=ctx,
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
                    str(spec.get("content_type") or "application/octet-stream"),
                    dict(spec.get("metadata") or {}),
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    store: LocalFolderStore
    secret: str
    access_key: str


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
        super().__init__(httpd, host)
        self.access_key = access_key
        if not store.origin_endpoint:
            store.origin_endpoint = self.endpoint

"""OpenWhisk's REST API (the subset qmroct and ``wsk`` use) on a loopback port.

Every ``/api/v1`` call needs HTTP Basic ``uuid:key``; ``_`` stands for the default namespace.
Status codes follow the controller: 200, 202 ``{"activationId"}``, 204 (no active rule),
400, 401, 404, 409, 413, 429, 502.
"""

from __future__ import annotations

import base64
import hmac
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError
from qmroct.runtime.controller import (
    DEFAULT_BLOCKING_TIMEOUT_MS,
    SUPPORTED_KINDS,
    Controller,
    RequestError,
)
from qmroct.runtime.entities import ActionPut
from qmroct.runtime.invoker import Throttled
from qmroct.runtime.messages import is_response_too_large
from qmroct.runtime.records import DEVELOPER_ERROR, SUCCESS

UNAUTHENTICATED = "The supplied authentication is invalid."
NO_AUTH = "The resource requires authentication, which was not supplied with the request."
_MAX_BODY = 64 * 1024 * 1024


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() == "true"


def _int(query: dict[str, list[str]], name: str) -> int | None:
    try:
        return int(query[name][0]) if name in query else None
    except ValueError:
        return None


def runtimes_document() -> dict[str, Any]:
    """``GET /``: the kinds this deployment runs."""
    kinds = [
        {"kind": k, "default": i == 0, "deprecated": False, "attached": False}
        for i, k in enumerate(k for k in SUPPORTED_KINDS if k.startswith("python"))
    ]
    return {
        "description": "qmroct embedded OpenWhisk runtime",
        "api_paths": ["/api/v1"],
        "runtimes": {"python": kinds},
        "support": {"github": "https://github.com/apache/openwhisk"},
        "build": f"python {sys.version.split()[0]}",
    }


class ApiServer:
    """The REST API of one controller; ``auth`` is the ``uuid:key`` pair generated at start."""

    def __init__(self, controller: Controller, auth: str | None = None, port: int = 0) -> None:
        self.controller = controller
        self.auth = auth or f"{uuid.uuid4()}:{base64.b32encode(uuid.uuid4().bytes).decode()[:64]}"
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def api_host(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def authorized(self, header: str | None) -> bool | None:
        """True: good credentials, False: wrong ones, None: none sent."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            given = base64.b64decode(header[6:].strip()).decode()
        except ValueError:
            return False
        return hmac.compare_digest(given, self.auth)


def _make_handler(api: ApiServer) -> type[BaseHTTPRequestHandler]:
    ctl = api.controller

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as separate writes; Nagle would hold the body back.
        disable_nagle_algorithm = True
        _raw = b""

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the activation records are the log."""

        # -- plumbing -----------------------------------------------------------------------
        def _send(self, status: int, payload: Any = None) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message, "code": uuid.uuid4().hex})

        def _body(self) -> Any:
            raw = self._raw
            if not raw.strip():
                return {}
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise RequestError(f"The request content was malformed: {exc}") from exc

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self.close_connection = True
                self._error(413, f"Request larger than allowed: {length} > {_MAX_BODY} bytes.")
                return
            # Read the body before any answer, so a kept-alive connection stays in step.
            self._raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            parts = [unquote(p) for p in url.path.split("/") if p]
            try:
                if not parts and method == "GET":
                    self._send(200, runtimes_document())
                    return
                if parts[:2] != ["api", "v1"]:
                    self._error(404, "The requested resource does not exist.")
                    return
                ok = api.authorized(self.headers.get("Authorization"))
                if not ok:
                    self._error(401, NO_AUTH if ok is None else UNAUTHENTICATED)
                    return
                self._route(method, parts[2:], query)
            except Throttled as exc:
                self._error(429, str(exc))
            except RequestError as exc:
                self._error(exc.status, exc.message)
            except ValidationError as exc:
                self._error(400, f"The request content was malformed: {exc.errors()[0]['msg']}")
            except Exception as exc:  # noqa: BLE001 - answer, never drop the connection
                print(f"{method} {self.path}: {exc!r}", file=sys.stderr)
                self._error(500, "There was an error processing your request.")

        def _route(self, method: str, parts: list[str], query: dict[str, list[str]]) -> None:
            if parts == ["namespaces"] and method == "GET":
                self._send(200, [ctl.namespace])
                return
            if len(parts) < 3 or parts[0] != "namespaces":
                self._error(404, "The requested resource does not exist.")
                return
            ns, collection, rest = parts[1], parts[2], parts[3:]
            if ns not in ("_", ctl.namespace):
                self._error(403, f"The supplied authentication is not authorized to access '{ns}'.")
                return
            entity = "/".join(rest)
            if collection == "actions":
                self._actions(method, entity, query)
            elif collection == "triggers" and method == "POST" and entity:
                headers = {k.lower(): v for k, v in self.headers.items()}
                activation_id = ctl.fire_trigger(entity, self._body(), headers)
                if activation_id is None:
                    self._send(204)
                else:
                    self._send(202, {"activationId": activation_id})
            elif collection == "activations" and method == "GET":
                self._activations(rest, query)
            elif collection == "limits" and method == "GET":
                self._send(200, ctl.limits())
            else:
                self._error(405 if collection in ("actions", "triggers") else 404, "Not supported.")

        def _actions(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and not path:
                self._send(200, [a.model_dump(exclude={"exec"}) for a in ctl.actions()])
            elif method == "GET":
                self._send(200, ctl.get_action(path).model_dump())
            elif method == "PUT":
                put = ActionPut.model_validate(self._body())
                entity = ctl.put_action(path, put, overwrite=_flag(query, "overwrite"))
                self._send(200, entity.model_dump(exclude={"exec": {"code"}}))
            elif method == "POST":
                self._invoke(path, query)
            else:
                self._error(405, "Not supported.")

        def _invoke(self, path: str, query: dict[str, list[str]]) -> None:
            body = self._body()
            if not isinstance(body, dict):
                raise RequestError("The request content was malformed: not a JSON object.")
            invocation = ctl.invoke(path, body)
            if not _flag(query, "blocking"):
                self._send(202, {"activationId": invocation.activation_id})
                return
            timeout_ms = _int(query, "timeout") or DEFAULT_BLOCKING_TIMEOUT_MS
            record = invocation.wait(min(timeout_ms, 300000) / 1000)
            if record is None:
                self._send(202, {"activationId": invocation.activation_id})
                return
            code = record.response.statusCode
            status = 200 if code == SUCCESS else 502 if code in (1, 2) else 500
            error = (record.response.result or {}).get("error") if code == DEVELOPER_ERROR else None
            if is_response_too_large(error):
                status = 413
            if _flag(query, "result"):
                self._send(status, record.response.result)
            else:
                self._send(status, record.model_dump(exclude_none=True))

        def _activations(self, rest: list[str], query: dict[str, list[str]]) -> None:
            if not rest:
                limit = min(_int(query, "limit") or 30, 200)
                records = ctl.store.list(
                    name=query.get("name", [None])[0],
                    since=_int(query, "since"),
                    limit=limit,
                    skip=_int(query, "skip") or 0,
                )
                docs = _flag(query, "docs")
                self._send(
                    200, [r.model_dump(exclude_none=True) if docs else r.summary() for r in records]
                )
                return
            record = ctl.store.get(rest[0])
            if record is None:
                self._error(404, "The requested resource does not exist.")
            elif rest[1:] == ["logs"]:
                self._send(200, {"logs": record.logs})
            elif rest[1:] == ["result"]:
                self._send(200, record.response.model_dump())
            else:
                self._send(200, record.model_dump(exclude_none=True))

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

    return Handler

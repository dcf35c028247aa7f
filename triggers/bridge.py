"""The MinIO-webhook to OpenWhisk-trigger bridge.

MinIO POSTs one event per request with ``Authorization: Bearer <token>``. The bridge checks
the token, validates the body (:class:`qmroct.events.EventLog`), keeps only real object
creations on a configured route (:mod:`qmroct.triggers.filters`) and fires that route's
trigger with the event body as the trigger's parameters, exactly what MinIO would send if it
fired the trigger itself. Answers:

- 401: missing or wrong token; 400: not JSON, not a MinIO event, or ``Key`` disagrees with
  the record; 413: body over the limit. Nothing fires.
- 202: fired; 200: well-formed but ignored (tagging, another bucket, a hostile key). An
  ignored event is acknowledged on purpose: a non-2xx would make MinIO retry it forever and
  block its queue behind it.
- 503: the trigger fire failed (OpenWhisk 429 or down), so MinIO keeps the event and retries.
"""

from __future__ import annotations

import hmac
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from qmroct.events import EventLog
from qmroct.httpservice import BackgroundHTTPServer
from qmroct.triggers.filters import Route, classify
from qmroct.triggers.fire import FireFn

log = logging.getLogger(__name__)


class BridgeConfig(BaseModel):
    token: str = Field(min_length=8, description="the bearer token MinIO sends (auth_token)")
    routes: list[Route]
    max_body: int = 1024 * 1024


class BridgeReply(BaseModel):
    status: int
    body: dict[str, Any]


class Bridge:
    """The request logic, independent of the HTTP server (so it is testable directly)."""

    def __init__(self, config: BridgeConfig, fire: FireFn) -> None:
        self.config = config
        self.fire = fire

    def _reject(self, status: int, reason: str) -> BridgeReply:
        log.warning("bridge: rejected with %s: %s", status, reason)
        return BridgeReply(status=status, body={"error": reason})

    def handle(self, authorization: str | None, body: bytes) -> BridgeReply:
        expected = f"Bearer {self.config.token}"
        if not authorization or not hmac.compare_digest(authorization.encode(), expected.encode()):
            return self._reject(401, "missing or wrong bearer token")
        if len(body) > self.config.max_body:
            return self._reject(413, f"body of {len(body)} bytes is over {self.config.max_body}")
        try:
            params = json.loads(body)
            event = EventLog.model_validate(params)
        except (ValueError, ValidationError) as exc:
            return self._reject(400, f"not a MinIO event: {str(exc).splitlines()[0][:200]}")
        if not event.records:
            return self._reject(400, "the event has no records")
        for obj in event.objects():
            if event.key != f"{obj.bucket}/{obj.key}":
                return self._reject(400, "top-level Key does not match the record's bucket/key")
        fired: list[dict[str, Any]] = []
        ignored: list[dict[str, str]] = []
        for verdict in classify(event, self.config.routes):
            where = f"{verdict.obj.bucket}/{verdict.obj.key}"
            if verdict.route is None:
                log.info(
                    "bridge: ignored %s (%s): %s", where, verdict.obj.event_name, verdict.reason
                )
                ignored.append({"key": where, "reason": verdict.reason})
                continue
            try:
                activation = self.fire(verdict.route.trigger, params)
            except Exception as exc:  # any failure: answer 503 so MinIO redelivers
                log.warning(
                    "bridge: firing %s for %s failed: %s", verdict.route.trigger, where, exc
                )
                return BridgeReply(
                    status=503, body={"error": f"trigger {verdict.route.trigger} failed: {exc}"}
                )
            log.info("bridge: %s fired %s (%s)", where, verdict.route.trigger, activation)
            fired.append({"trigger": verdict.route.trigger, "activationId": activation})
        return BridgeReply(status=202 if fired else 200, body={"fired": fired, "ignored": ignored})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small replies otherwise wait on delayed ACKs

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def _reply(self, reply: BridgeReply) -> None:
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if reply.status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802 - MinIO may probe the endpoint
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        bridge = self.server.bridge
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._reply(bridge._reject(411, "Content-Length is required"))
        if length > bridge.config.max_body:
            self.close_connection = True
            return self._reply(bridge._reject(413, f"body of {length} bytes is too large"))
        body = self.rfile.read(length)
        self._reply(bridge.handle(self.headers.get("Authorization"), body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    bridge: Bridge


class BridgeServer(BackgroundHTTPServer):
    """Serve a :class:`Bridge` on ``host:port`` (port 0 picks a free one)."""

    thread_name = "minio-bridge"

    def __init__(
        self, config: BridgeConfig, fire: FireFn, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        httpd = _Server((host, port), _Handler)
        httpd.bridge = Bridge(config, fire)
        super().__init__(httpd, host)

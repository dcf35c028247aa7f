"""OpenWhisk's REST API, as ``wsk``, ``wskdeploy`` and the npm ``openwhisk`` client use it, on a
loopback port.

Every ``/api/v1`` call needs HTTP Basic ``uuid:key``; ``_`` stands for the default namespace.
Actions, triggers, rules and packages have GET, list (``limit``/``skip``/``count``), PUT (409
without ``overwrite=true`` on an existing one) and DELETE; rules take ``{"status"}`` posts;
activations list, get, ``/logs`` and ``/result``. Status codes follow the controller
(apache/openwhisk core/controller/src/main/scala/org/apache/openwhisk/core/controller/*.scala):
200, 202 ``{"activationId"}``, 204 (no active rule), 400, 401, 404, 409, 413, 429, 502.
"""

from __future__ import annotations

import base64
import hmac
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError
from qmroct.httpservice import CountingHTTPServer
from qmroct.runtime import messages
from qmroct.runtime.controller import (
    DEFAULT_BLOCKING_TIMEOUT_MS,
    SUPPORTED_KINDS,
    Controller,
    RequestError,
)
from qmroct.runtime.entities import ActionPut, EntityPut, RulePut
from qmroct.runtime.invoker import Throttled
from qmroct.runtime.messages import is_response_too_large
from qmroct.runtime.records import DEVELOPER_ERROR, SUCCESS

UNAUTHENTICATED = "The supplied authentication is invalid."
ACTIVATION_ID_HEADER = "x-openwhisk-activation-id"
FEED_NAMESPACE, FEED_ACTION = "whisk.system", ["alarms", "alarm"]
NO_AUTH = "The resource requires authentication, which was not supplied with the request."
_MAX_BODY = 64 * 1024 * 1024


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() == "true"


def _int(query: dict[str, list[str]], name: str) -> int | None:
    try:
        return int(query[name][0]) if name in query else None
    except ValueError:
        return None


def _list_window(collection: str, query: dict[str, list[str]]) -> tuple[int, int]:
    """RestAPIs.scala stringToListLimit / stringToListSkip: limit 0 is the maximum, over 200
    or not an integer is a 400, and so is a negative skip. The default limit is 30."""

    def number(key: str, default: int) -> int:
        raw = query.get(key, [str(default)])[0]
        try:
            return int(raw)
        except ValueError:
            raise RequestError(messages.not_an_integer(collection, raw)) from None

    limit, skip = number("limit", 30), number("skip", 0)
    if limit == 0:
        limit = messages.MAX_LIST_LIMIT
    if not 0 < limit <= messages.MAX_LIST_LIMIT:
        raise RequestError(messages.list_limit_out_of_range(collection, limit))
    if skip < 0:
        raise RequestError(messages.list_skip_out_of_range(collection, skip))
    return skip, limit


def _epoch(query: dict[str, list[str]], name: str) -> int | None:
    """Activations.scala stringToInstantDeserializer: epoch milliseconds, else a 400."""
    if name not in query:
        return None
    try:
        return int(query[name][0])
    except ValueError:
        raise RequestError(
            f"Parameter is not a valid value for epoch seconds: {query[name][0]}"
        ) from None


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
        self._httpd = CountingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def api_host(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cpu_s(self) -> float:
        """CPU seconds its request threads used so far."""
        return self._httpd.cpu_s

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
        def _send(
            self, status: int, payload: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
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
            # Namespaces.scala: the subject's namespaces, as a list of names.
            if parts == ["namespaces"] and method == "GET":
                self._send(200, [ctl.namespace])
                return
            if len(parts) < 3 or parts[0] != "namespaces":
                self._error(404, messages.NOT_FOUND)
                return
            ns, collection, rest = parts[1], parts[2], parts[3:]
            if ns == FEED_NAMESPACE and collection == "actions" and rest == FEED_ACTION:
                self._feed(method)
                return
            if ns not in ("_", ctl.namespace):
                self._error(403, f"The supplied authentication is not authorized to access '{ns}'.")
                return
            entity = "/".join(rest)
            if collection == "actions":
                self._actions(method, entity, query)
            elif collection == "triggers":
                self._triggers(method, entity, query)
            elif collection == "rules":
                self._rules(method, entity, query)
            elif collection == "packages":
                self._packages(method, entity, query)
            elif collection == "activations" and method == "GET":
                self._activations(rest, query)
            elif collection == "limits" and method == "GET":
                self._send(200, ctl.limits())
            elif collection in ("activations", "limits"):
                self._error(405, "HTTP method not allowed, supported methods: GET")
            else:
                self._error(404, messages.NOT_FOUND)

        def _feed(self, method: str) -> None:
            """The alarms provider's feed action, invoked as ``wsk trigger create --feed``
            invokes it (blocking, with lifecycleEvent, triggerName, authKey, cron)."""
            if method != "POST" or ctl.feed_provider is None:
                self._error(404, messages.NOT_FOUND)
                return
            body = self._body()
            if not isinstance(body, dict):
                raise RequestError("The request content was malformed: not a JSON object.")
            try:
                result = ctl.feed_provider(body)
            except ValueError as exc:
                self._send(502, {"error": str(exc)})
                return
            self._send(200, result)

        def _list(self, collection: str, items: list[Any], query: dict[str, list[str]]) -> None:
            """RestAPIs.scala ListLimit/ListSkip and ApiUtils countEntities: newest first."""
            skip, limit = _list_window(collection, query)
            if _flag(query, "count"):
                self._send(200, {collection: max(len(items) - skip, 0)})
                return
            items = sorted(items, key=lambda e: e.updated, reverse=True)
            self._send(200, [e.summary() for e in items[skip : skip + limit]])

        def _actions(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and not path.strip("/"):
                self._list("actions", ctl.actions(), query)
            elif method == "GET" and path.endswith("/") and "/" not in path.strip("/"):
                # Actions.scala listPackageActions: GET actions/{pkg}/ lists that package.
                ctl.get_package(path.strip("/"))
                self._list("actions", ctl.package_actions(path.strip("/")), query)
            elif method == "GET":
                code = query.get("code", ["true"])[0].lower() != "false"
                self._send(200, ctl.get_action(path).to_json(code=code))
            elif method == "PUT":
                put = ActionPut.model_validate(self._body())
                entity = ctl.put_action(path, put, overwrite=_flag(query, "overwrite"))
                self._send(200, entity.to_json(code=False))
            elif method == "POST":
                self._invoke(path, query)
            elif method == "DELETE":
                self._send(200, ctl.delete_action(path).to_json(code=False))
            else:
                self._error(405, "Not supported.")

        def _triggers(self, method: str, name: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and not name:
                self._list("triggers", ctl.triggers(), query)
            elif method == "GET":
                trigger = ctl.get_trigger(name)
                self._send(200, trigger.to_json(ctl.trigger_rules(trigger.name)))
            elif method == "PUT":
                put = EntityPut.model_validate(self._body())
                entity = ctl.put_trigger(name, put=put, overwrite=_flag(query, "overwrite"))
                self._send(200, entity.to_json(ctl.trigger_rules(entity.name)))
            elif method == "POST" and name:
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = self._body()
                if not isinstance(body, dict):
                    raise RequestError("The request content was malformed: not a JSON object.")
                activation_id = ctl.fire_trigger(name, body, headers)
                if activation_id is None:  # Triggers.scala: no active rule is NoContent
                    self._send(204)
                else:
                    self._send(202, {"activationId": activation_id})
            elif method == "DELETE" and name:
                trigger = ctl.delete_trigger(name)
                self._send(200, trigger.to_json())
            else:
                self._error(405, "Not supported.")

        def _rules(self, method: str, name: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and not name:
                self._list("rules", ctl.rules(), query)
            elif method == "GET":
                self._send(200, ctl.get_rule(name).to_json())
            elif method == "PUT":
                put = RulePut.model_validate(self._body())
                old = next((r for r in ctl.rules() if r.name == name), None)
                trigger = put.trigger or (old.trigger if old else None)
                action = put.action or (old.action if old else None)
                if not trigger or not action:
                    raise RequestError(messages.RULE_NEEDS_TRIGGER_AND_ACTION)
                rule = ctl.put_rule(
                    name,
                    trigger,
                    action,
                    overwrite=_flag(query, "overwrite"),
                    annotations=put.annotations,
                )
                self._send(200, rule.to_json())
            elif method == "POST" and name:
                # Rules.scala activate: {"status": "active" | "inactive"}.
                body = self._body()
                status = body.get("status") if isinstance(body, dict) else None
                if status not in ("active", "inactive"):
                    raise RequestError("status must be 'active' or 'inactive'")
                ctl.set_rule_state(name, status == "active")
                self._send(200, {})
            elif method == "DELETE" and name:
                self._send(200, ctl.delete_rule(name).to_json())
            else:
                self._error(405, "Not supported.")

        def _packages(self, method: str, name: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and not name:
                self._list("packages", ctl.packages(), query)
            elif method == "GET":
                pkg = ctl.get_package(name)
                doc = pkg.to_json()
                # Packages.scala getPackage: with its actions' summaries, and its feeds.
                doc["actions"] = [
                    {
                        "name": a.name,
                        "version": a.version,
                        "annotations": a.summary()["annotations"],
                    }
                    for a in ctl.package_actions(pkg.name)
                ]
                doc["feeds"] = []
                self._send(200, doc)
            elif method == "PUT":
                body = self._body()
                if isinstance(body, dict) and body.get("binding"):
                    raise RequestError("package bindings are not supported by this deployment")
                put = EntityPut.model_validate(body)
                pkg = ctl.put_package(name, put=put, overwrite=_flag(query, "overwrite"))
                self._send(200, pkg.to_json())
            elif method == "DELETE" and name:
                self._send(200, ctl.delete_package(name).to_json())
            else:
                self._error(405, "Not supported.")

        def _invoke(self, path: str, query: dict[str, list[str]]) -> None:
            body = self._body()
            if not isinstance(body, dict):
                raise RequestError("The request content was malformed: not a JSON object.")
            invocation = ctl.invoke(path, body)
            # Actions.scala doInvoke: respondWithActivationIdHeader on 202 and on the result.
            header = {ACTIVATION_ID_HEADER: invocation.activation_id}
            if not _flag(query, "blocking"):
                self._send(202, {"activationId": invocation.activation_id}, header)
                return
            timeout_ms = _int(query, "timeout") or DEFAULT_BLOCKING_TIMEOUT_MS
            record = invocation.wait(min(timeout_ms, 300000) / 1000)
            if record is None:
                self._send(202, {"activationId": invocation.activation_id}, header)
                return
            code = record.response.statusCode
            status = 200 if code == SUCCESS else 502 if code in (1, 2) else 500
            error = (record.response.result or {}).get("error") if code == DEVELOPER_ERROR else None
            if is_response_too_large(error):
                status = 413
            if _flag(query, "result"):
                self._send(status, record.response.result, header)
            else:
                self._send(status, record.model_dump(exclude_none=True), header)

        def _activations(self, rest: list[str], query: dict[str, list[str]]) -> None:
            if not rest:
                self._list_activations(query)
                return
            # Activations.scala entityname: ActivationId.parse rejects with 400, not 404.
            aid = rest[0]
            if len(aid) != 32:
                raise RequestError(messages.activation_id_length(len(aid)))
            if any(c not in "0123456789abcdefABCDEF" for c in aid):
                raise RequestError(messages.ACTIVATION_ID_ILLEGAL)
            record = ctl.store.get(aid)
            if record is None:
                self._error(404, messages.NOT_FOUND)
            elif rest[1:] == ["logs"]:
                self._send(200, {"logs": record.logs})
            elif rest[1:] == ["result"]:
                self._send(200, record.response.model_dump())
            elif rest[1:]:
                self._error(404, messages.NOT_FOUND)
            else:
                self._send(200, record.model_dump(exclude_none=True))

        def _list_activations(self, query: dict[str, list[str]]) -> None:
            """Activations.scala list: skip, limit, count (not with docs), docs, name, since,
            upto."""
            skip, limit = _list_window("activations", query)
            name = query.get("name", [None])[0]
            if name is not None:
                # Activations.scala stringToRestrictedEntityPath: name or pkg/name, no more.
                parts = [p for p in name.split("/") if p]
                if not parts or len(parts) > 2:
                    raise RequestError(messages.bad_name_filter(name))
                name = "/".join(parts)
            since, upto = _epoch(query, "since"), _epoch(query, "upto")
            docs, count = _flag(query, "docs"), _flag(query, "count")
            if count and docs:
                raise RequestError(messages.DOCS_WITH_COUNT)
            if count:
                n = ctl.store.count(name=name, since=since, upto=upto, skip=skip)
                self._send(200, {"activations": n})
                return
            records = ctl.store.list(name=name, since=since, upto=upto, limit=limit, skip=skip)
            self._send(
                200, [r.model_dump(exclude_none=True) if docs else r.summary() for r in records]
            )

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

    return Handler

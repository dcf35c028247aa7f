"""A small client for OpenWhisk's REST API (``/api/v1``), over ``requests``.

There is no maintained Python OpenWhisk client, so this speaks the API as ``wsk`` does: HTTP
Basic ``uuid:key``, ``_`` for the default namespace, the same paths, query parameters and
bodies. It works unchanged against a real OpenWhisk and the embedded runtime.

Inside an action, ``OpenWhiskClient.from_env()`` reads ``__OW_API_HOST``, ``__OW_API_KEY``
(present only with the ``provide-api-key: true`` annotation) and ``__OW_NAMESPACE``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from qmroct.errors import ConfigError, QmroctError


class OpenWhiskError(QmroctError):
    """An OpenWhisk API call failed; ``status`` is the HTTP status, ``body`` the JSON answer."""

    def __init__(self, what: str, status: int, message: str, body: Any = None) -> None:
        self.what = what
        self.status = status
        self.message = message
        self.body = body
        super().__init__(f"{what}: HTTP {status}: {message}")


class Unauthorized(OpenWhiskError):
    """401/403: the credentials are wrong, missing, or not allowed in this namespace."""


class NotFound(OpenWhiskError):
    """404: no such action, trigger or activation."""


class Throttled(OpenWhiskError):
    """429: too many concurrent requests, or too many in the last minute."""


class PayloadTooLarge(OpenWhiskError):
    """413: the parameters, the request, or a blocking invoke's result are over the 1 MB limit."""


class ActionError(OpenWhiskError):
    """A blocking invoke ended in error (application, developer or internal error).

    ``result`` is the activation's result (usually ``{"error": ...}``), ``activation_id`` is
    known when the full record was asked for.
    """

    def __init__(
        self, what: str, status: int, message: str, body: Any = None, activation_id: str = ""
    ) -> None:
        super().__init__(what, status, message, body)
        self.activation_id = activation_id
        self.result = body


_BY_STATUS: dict[int, type[OpenWhiskError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    429: Throttled,
}


def _error_message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return body["error"]
        result = (body.get("response") or {}).get("result")
        if isinstance(result, dict) and isinstance(result.get("error"), str):
            return result["error"]
    return fallback


class OpenWhiskClient:
    """Calls one OpenWhisk deployment as one subject (``auth`` is ``uuid:key``)."""

    def __init__(
        self,
        api_host: str,
        auth: str,
        namespace: str = "_",
        *,
        timeout_s: float = 75.0,
        verify: bool | str = True,
        session: requests.Session | None = None,
    ) -> None:
        if not api_host:
            raise ConfigError("OpenWhisk client: no API host given")
        if ":" not in auth:
            raise ConfigError("OpenWhisk client: auth must be 'uuid:key'")
        if "://" not in api_host:
            api_host = f"https://{api_host}"
        self.api_host = api_host.rstrip("/")
        self.namespace = namespace or "_"
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.auth = auth
        user, _, key = auth.partition(":")
        self.session.auth = (user, key)
        self.session.verify = verify

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> OpenWhiskClient:
        """From ``__OW_API_HOST``, ``__OW_API_KEY`` and ``__OW_NAMESPACE`` (inside an action)."""
        env = os.environ if env is None else env
        host, key = env.get("__OW_API_HOST", ""), env.get("__OW_API_KEY", "")
        if not host or not key:
            raise ConfigError(
                "OpenWhisk client: __OW_API_HOST and __OW_API_KEY are not set "
                "(an action gets the key only with the annotation provide-api-key: true)"
            )
        return cls(host, key, env.get("__OW_NAMESPACE", "_"), **kwargs)

    # -- plumbing ---------------------------------------------------------------------------
    def _url(self, collection: str, name: str = "") -> str:
        namespace = self.namespace
        if name.startswith("/"):  # fully qualified: /namespace/[package/]name
            namespace, _, name = name.strip("/").partition("/")
        base = f"{self.api_host}/api/v1/namespaces/{quote(namespace, safe='')}/{collection}"
        return f"{base}/{quote(name.strip('/'), safe='/')}" if name else base

    def _call(
        self,
        what: str,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout_s: float | None = None,
    ) -> requests.Response:
        try:
            resp = self.session.request(
                method, url, params=params, json=body, timeout=timeout_s or self.timeout_s
            )
        except requests.RequestException as exc:
            raise OpenWhiskError(what, 0, f"cannot reach {self.api_host}: {exc}") from exc
        if resp.status_code < 400 or resp.status_code in (500, 502):
            return resp
        payload = self._json(resp)
        cls = _BY_STATUS.get(resp.status_code, OpenWhiskError)
        raise cls(what, resp.status_code, _error_message(payload, resp.reason or ""), payload)

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json() if resp.content else None
        except ValueError:
            return resp.text

    def _checked(self, what: str, resp: requests.Response) -> Any:
        payload = self._json(resp)
        if resp.status_code in (500, 502):
            activation_id = payload.get("activationId", "") if isinstance(payload, dict) else ""
            message = _error_message(payload, resp.reason or "")
            raise ActionError(what, resp.status_code, message, payload, activation_id)
        return payload

    # -- calls ------------------------------------------------------------------------------
    def invoke(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        blocking: bool = False,
        result: bool = False,
        timeout_ms: int | None = None,
    ) -> Any:
        """Invoke ``[pkg/]action``.

        Non-blocking, or blocking past the wait: ``{"activationId": ...}``. Blocking: the
        result (``result=True``) or the whole activation record. Raises ActionError when the
        activation failed, Throttled (429), PayloadTooLarge (413), NotFound, Unauthorized.
        """
        query: dict[str, Any] = {"blocking": str(blocking).lower(), "result": str(result).lower()}
        if timeout_ms is not None:
            query["timeout"] = int(timeout_ms)
        wait_s = self.timeout_s + (timeout_ms or 60000) / 1000 if blocking else None
        what = f"invoke {name}"
        resp = self._call(
            what,
            "POST",
            self._url("actions", name),
            params=query,
            body=dict(params or {}),
            timeout_s=wait_s,
        )
        return self._checked(what, resp)

    def fire_trigger(self, name: str, params: Mapping[str, Any] | None = None) -> str | None:
        """Fire a trigger: the trigger activation id, or None when no rule is active (204)."""
        what = f"fire trigger {name}"
        resp = self._call(what, "POST", self._url("triggers", name), body=dict(params or {}))
        if resp.status_code == 204:
            return None
        return self._checked(what, resp).get("activationId")

    def update_action(
        self,
        name: str,
        zip_bytes: bytes | None = None,
        *,
        kind: str = "python:3.11",
        main: str = "main",
        image: str | None = None,
        limits: Mapping[str, int] | None = None,
        parameters: Mapping[str, Any] | None = None,
        annotations: Mapping[str, Any] | None = None,
        spec: Mapping[str, Any] | None = None,
        overwrite: bool = True,
    ) -> dict[str, Any]:
        """Create or update an action, with the body ``wsk action update`` sends.

        ``parameters`` replace the whole set (like ``-p``); ``annotations`` merge (``-a``).
        ``limits`` uses the API names: timeout (ms), memory (MB), logs (MB). ``spec`` gives
        the whole body instead.
        """
        if spec is not None:
            body = dict(spec)
        else:
            body = {"namespace": self.namespace, "name": name.split("/")[-1]}
            if zip_bytes is not None:
                exec_: dict[str, Any] = {
                    "kind": "blackbox" if image else kind,
                    "code": base64.b64encode(zip_bytes).decode("ascii"),
                    "binary": True,
                    "main": main,
                }
                if image:
                    exec_["image"] = image
                body["exec"] = exec_
            if limits is not None:
                body["limits"] = dict(limits)
            if parameters is not None:
                body["parameters"] = [{"key": k, "value": v} for k, v in parameters.items()]
            if annotations is not None:
                body["annotations"] = [{"key": k, "value": v} for k, v in annotations.items()]
        what = f"update action {name}"
        query = {"overwrite": str(overwrite).lower()}
        resp = self._call(what, "PUT", self._url("actions", name), params=query, body=body)
        return self._checked(what, resp)

    def get_action(self, name: str, *, code: bool = True) -> dict[str, Any]:
        """``GET .../actions/[pkg/]name``: the action record (with ``exec.code`` when asked)."""
        what = f"get action {name}"
        query = {"code": str(code).lower()}
        resp = self._call(what, "GET", self._url("actions", name), params=query)
        return self._checked(what, resp)

    def list_actions(self, *, limit: int = 200) -> list[dict[str, Any]]:
        """``GET .../actions``: every action of the namespace, packaged ones included, paged
        by ``limit``/``skip`` as ``wsk action list`` pages (200 is the API's maximum)."""
        out: list[dict[str, Any]] = []
        while True:
            query = {"limit": limit, "skip": len(out)}
            resp = self._call("list actions", "GET", self._url("actions"), params=query)
            page = self._checked("list actions", resp) or []
            out.extend(page)
            if len(page) < limit:
                return out

    def activations(
        self,
        name: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        *,
        docs: bool = True,
        skip: int | None = None,
    ) -> list[dict[str, Any]]:
        """Activation records, newest first (``docs=True``: with logs and results); ``skip``
        pages past the first ones (the API answers at most 200 at a time)."""
        query: dict[str, Any] = {}
        if skip:
            query["skip"] = int(skip)
        if name:
            query["name"] = name
        if since is not None:
            query["since"] = int(since)
        if limit is not None:
            query["limit"] = int(limit)
        if docs:
            query["docs"] = "true"
        resp = self._call("list activations", "GET", self._url("activations"), params=query)
        return self._checked("list activations", resp)

    def activation(self, activation_id: str) -> dict[str, Any]:
        what = f"get activation {activation_id}"
        resp = self._call(what, "GET", self._url("activations", activation_id))
        return self._checked(what, resp)

    # -- entities (what `wsk <kind> get/update/delete` and deploy use) -----------------------
    def get_entity(self, collection: str, name: str) -> dict[str, Any]:
        """GET one action, trigger, rule or package; NotFound when there is none."""
        what = f"get {collection[:-1]} {name}"
        return self._checked(what, self._call(what, "GET", self._url(collection, name)))

    def put_entity(
        self, collection: str, name: str, body: Mapping[str, Any], *, overwrite: bool = True
    ) -> dict[str, Any]:
        """PUT (create or, with ``overwrite``, update) an action, trigger, rule or package."""
        what = f"update {collection[:-1]} {name}"
        query = {"overwrite": str(overwrite).lower()}
        resp = self._call(what, "PUT", self._url(collection, name), params=query, body=dict(body))
        return self._checked(what, resp)

    def delete_entity(self, collection: str, name: str) -> dict[str, Any]:
        what = f"delete {collection[:-1]} {name}"
        return self._checked(what, self._call(what, "DELETE", self._url(collection, name)))

    def ensure_package(self, name: str) -> None:
        """Create package ``name`` unless it exists: an action cannot be put into a package
        that does not exist (404, as ``wsk action create pkg/a`` answers)."""
        try:
            self.get_entity("packages", name)
        except NotFound:
            try:
                self.put_entity("packages", name, {}, overwrite=False)
            except OpenWhiskError as exc:
                if exc.status != 409:  # created meanwhile is fine
                    raise

    def set_rule_status(self, name: str, *, active: bool) -> None:
        """Enable or disable a rule (``wsk rule enable/disable``)."""
        what = f"{'enable' if active else 'disable'} rule {name}"
        body = {"status": "active" if active else "inactive"}
        self._checked(what, self._call(what, "POST", self._url("rules", name), body=body))

    def namespace_name(self) -> str:
        """The namespace ``_`` stands for (the subject's first namespace)."""
        if self.namespace != "_":
            return self.namespace
        resp = self._call("list namespaces", "GET", f"{self.api_host}/api/v1/namespaces")
        names = self._checked("list namespaces", resp) or ["_"]
        return str(names[0])

    def limits(self) -> dict[str, Any]:
        resp = self._call("get limits", "GET", self._url("limits"))
        return self._checked("get limits", resp)

    def runtimes(self) -> dict[str, Any]:
        """``GET /``: the deployment's description, with its ``runtimes``."""
        resp = self._call("get runtimes", "GET", f"{self.api_host}/")
        return self._checked("get runtimes", resp)

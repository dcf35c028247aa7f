"""A tiny XNAT REST client: the subset qmroct uses (see docs of XNAT's REST API).

- Authentication: an alias token (``GET /data/services/tokens/issue``) sent as HTTP Basic, once,
  to open a session (``POST /data/JSESSION``); later calls carry only the ``JSESSIONID`` cookie,
  and ``close`` ends the session (``DELETE /data/JSESSION``). Many Basic-auth calls without a
  session overwhelm XNAT's Tomcat. Use it as a context manager: one session per batch.
- The User-Agent is not a browser's: XNAT enforces CSRF tokens only for browsers.
- Writes use query-string parameters (``req_format=qs``), as XNAT's own tools do. Files go as
  ``application/octet-stream``, as xnatpy sends them: XNAT reads a raw body only for its
  supported upload types (or with ``inbody=true``) and answers 400 to anything else, text/html
  and application/json included (xnat-web FileList.handlePost). Item documents (assessors) go as
  XML with ``inbody=true``.
- Only transient failures are retried (no answer, 502/503/504 from XNAT or its proxy, 429),
  with exponential backoff, then :class:`XnatUnavailable`; every other 4xx or 5xx is XNAT's
  answer to this request and will not change: :class:`XnatError` with XNAT's message.
- Alias tokens expire (48 h by default); :meth:`XnatClient.issue_token` asks XNAT for a new one
  while the current one still works (see :mod:`qmroct.xnat.token`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field

from qmroct import __version__
from qmroct.errors import QmroctError

USER_AGENT = f"qmroct/{__version__} python-requests/{requests.__version__}"
SESSION_TYPE = "xnat:optSessionData"
SCAN_TYPE = "xnat:optScanData"
UPLOAD_TYPE = "application/octet-stream"
# Statuses worth another try: no XNAT behind the proxy, XNAT restarting, or too busy.
TRANSIENT = frozenset({429, 502, 503, 504})


class XnatError(QmroctError):
    """XNAT refused a request. ``status`` is the HTTP status, ``message`` XNAT's own words."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method, self.path, self.status, self.message = method, path, status, message
        super().__init__(f"XNAT {method} {path} answered {status}: {message.strip()[:300]}")


class XnatConflict(XnatError):
    """409: the thing exists already (an explicit resource create, say)."""


class XnatUnavailable(XnatError):
    """XNAT did not answer, or answered a transient status, through every retry: try later."""


class XnatToken(BaseModel):
    """An alias token as ``/data/services/tokens/issue`` answers it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    alias: str
    secret: str
    expires_ms: int | None = Field(None, alias="estimatedExpirationTime")


def _q(part: str) -> str:
    return quote(str(part), safe="")


def _message(resp: requests.Response) -> str:
    text = resp.text or resp.reason or ""
    # XNAT's error pages are HTML; the useful sentence sits in <h3> or <p>.
    for tag in ("h3", "p"):
        start = text.find(f"<{tag}>")
        if start >= 0:
            end = text.find(f"</{tag}>", start)
            return text[start + len(tag) + 2 : end if end > 0 else None]
    return text


class XnatClient:
    """One XNAT server, one alias token, one JSESSION at a time."""

    def __init__(
        self,
        url: str,
        alias: str,
        secret: str,
        *,
        timeout: tuple[float, float] = (5.0, 120.0),
        retries: int = 4,
        backoff_s: float = 0.5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._auth = (alias, secret)
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.http = session or requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        self._sleep = sleep
        self.jsession: str | None = None

    # ---------------------------------------------------------------- session
    @property
    def token(self) -> tuple[str, str]:
        return self._auth

    def use_token(self, alias: str, secret: str) -> None:
        """Log in with this alias token from now on (the open session, if any, stays)."""
        self._auth = (alias, secret)

    def __enter__(self) -> XnatClient:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> str:
        """Open a JSESSION with the alias token; later calls send only the cookie."""
        resp = self._send("POST", "/data/JSESSION", auth=self._auth)
        token = resp.cookies.get("JSESSIONID") or resp.text.strip()
        if not token:
            raise XnatError("POST", "/data/JSESSION", resp.status_code, "no session id returned")
        self.jsession = token
        self.http.cookies.set("JSESSIONID", token)
        return token

    def close(self) -> None:
        if self.jsession is None:
            return
        try:
            self._send("DELETE", "/data/JSESSION")
        except XnatError:
            pass  # the session times out on the server anyway
        finally:
            self.jsession = None
            self.http.cookies.clear()

    # ---------------------------------------------------------------- transport
    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        data: bytes | Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> requests.Response:
        if auth is None and self.jsession is None:
            auth = self._auth  # no session open: fall back to Basic for this one call
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                resp = self.http.request(
                    method,
                    self.url + path,
                    params=params,
                    data=data,
                    headers=dict(headers or {}),
                    auth=auth,
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.retries:
                    raise XnatUnavailable(method, path, 0, f"no answer: {exc}") from exc
            else:
                if resp.status_code in ok:
                    return resp
                if resp.status_code == 401 and auth is None and attempt == 0:
                    self.open()  # the session expired: one new session, then the call again
                    continue
                if resp.status_code not in TRANSIENT:
                    cls = XnatConflict if resp.status_code == 409 else XnatError
                    raise cls(method, path, resp.status_code, _message(resp))
                if attempt == self.retries:
                    raise XnatUnavailable(method, path, resp.status_code, _message(resp))
            self._sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    @staticmethod
    def _session_path(project: str, subject: str, session: str) -> str:
        return f"/data/projects/{_q(project)}/subjects/{_q(subject)}/experiments/{_q(session)}"

    # ---------------------------------------------------------------- places
    def put_subject(self, project: str, subject: str) -> int:
        """Create (201) or update (200) a subject."""
        path = f"/data/projects/{_q(project)}/subjects/{_q(subject)}"
        params = {"xsiType": "xnat:subjectData", "req_format": "qs"}
        return self._send("PUT", path, params=params).status_code

    def put_session(
        self,
        project: str,
        subject: str,
        session: str,
        *,
        date: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> str:
        """Create or update an Ophthalmic Tomography session; returns XNAT's answer body."""
        params = {"xsiType": SESSION_TYPE, "req_format": "qs", **dict(extra or {})}
        if date:
            params["date"] = date
        resp = self._send("PUT", self._session_path(project, subject, session), params=params)
        return resp.text.strip()

    def put_scan(
        self,
        project: str,
        subject: str,
        session: str,
        scan: str,
        *,
        scan_type: str,
        quality: str = "usable",
        extra: Mapping[str, str] | None = None,
    ) -> int:
        path = f"{self._session_path(project, subject, session)}/scans/{_q(scan)}"
        params = {
            "xsiType": SCAN_TYPE,
            "req_format": "qs",
            f"{SCAN_TYPE}/type": scan_type,
            f"{SCAN_TYPE}/quality": quality,
            **{f"{SCAN_TYPE}/{k}": v for k, v in (extra or {}).items()},
        }
        return self._send("PUT", path, params=params).status_code

    # ---------------------------------------------------------------- files
    def _resource_path(
        self, project: str, subject: str, session: str, resource: str, scan: str | None
    ) -> str:
        base = self._session_path(project, subject, session)
        if scan is not None:
            base += f"/scans/{_q(scan)}"
        return f"{base}/resources/{_q(resource)}"

    def create_resource(
        self,
        project: str,
        subject: str,
        session: str,
        resource: str,
        *,
        scan: str | None = None,
        content: str = "QC",
    ) -> int:
        """Create a resource explicitly; :class:`XnatConflict` when the label exists."""
        path = self._resource_path(project, subject, session, resource, scan)
        params = {"format": "JSON", "content": content}
        return self._send("PUT", path, params=params).status_code

    def put_file(
        self,
        project: str,
        subject: str,
        session: str,
        resource: str,
        name: str,
        data: bytes,
        *,
        scan: str | None = None,
        overwrite: bool = True,
        content: str = "",
    ) -> list[str]:
        """Upload one file into a resource (created if missing), as xnatpy does: the raw bytes
        as ``application/octet-stream``. Returns XNAT's list of duplicates: non-empty when the
        file existed and ``overwrite`` was False (then it is not replaced)."""
        base = self._resource_path(project, subject, session, resource, scan)
        path = f"{base}/files/{'/'.join(_q(p) for p in name.split('/'))}"
        params = {"overwrite": "true"} if overwrite else {}
        if content:
            params["content"] = content
        resp = self._send(
            "PUT", path, params=params, data=data, headers={"Content-Type": UPLOAD_TYPE}
        )
        return duplicates(resp.text)

    def list_files(
        self, project: str, subject: str, session: str, resource: str, *, scan: str | None = None
    ) -> list[dict[str, Any]]:
        """``ResultSet.Result`` rows (``Name``, ``URI``, ``Size``, ``digest``); [] when absent."""
        path = self._resource_path(project, subject, session, resource, scan) + "/files"
        try:
            resp = self._send("GET", path, params={"format": "json"})
        except XnatError as exc:
            if exc.status == 404:
                return []
            raise
        return list(resp.json().get("ResultSet", {}).get("Result", []))

    def get_file(
        self,
        project: str,
        subject: str,
        session: str,
        resource: str,
        name: str,
        *,
        scan: str | None = None,
    ) -> bytes:
        base = self._resource_path(project, subject, session, resource, scan)
        return self._send("GET", f"{base}/files/{'/'.join(_q(p) for p in name.split('/'))}").content

    # ---------------------------------------------------------------- items
    def session_id(self, project: str, subject: str, session: str) -> str:
        """The experiment ID (``XNAT_E...``) of a session; XnatError 404 when absent."""
        item = self.get_item(self._session_path(project, subject, session))
        return str(item["data_fields"]["ID"])

    def get_item(self, path: str) -> dict[str, Any]:
        """One object as XNAT's item JSON: ``{"meta", "data_fields", "children"}``."""
        items = self._send("GET", path, params={"format": "json"}).json().get("items", [])
        live = [i for i in items if not i.get("meta", {}).get("isHistory")]
        if not live:
            raise XnatError("GET", path, 404, "no item in XNAT's answer")
        return live[0]

    def list_assessors(self, project: str, subject: str, session: str) -> list[dict[str, Any]]:
        """``ResultSet.Result`` rows (``ID``, ``label``, ``xsiType``) of a session's assessors."""
        path = self._session_path(project, subject, session) + "/assessors"
        resp = self._send("GET", path, params={"format": "json"})
        return list(resp.json().get("ResultSet", {}).get("Result", []))

    def get_assessor(self, project: str, subject: str, session: str, label: str) -> dict[str, Any]:
        path = f"{self._session_path(project, subject, session)}/assessors/{_q(label)}"
        return self.get_item(path)

    def put_assessor(
        self, project: str, subject: str, session: str, label: str, document: bytes
    ) -> str:
        """Create or replace an assessor from its XML document; returns its ID."""
        path = f"{self._session_path(project, subject, session)}/assessors/{_q(label)}"
        resp = self._send(
            "PUT",
            path,
            params={"inbody": "true", "allowDataDeletion": "true"},
            data=document,
            headers={"Content-Type": "text/xml"},
        )
        return resp.text.strip()

    # ---------------------------------------------------------------- tokens
    def issue_token(self) -> XnatToken:
        """A new alias token for the logged-in user (AliasTokenRestlet ``issue``)."""
        resp = self._send("GET", "/data/services/tokens/issue", params={"format": "json"})
        return XnatToken.model_validate(resp.json())


def duplicates(body: str) -> list[str]:
    """XNAT's duplicates answer: ``{"duplicates": [...]}``, a JSON text that FileList sends as
    text/html, so it is read whatever the Content-Type says. Empty for any other body."""
    text = (body or "").strip()
    if not text.startswith("{"):
        return []
    try:
        found = json.loads(text).get("duplicates", [])
    except (ValueError, AttributeError):
        return []
    return [str(d) for d in found] if isinstance(found, list) else []


def md5_hex(data: bytes) -> str:
    """The digest XNAT lists for catalogued files."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()

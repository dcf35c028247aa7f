"""An in-memory HTTP server that answers the XNAT REST subset qmroct uses, with XNAT's statuses.

What it reproduces (XNAT 1.8 behaviour, see docs/reference of XNAT's REST API):
- alias-token HTTP Basic, ``POST/GET/DELETE /data/JSESSION`` and the ``JSESSIONID`` cookie; 401
  for anything else;
- ``PUT`` subject / ``xnat:optSessionData`` session / ``xnat:optScanData`` scan with query-string
  (or form-encoded) parameters: 201 on create, 200 on update; the session answers its
  ``XNAT_E...`` id;
- custom fields ``xnat:optSessionData/fields/field[name=X]/field=V``, names lower-cased, read
  back through the experiments listing with ``columns=``;
- resources and files: ``PUT .../resources/{R}`` explicit create (409 when the label exists),
  ``PUT .../resources/{R}/files/{path}`` (resource created if missing; 400 for
  ``application/json`` without ``inbody=true``; 200 ``{"duplicates": [...]}`` and no replacement
  for an existing file without ``overwrite=true``), listings with ``Name, URI, Size, digest``;
- what ``xnat.connect(url, alias, secret, no_parse_model=True)`` calls: ``GET /`` (Basic, sets
  the cookie), ``PUT /data/services/auth``, ``GET /data/auth`` ("User 'X' is logged in"),
  ``GET /data/version`` (404, as on XNAT 1.7+), ``GET /xapi/siteConfig/buildInfo``;
- ``fail_next(n)``: answer 500 to the next ``n`` requests (XNAT down).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

FIELD_RE = re.compile(r"^xnat:optsessiondata/fields/field\[name=(?P<name>[^\]]+)\]/field$", re.I)


@dataclass
class Resource:
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # path -> body, type


@dataclass
class Scan:
    xsi_type: str
    attrs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)


@dataclass
class Session:
    id: str
    xsi_type: str
    attrs: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    scans: dict[str, Scan] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)


@dataclass
class Subject:
    sessions: dict[str, Session] = field(default_factory=dict)


class _Reply(Exception):
    def __init__(self, status: int, body: bytes | str = b"", ctype: str = "text/plain") -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.ctype = ctype


class XnatStandin:
    """Start with ``with XnatStandin(projects=["P1"]) as xnat: xnat.url, xnat.alias, ...``."""

    def __init__(self, projects: tuple[str, ...] | list[str] = ("QMROCT",)) -> None:
        self.alias = str(uuid.uuid4())
        self.secret = uuid.uuid4().hex
        self.projects: dict[str, dict[str, Subject]] = {p: {} for p in projects}
        self.sessions_open: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []  # method, path, auth kind
        self._fail = 0
        self._counter = 0
        self.lock = threading.RLock()
        handler = type("Handler", (_Handler,), {"standin": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def fail_next(self, n: int) -> None:
        """Answer 500 to the next ``n`` requests, as an XNAT that is down or restarting."""
        with self.lock:
            self._fail = n

    def start(self) -> XnatStandin:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> XnatStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- for the tests to inspect
    def session(self, project: str, subject: str, label: str) -> Session:
        return self.projects[project][subject].sessions[label]

    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] in ("PUT", "POST", "DELETE")]

    def next_id(self) -> str:
        with self.lock:
            self._counter += 1
            return f"XNAT_E{self._counter:05d}"


class _Handler(BaseHTTPRequestHandler):
    standin: XnatStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes, ctype: str, cookie: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", f"JSESSIONID={cookie}; Path=/; HttpOnly")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _auth(self) -> tuple[str, str | None]:
        """("basic"|"session"|"none", session id when one was opened by Basic)."""
        cookie = self.headers.get("Cookie", "")
        m = re.search(r"JSESSIONID=([^;]+)", cookie)
        if m and m.group(1) in self.standin.sessions_open:
            return "session", None
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return "none", None
            if (user, pw) == (self.standin.alias, self.standin.secret):
                return "basic", None
        return "none", None

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._body()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded" and body:
            query.update(parse_qsl(body.decode(), keep_blank_values=True))
        kind, _ = self._auth()
        with s.lock:
            s.requests.append((self.command, path, kind))
            if s._fail > 0:
                s._fail -= 1
                raise _Reply(
                    500, "<html><body><h3>Internal Server Error</h3></body></html>", "text/html"
                )
        if path == "/data/version" and self.command == "GET":
            raise _Reply(404, "<html><body><h3>Not Found</h3></body></html>", "text/html")
        if path == "/data/services/auth" and self.command == "PUT":
            if (query.get("username"), query.get("password")) != (s.alias, s.secret):
                raise _Reply(
                    401, "<html><body><h3>Login attempt failed</h3></body></html>", "text/html"
                )
            token = uuid.uuid4().hex.upper()
            s.sessions_open.add(token)
            raise _Reply(200, token)
        if kind == "none":
            raise _Reply(401, "<html><body><h3>Unauthorized</h3></body></html>", "text/html")
        if path in ("", "/") and self.command == "GET":
            token = uuid.uuid4().hex.upper()
            s.sessions_open.add(token)
            self._reply(200, b"XNAT stand-in", "text/plain", cookie=token)
            return
        if path == "/data/JSESSION":
            if self.command == "POST" or (self.command == "GET" and kind == "basic"):
                token = uuid.uuid4().hex.upper()
                s.sessions_open.add(token)
                self._reply(200, token.encode(), "text/plain", cookie=token)
                return
            if self.command == "GET":
                m = re.search(r"JSESSIONID=([^;]+)", self.headers.get("Cookie", ""))
                raise _Reply(200, m.group(1) if m else "")
            if self.command == "DELETE":
                m = re.search(r"JSESSIONID=([^;]+)", self.headers.get("Cookie", ""))
                if m:
                    s.sessions_open.discard(m.group(1))
                raise _Reply(200, "")
        if path == "/data/auth" and self.command == "GET":
            raise _Reply(200, f"User '{s.alias}' is logged in")
        if path == "/xapi/siteConfig/buildInfo":
            raise _Reply(
                200, json.dumps({"version": "1.8.10", "buildNumber": "standin"}), "application/json"
            )
        if path == "/data/services/tokens/issue":
            raise _Reply(
                200, json.dumps({"alias": s.alias, "secret": s.secret}), "application/json"
            )
        self._rest(path, query, body, ctype)

    # ---- /data/projects/...
    def _rest(self, path: str, q: dict[str, str], body: bytes, ctype: str) -> None:
        s = self.standin
        seg = [p for p in path.split("/") if p]
        if len(seg) < 3 or seg[:2] != ["data", "projects"]:
            raise _Reply(404, "<html><body><h3>Not Found</h3></body></html>", "text/html")
        project = seg[2]
        if project not in s.projects:
            raise _Reply(
                404, f"<html><body><h3>Project {project} not found</h3></body></html>", "text/html"
            )
        subjects = s.projects[project]
        rest = seg[3:]
        method = self.command
        with s.lock:
            if len(rest) == 2 and rest[0] == "subjects" and method == "PUT":
                created = rest[1] not in subjects
                subjects.setdefault(rest[1], Subject())
                raise _Reply(201 if created else 200, rest[1])
            if len(rest) < 2 or rest[0] != "subjects" or rest[1] not in subjects:
                raise _Reply(
                    404, "<html><body><h3>Subject not found</h3></body></html>", "text/html"
                )
            subject = subjects[rest[1]]
            rest = rest[2:]
            if rest == ["experiments"] and method == "GET":
                raise self._listing(subject, q)
            if len(rest) < 2 or rest[0] != "experiments":
                raise _Reply(404, "not found")
            label = rest[1]
            rest = rest[2:]
            if not rest and method == "PUT":
                raise self._put_session(subject, label, q)
            if label not in subject.sessions:
                raise _Reply(
                    404,
                    f"<html><body><h3>Experiment {label} not found</h3></body></html>",
                    "text/html",
                )
            sess = subject.sessions[label]
            holder: Session | Scan = sess
            if rest[:1] == ["scans"] and len(rest) >= 2:
                scan_id = rest[1]
                rest = rest[2:]
                if not rest and method == "PUT":
                    created = scan_id not in sess.scans
                    scan = sess.scans.setdefault(
                        scan_id, Scan(q.get("xsiType", "xnat:optScanData"))
                    )
                    for k, v in q.items():
                        if k.lower().startswith("xnat:optscandata/"):
                            scan.attrs[k.split("/", 1)[1].lower()] = v
                    raise _Reply(201 if created else 200, scan_id)
                if scan_id not in sess.scans:
                    raise _Reply(
                        404, "<html><body><h3>Scan not found</h3></body></html>", "text/html"
                    )
                holder = sess.scans[scan_id]
            if rest[:1] == ["resources"]:
                raise self._resources(holder, rest[1:], q, body, ctype)
        raise _Reply(404, "not found")

    def _put_session(self, subject: Subject, label: str, q: dict[str, str]) -> _Reply:
        created = label not in subject.sessions
        if created:
            subject.sessions[label] = Session(
                id=self.standin.next_id(), xsi_type=q.get("xsiType", "xnat:optSessionData")
            )
        sess = subject.sessions[label]
        for k, v in q.items():
            m = FIELD_RE.match(k)
            if m:
                sess.fields[m.group("name").lower()] = v  # XNAT lower-cases field names
            elif k == "date" or k.lower().startswith("xnat:optsessiondata/"):
                sess.attrs[k.split("/", 1)[-1].lower()] = v
        return _Reply(201 if created else 200, sess.id)

    def _listing(self, subject: Subject, q: dict[str, str]) -> _Reply:
        want = q.get("xnat:optSessionData/label")
        rows = []
        for label, sess in subject.sessions.items():
            if want and label != want:
                continue
            base = {"ID": sess.id, "label": label, "xsiType": sess.xsi_type}
            if "fields/field" in q.get("columns", "") and sess.fields:
                for name, value in sess.fields.items():
                    rows.append(
                        base
                        | {
                            "xnat:optsessiondata/fields/field/field": value,
                            "xnat:optsessiondata/fields/field/name": name,
                        }
                    )
            else:
                rows.append(base)
        payload = {"ResultSet": {"Result": rows, "totalRecords": str(len(rows))}}
        return _Reply(200, json.dumps(payload), "application/json")

    def _resources(
        self, holder: Session | Scan, rest: list[str], q: dict[str, str], body: bytes, ctype: str
    ) -> _Reply:
        method = self.command
        if not rest:
            rows = [
                {"label": k, "file_count": str(len(r.files))} for k, r in holder.resources.items()
            ]
            return _Reply(200, json.dumps({"ResultSet": {"Result": rows}}), "application/json")
        label = rest[0]
        if len(rest) == 1 and method == "PUT":
            if label in holder.resources:
                return _Reply(
                    409,
                    f"<html><body><h3>Resource {label} already exists</h3></body></html>",
                    "text/html",
                )
            holder.resources[label] = Resource()
            return _Reply(200, "")
        if rest[1:2] != ["files"]:
            return _Reply(404, "not found")
        name = "/".join(rest[2:])
        if method == "GET" and not name:
            if label not in holder.resources:
                return _Reply(
                    404, "<html><body><h3>Resource not found</h3></body></html>", "text/html"
                )
            rows = [
                {
                    "Name": n.rsplit("/", 1)[-1],  # XNAT lists the base name; the path is in URI
                    "URI": f"{self.path.split('?')[0]}/{n}",
                    "Size": str(len(b)),
                    "digest": hashlib.md5(b).hexdigest(),
                    "file_content": "",
                    "file_format": "",
                }
                for n, (b, _t) in sorted(holder.resources[label].files.items())
            ]
            return _Reply(200, json.dumps({"ResultSet": {"Result": rows}}), "application/json")
        if method == "GET":
            res = holder.resources.get(label)
            if res is None or name not in res.files:
                return _Reply(404, "<html><body><h3>File not found</h3></body></html>", "text/html")
            data, t = res.files[name]
            return _Reply(200, data, t or "application/octet-stream")
        if method == "PUT":
            if ctype == "application/json" and q.get("inbody") != "true":
                return _Reply(
                    400,
                    "<html><body><h3>Bad Request</h3><p>Unsupported content type application/json without inbody=true</p></body></html>",
                    "text/html",
                )
            res = holder.resources.setdefault(label, Resource())
            if name in res.files and q.get("overwrite") != "true":
                return _Reply(200, json.dumps({"duplicates": [name]}), "application/json")
            res.files[name] = (body, ctype)
            return _Reply(200, "")
        return _Reply(405, "method not allowed")

    def _dispatch(self) -> None:
        try:
            self._handle()
        except _Reply as r:
            self._reply(r.status, r.body, r.ctype)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

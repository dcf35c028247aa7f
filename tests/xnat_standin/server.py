"""An in-memory XNAT for tests: the REST subset qmroct and xnatpy use, with XNAT's answers and
XNAT's rejections, each written from XNAT's own source (NrgXnat/xnat-web, cited per behaviour).

What xnatpy's default ``xnat.connect(url, user=alias, password=secret)`` needs (xnatpy 0.8
``xnat/__init__.py``: ``connect``, ``_create_jsession``, ``check_auth``, ``build_model``,
``parse_schemas_17``; ``xnat/session.py``: ``xnat_version``, ``_check_response``):
``GET /`` (Basic with an alias token answers the ``JSESSIONID`` cookie), ``GET /data/auth``
(``User 'X' is logged in``), ``GET /data/version`` (404 on XNAT 1.7+, then
``/xapi/siteConfig/buildInfo``), ``GET /xapi/schemas`` and ``GET /xapi/schemas/{name}`` (the XSD
it turns into classes, ``schemas/xnat.xsd`` here), item JSON ``{"items": [{"meta",
"data_fields", "children"}]}`` for every object, and ``ResultSet.Result`` listings (``ID``,
``URI``, ``xsiType``; resources by ``xnat_abstractresource_id``; files by ``URI``). Any answer
that starts with ``<html>`` or ``<!DOCTYPE`` is an error to xnatpy, so JSON and XML answers never
do.

Switches for tests: ``fail_next(n, status)`` (XNAT or its proxy failing), ``advance(seconds)``
(time passes: alias tokens expire), ``issue_token()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

XNAT_NS = "http://nrg.wustl.edu/xnat"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_DIR = Path(__file__).parent / "schemas"
USER = "qmroct"
# HibernateAliasTokenService.issueTokenForUser sets estimatedExpirationTime to now plus the site
# preference aliasTokenTimeout (48 hours unless the site says otherwise).
TOKEN_LIFETIME_S = 48 * 3600.0
# SecureResource.getFileWritersAndLoadParams takes a raw request body as the file only with
# inbody=true or when RequestUtil.isFileInBody(entity), i.e. its media type is one of RequestUtil's
# supported upload types (binary and archive types: application/octet-stream, which xnatpy
# sends, among them; text/html and application/json not). Otherwise there are no file writers and
# FileList.handlePost answers 400 "... try to PUT with the query-string parameter inbody=true"
# (xnat-web restlet/resources/SecureResource.java, restlet/resources/files/FileList.java).
SUPPORTED_UPLOAD_TYPES = frozenset(
    {
        "application/octet-stream",
        "application/zip",
        "application/x-zip-compressed",
        "application/x-gzip",
        "application/gzip",
        "application/x-tar",
        "application/dicom",
    }
)
# The searchable data types and their display fields (XNAT's display documents, e.g.
# xnat-web schemas/xnat/display/qcAssessmentData_display.xml). The stand-in lists the types qmroct
# writes with their identifying fields.
SEARCHABLE: dict[str, list[str]] = {
    "xnat:projectData": ["ID", "NAME"],
    "xnat:subjectData": ["SUBJECT_ID", "SUBJECT_LABEL"],
    "xnat:optSessionData": ["SESSION_ID", "LABEL", "DATE"],
    "xnat:optScanData": ["ID", "TYPE", "QUALITY"],
    "xnat:qcAssessmentData": ["SESSION_ID", "LABEL", "SESSION_LABEL", "TYPE"],
}
FIELD_RE = re.compile(r"^xnat:\w+/fields/field\[name=(?P<name>[^\]]+)\]/field$", re.I)


@dataclass
class Resource:
    id: int
    label: str
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Scan:
    id: str
    xsi_type: str
    attrs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)


@dataclass
class AssessorScan:
    id: str
    statistics: dict[str, float] = field(default_factory=dict)  # additionalStatistics
    fields: dict[str, str] = field(default_factory=dict)  # addField


@dataclass
class Assessor:
    id: str
    label: str
    xsi_type: str
    attrs: dict[str, str] = field(default_factory=dict)
    scans: list[AssessorScan] = field(default_factory=list)
    resources: dict[str, Resource] = field(default_factory=dict)


@dataclass
class Session:
    id: str
    label: str
    xsi_type: str
    subject_id: str
    project: str
    attrs: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    scans: dict[str, Scan] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    assessors: dict[str, Assessor] = field(default_factory=dict)


@dataclass
class Subject:
    id: str
    label: str
    project: str
    sessions: dict[str, Session] = field(default_factory=dict)


@dataclass
class Token:
    alias: str
    secret: str
    issued_at: float


class _Reply(Exception):
    def __init__(self, status: int, body: bytes | str = b"", ctype: str = "text/plain") -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.ctype = ctype


def _html(status: int, message: str) -> _Reply:
    """XNAT's Restlet error page: the message in <h3> (xnatpy reads it from there)."""
    return _Reply(status, f"<html><body><h3>{message}</h3></body></html>", "text/html")


def _json(payload: object, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(payload), "application/json")


def _result_set(rows: list[dict]) -> _Reply:
    return _json({"ResultSet": {"Result": rows, "totalRecords": str(len(rows))}})


def _item(xsi_type: str, data: dict, children: list[dict] | None = None) -> dict:
    """One object as XNAT's item JSON (XNAT's JSON form of an XFTItem, read by xnatpy's
    ``XNATObject.fulldata``): ``meta`` with ``xsi:type`` and ``isHistory``, ``data_fields``,
    and nested elements as ``children`` ``[{"field": path, "items": [...]}]``."""
    return {
        "meta": {"xsi:type": xsi_type, "isHistory": False, "create_event_id": 1},
        "data_fields": data,
        "children": children or [],
    }


class XnatStandin:
    """Start with ``with XnatStandin(projects=["P1"]) as xnat: xnat.url, xnat.alias, ...``."""

    def __init__(
        self,
        projects: tuple[str, ...] | list[str] = ("QMROCT",),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._offset = 0.0
        self._clock = clock
        self.tokens: dict[str, Token] = {}
        first = self.issue_token()
        self.alias, self.secret = first.alias, first.secret
        self.projects: dict[str, dict[str, Subject]] = {p: {} for p in projects}
        self.sessions_open: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []  # method, path, auth kind
        self.uploads: list[tuple[str, str, dict[str, str]]] = []  # path, content type, query
        self._fail: list[int] = []
        self._counter = 0
        self.lock = threading.RLock()
        handler = type("Handler", (_Handler,), {"standin": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> XnatStandin:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> XnatStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- switches
    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Let time pass on the server (alias tokens expire)."""
        self._offset += seconds

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer ``status`` to the next ``n`` requests: 503 is XNAT down or restarting behind its
        proxy; 500 is XNAT failing the same way every time."""
        with self.lock:
            self._fail = [status] * n

    def issue_token(self) -> Token:
        """AliasTokenRestlet ``/data/services/tokens/issue``: a new alias and secret for the user."""
        tok = Token(alias=str(uuid.uuid4()), secret=uuid.uuid4().hex, issued_at=self.now())
        self.tokens[tok.alias] = tok
        return tok

    def token_valid(self, alias: str, secret: str) -> bool:
        tok = self.tokens.get(alias)
        return (
            tok is not None
            and tok.secret == secret
            and self.now() - tok.issued_at < TOKEN_LIFETIME_S
        )

    # ---- for the tests to inspect
    def subject(self, project: str, label: str) -> Subject:
        return self.projects[project][label]

    def session(self, project: str, subject: str, label: str) -> Session:
        return self.projects[project][subject].sessions[label]

    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] in ("PUT", "POST", "DELETE")]

    def next_id(self, kind: str = "E") -> str:
        with self.lock:
            self._counter += 1
            return f"XNAT_{kind}{self._counter:05d}"

    def next_int(self) -> int:
        with self.lock:
            self._counter += 1
            return self._counter

    def all_sessions(self) -> list[Session]:
        return [
            ses
            for subs in self.projects.values()
            for sub in subs.values()
            for ses in sub.sessions.values()
        ]


def _find_subject(subjects: dict[str, Subject], key: str) -> Subject | None:
    """XNAT resolves a subject in a URL by ID or by label (SubjectResource.java)."""
    if key in subjects:
        return subjects[key]
    return next((s for s in subjects.values() if s.id == key), None)


def _find_session(sessions: dict[str, Session], key: str) -> Session | None:
    if key in sessions:
        return sessions[key]
    return next((s for s in sessions.values() if s.id == key), None)


def _find_resource(resources: dict[str, Resource], key: str) -> Resource | None:
    """By label or by ``xnat_abstractresource_id`` (CatalogResource.getAllMatches compares
    both), as xnatpy addresses listed resources."""
    if key in resources:
        return resources[key]
    return next((r for r in resources.values() if str(r.id) == key), None)


def _parse_assessor_xml(body: bytes) -> tuple[str, dict[str, str], list[AssessorScan]]:
    """The XML document of an assessor PUT with ``inbody=true`` (the XNAT XML form of the
    item); raises 400 like XNAT's XML reader when it is not a document of the schema."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise _html(400, f"Unable to parse the XML document: {exc}") from exc
    if not root.tag.startswith(f"{{{XNAT_NS}}}"):
        raise _html(400, f"Unknown root element {root.tag}")
    element = root.tag.split("}", 1)[1]
    xsi_type = {"QCAssessment": "xnat:qcAssessmentData"}.get(element)
    if xsi_type is None:
        raise _html(400, f"Unknown data type for element xnat:{element}")
    attrs = dict(root.attrib)
    for name in ("date", "imageSession_ID", "note"):
        el = root.find(f"{{{XNAT_NS}}}{name}")
        if el is not None and el.text:
            attrs[name] = el.text
    if not attrs.get("imageSession_ID"):
        # imageSession_ID is required by xnat:imageAssessorData (minOccurs 1 in xnat.xsd).
        raise _html(400, "Missing required field xnat:imageAssessorData/imageSession_ID")
    scans: list[AssessorScan] = []
    for s in root.iterfind(f"{{{XNAT_NS}}}scans/{{{XNAT_NS}}}scan"):
        if not s.get("id"):
            raise _html(400, "Missing required field xnat:qcAssessmentData/scans/scan/id")
        entry = AssessorScan(id=s.get("id", ""))
        stats = s.find(f"{{{XNAT_NS}}}scanStatistics")
        if stats is not None:
            for a in stats.iterfind(f"{{{XNAT_NS}}}additionalStatistics"):
                try:
                    entry.statistics[a.get("name", "")] = float(a.text or "")
                except ValueError as exc:
                    # additionalStatistics is xs:double.
                    raise _html(400, f"Invalid value {a.text!r} for xs:double") from exc
            for a in stats.iterfind(f"{{{XNAT_NS}}}addField"):
                entry.fields[a.get("name", "")] = a.text or ""
        scans.append(entry)
    if not scans:
        raise _html(400, "Missing required field xnat:qcAssessmentData/scans/scan")
    return xsi_type, attrs, scans


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

    def _cookie(self) -> str | None:
        m = re.search(r"JSESSIONID=([^;]+)", self.headers.get("Cookie", ""))
        return m.group(1) if m else None

    def _auth(self) -> str:
        """ "session" (a live JSESSIONID), "basic" (a valid, unexpired alias token), "expired",
        or "none"."""
        s = self.standin
        if self._cookie() in s.sessions_open:
            return "session"
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return "none"
            if s.token_valid(user, pw):
                return "basic"
            if user in s.tokens and s.tokens[user].secret == pw:
                return "expired"
        return "none"

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _new_session(self) -> str:
        token = uuid.uuid4().hex.upper()
        self.standin.sessions_open.add(token)
        return token

    def _handle(self) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        path = unquote(parts.path).rstrip("/") or "/"
        if path.startswith("/data/archive/") or path.startswith("/REST/"):
            # XNATApplication attaches the same resources under /data, /data/archive and /REST.
            path = (
                "/data/" + path.split("/", 3)[3]
                if path.startswith("/data/")
                else "/data/" + path[6:]
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._body()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        form = ctype == "application/x-www-form-urlencoded"
        if form and body:
            query.update(parse_qsl(body.decode(), keep_blank_values=True))
        kind = self._auth()
        with s.lock:
            s.requests.append((self.command, path, kind))
            if s._fail:
                status = s._fail.pop()
                raise _html(
                    status, "Service Unavailable" if status == 503 else "Internal Server Error"
                )
        if path == "/data/version" and self.command == "GET":
            # XNAT 1.7+ has no /data/version; xnatpy then asks /xapi/siteConfig/buildInfo.
            raise _html(404, "Not Found")
        if kind in ("none", "expired"):
            if path == "/" and self.command == "GET":
                # The login page, as XNAT shows to an anonymous visitor (xnatpy's redirect check).
                raise _Reply(200, "<html><body>XNAT login</body></html>", "text/html")
            # An expired alias token is refused like a wrong one: HibernateAliasTokenService.
            # validateToken answers no user once token.isExpired() (xdat, services/impl/hibernate).
            raise _html(401, "Unauthorized" if kind == "none" else "Alias token expired")
        if path == "/" and self.command == "GET":
            self._reply(
                200, b"<html><body>XNAT</body></html>", "text/html", cookie=self._new_session()
            )
            return
        if path == "/data/JSESSION":
            if self.command == "POST" or (self.command == "GET" and kind == "basic"):
                token = self._new_session()
                self._reply(200, token.encode(), "text/plain", cookie=token)
                return
            if self.command == "GET":
                raise _Reply(200, self._cookie() or "")
            if self.command == "DELETE":
                s.sessions_open.discard(self._cookie() or "")
                raise _Reply(200, "")
        if path == "/data/auth" and self.command == "GET":
            raise _Reply(200, f"User '{USER}' is logged in")
        if path == "/xapi/siteConfig/buildInfo":
            raise _json({"version": "1.8.10", "buildNumber": "standin"})
        if path == "/xapi/schemas" and self.command == "GET":
            # SchemaApi lists the data-type schemas XNAT loaded; xnatpy fetches each one.
            raise _json(sorted(p.stem for p in SCHEMA_DIR.glob("*.xsd")))
        if path.startswith("/xapi/schemas/") and self.command == "GET":
            f = SCHEMA_DIR / f"{path.rsplit('/', 1)[1]}.xsd"
            if not f.is_file():
                raise _html(404, "Not Found")
            raise _Reply(200, f.read_bytes(), "application/xml")
        if path == "/data/search/elements" and self.command == "GET":
            # SearchElementListResource: the data types a user may search, one ELEMENT_NAME per
            # row (xnat-web restlet/resources/search/SearchElementListResource.java).
            raise _result_set([{"ELEMENT_NAME": t} for t in SEARCHABLE])
        if path.startswith("/data/search/elements/") and self.command == "GET":
            # SearchFieldListResource: the display fields of one data type, FIELD_ID per row
            # (xnat-web restlet/resources/search/SearchFieldListResource.java).
            fields = SEARCHABLE.get(path.rsplit("/", 1)[1])
            if fields is None:
                raise _html(404, "Not Found")
            raise _result_set([{"FIELD_ID": f} for f in fields])
        if path == "/data/services/tokens/issue" and self.command == "GET":
            tok = s.issue_token()
            raise _json(
                {
                    "alias": tok.alias,
                    "secret": tok.secret,
                    "xdatUserId": USER,
                    "estimatedExpirationTime": int((tok.issued_at + TOKEN_LIFETIME_S) * 1000),
                }
            )
        self._rest(path, query, body, ctype, form)

    # ---- /data/...
    def _rest(self, path: str, q: dict[str, str], body: bytes, ctype: str, form: bool) -> None:
        s = self.standin
        seg = [p for p in path.split("/") if p][1:]  # drop "data"
        method = self.command
        if seg == ["projects"] and method == "GET":
            raise _result_set(
                [
                    {"ID": p, "secondary_ID": p, "name": p, "URI": f"/data/projects/{p}"}
                    for p in s.projects
                ]
            )
        with s.lock:
            if seg[:1] == ["experiments"] and len(seg) >= 2:
                ses = next((x for x in s.all_sessions() if x.id == seg[1]), None)
                if ses is None:
                    raise _html(404, f"Experiment {seg[1]} not found")
                raise self._session_path(ses, seg[2:], q, body, ctype)
            if seg[:1] == ["subjects"] and len(seg) >= 2:
                sub = next(
                    (x for subs in s.projects.values() for x in subs.values() if x.id == seg[1]),
                    None,
                )
                if sub is None:
                    raise _html(404, f"Subject {seg[1]} not found")
                raise self._subject_path(sub, seg[2:], q, body, ctype)
            if seg[:1] != ["projects"] or len(seg) < 2:
                raise _html(404, "Not Found")
            project = seg[1]
            if project not in s.projects:
                raise _html(404, f"Project {project} not found")
            subjects = s.projects[project]
            rest = seg[2:]
            if not rest and method == "GET":
                raise _json(
                    {
                        "items": [
                            _item(
                                "xnat:projectData",
                                {"ID": project, "secondary_ID": project, "name": project},
                            )
                        ]
                    }
                )
            if rest == ["subjects"] and method == "GET":
                raise _result_set(
                    [
                        {
                            "ID": x.id,
                            "label": x.label,
                            "project": project,
                            "URI": f"/data/subjects/{x.id}",
                        }
                        for x in subjects.values()
                    ]
                )
            if rest == ["experiments"] and method == "GET":
                raise self._experiments(
                    [x for sub in subjects.values() for x in sub.sessions.values()], q
                )
            if rest[:1] == ["experiments"] and len(rest) >= 2:
                ses = next(
                    (x for sub in subjects.values() if (x := _find_session(sub.sessions, rest[1]))),
                    None,
                )
                if ses is None:
                    raise _html(404, f"Experiment {rest[1]} not found")
                raise self._session_path(ses, rest[2:], q, body, ctype)
            if rest[:1] != ["subjects"] or len(rest) < 2:
                raise _html(404, "Not Found")
            sub = _find_subject(subjects, rest[1])
            if sub is None:
                if len(rest) == 2 and method == "PUT":
                    # SubjectResource.handlePut: 201 and the new subject's ID on create
                    # (xnat-web restlet/resources/SubjectResource.java).
                    sub = Subject(id=s.next_id("S"), label=rest[1], project=project)
                    subjects[rest[1]] = sub
                    raise _Reply(201, sub.id)
                raise _html(404, f"Subject {rest[1]} not found")
            raise self._subject_path(sub, rest[2:], q, body, ctype)

    def _subject_path(
        self, sub: Subject, rest: list[str], q: dict[str, str], body: bytes, ctype: str
    ) -> _Reply:
        method = self.command
        if not rest:
            if method == "PUT":
                return _Reply(200, sub.id)
            if method == "GET":
                return _json(
                    {
                        "items": [
                            _item(
                                "xnat:subjectData",
                                {"ID": sub.id, "label": sub.label, "project": sub.project},
                            )
                        ]
                    }
                )
        if rest == ["experiments"] and method == "GET":
            return self._experiments(list(sub.sessions.values()), q)
        if rest[:1] != ["experiments"] or len(rest) < 2:
            return _html(404, "Not Found")
        ses = _find_session(sub.sessions, rest[1])
        if ses is None:
            if len(rest) == 2 and method == "PUT":
                return self._put_session(sub, rest[1], q, created=True)
            return _html(404, f"Experiment {rest[1]} not found")
        return self._session_path(ses, rest[2:], q, body, ctype)

    def _experiments(self, sessions: list[Session], q: dict[str, str]) -> _Reply:
        want = q.get("label") or q.get("xnat:optSessionData/label")
        rows = [
            {
                "ID": x.id,
                "label": x.label,
                "xsiType": x.xsi_type,
                "project": x.project,
                "subject_ID": x.subject_id,
                "date": x.attrs.get("date", ""),
                "URI": f"/data/experiments/{x.id}",
            }
            for x in sessions
            if not want or x.label == want
        ]
        return _result_set(rows)

    def _put_session(self, sub: Subject, label: str, q: dict[str, str], *, created: bool) -> _Reply:
        s = self.standin
        if created:
            ses = Session(
                id=s.next_id("E"),
                label=label,
                xsi_type=q.get("xsiType", "xnat:mrSessionData"),
                subject_id=sub.id,
                project=sub.project,
            )
            sub.sessions[label] = ses
        else:
            ses = sub.sessions[label]
        prefix = f"{ses.xsi_type.lower()}/"
        for k, v in q.items():
            m = FIELD_RE.match(k)
            if m:
                ses.fields[m.group("name").lower()] = v  # XNAT lower-cases field names
            elif k == "date" or k.lower().startswith(prefix):
                ses.attrs[k.lower().removeprefix(prefix)] = v
        # SubjAssessmentResource.handlePut: 201 with the experiment ID on create, 200 on update
        # (xnat-web restlet/resources/SubjAssessmentResource.java).
        return _Reply(201 if created else 200, ses.id)

    def _session_path(
        self, ses: Session, rest: list[str], q: dict[str, str], body: bytes, ctype: str
    ) -> _Reply:
        s = self.standin
        method = self.command
        if not rest:
            if method == "PUT":
                sub = next(x for x in s.projects[ses.project].values() if ses.label in x.sessions)
                return self._put_session(sub, ses.label, q, created=False)
            if method == "GET":
                data = {
                    "ID": ses.id,
                    "label": ses.label,
                    "project": ses.project,
                    "subject_ID": ses.subject_id,
                    **({"date": ses.attrs["date"]} if "date" in ses.attrs else {}),
                }
                fields = [
                    _item("xnat:experimentData_field", {"name": n, "field": v})
                    for n, v in ses.fields.items()
                ]
                children = [{"field": "fields/field", "items": fields}] if fields else []
                return _json({"items": [_item(ses.xsi_type, data, children)]})
            return _html(405, "Method Not Allowed")
        if rest == ["scans"] and method == "GET":
            return _result_set(
                [
                    {
                        "ID": x.id,
                        "xsiType": x.xsi_type,
                        "type": x.attrs.get("type", ""),
                        "quality": x.attrs.get("quality", ""),
                        "note": x.attrs.get("note", ""),
                        "URI": f"/data/experiments/{ses.id}/scans/{x.id}",
                    }
                    for x in ses.scans.values()
                ]
            )
        if rest[:1] == ["scans"] and len(rest) >= 2:
            scan_id = rest[1]
            if len(rest) == 2 and method == "PUT":
                created = scan_id not in ses.scans
                scan = ses.scans.setdefault(
                    scan_id, Scan(scan_id, q.get("xsiType", "xnat:mrScanData"))
                )
                prefix = f"{scan.xsi_type.lower()}/"
                for k, v in q.items():
                    if k.lower().startswith(prefix):
                        scan.attrs[k.lower().removeprefix(prefix)] = v
                return _Reply(201 if created else 200, scan_id)
            scan = ses.scans.get(scan_id)
            if scan is None:
                return _html(404, f"Scan {scan_id} not found")
            if len(rest) == 2 and method == "GET":
                data = {"ID": scan.id, "image_session_ID": ses.id, **scan.attrs}
                return _json({"items": [_item(scan.xsi_type, data)]})
            if rest[2:3] == ["resources"]:
                base = f"/data/experiments/{ses.id}/scans/{scan.id}/resources"
                return self._resources(scan.resources, base, rest[3:], q, body, ctype)
            return _html(404, "Not Found")
        if rest[:1] == ["resources"]:
            base = f"/data/experiments/{ses.id}/resources"
            return self._resources(ses.resources, base, rest[1:], q, body, ctype)
        if rest == ["assessors"] and method == "GET":
            return _result_set(
                [
                    {
                        "ID": a.id,
                        "label": a.label,
                        "xsiType": a.xsi_type,
                        "URI": f"/data/experiments/{ses.id}/assessors/{a.id}",
                    }
                    for a in ses.assessors.values()
                ]
            )
        if rest[:1] == ["assessors"] and len(rest) >= 2:
            return self._assessor(ses, rest[1], rest[2:], q, body, ctype)
        return _html(404, "Not Found")

    def _assessor(
        self, ses: Session, key: str, rest: list[str], q: dict[str, str], body: bytes, ctype: str
    ) -> _Reply:
        s = self.standin
        method = self.command
        a = ses.assessors.get(key) or next((x for x in ses.assessors.values() if x.id == key), None)
        if not rest and method == "PUT":
            # SecureResource.loadItem: a non-empty body is read as the item's XML document when
            # it is text/xml or application/xml, when req_format is xml (the default for a
            # body), or with inbody=true; SAXReader.assertValid refuses what is not the schema's.
            reads_xml = q.get("req_format", "xml") == "xml" or q.get("inbody") == "true"
            if not body or not (reads_xml or ctype in ("text/xml", "application/xml")):
                return _html(400, "No assessor document: PUT its XML with inbody=true")
            xsi_type, attrs, scans = _parse_assessor_xml(body)
            if attrs.get("imageSession_ID") not in (ses.id, ses.label):
                return _html(400, f"imageSession_ID {attrs.get('imageSession_ID')} is not {ses.id}")
            label = attrs.get("label") or key
            if a is None:
                a = Assessor(id=s.next_id("E"), label=label, xsi_type=xsi_type)
                ses.assessors[label] = a
                created = True
            else:
                if a.xsi_type != xsi_type:
                    return _html(409, f"{a.label} is a {a.xsi_type}, not a {xsi_type}")
                created = False
            a.attrs = {k: v for k, v in attrs.items() if k not in ("ID",)}
            a.scans = scans
            # The experiment resources answer 201 with the ID on create, 200 on update
            # (SubjAssessmentResource.java; image assessors follow the same pattern).
            return _Reply(201 if created else 200, a.id)
        if a is None:
            return _html(404, f"Assessor {key} not found")
        if not rest and method == "GET":
            data = {"ID": a.id, "label": a.label, "project": ses.project, **a.attrs}
            scans = [
                _item(
                    f"{a.xsi_type}_scan",
                    {"id": sc.id},
                    [
                        {
                            "field": "scanStatistics",
                            "items": [
                                _item(
                                    "xnat:statisticsData",
                                    {},
                                    [
                                        {
                                            "field": "additionalStatistics",
                                            "items": [
                                                _item(
                                                    "xnat:statisticsData_additionalStatistics",
                                                    {"additionalStatistics": v, "name": n},
                                                )
                                                for n, v in sc.statistics.items()
                                            ],
                                        },
                                        {
                                            "field": "addField",
                                            "items": [
                                                _item(
                                                    "xnat:statisticsData_addField",
                                                    {"addField": v, "name": n},
                                                )
                                                for n, v in sc.fields.items()
                                            ],
                                        },
                                    ],
                                )
                            ],
                        }
                    ],
                )
                for sc in a.scans
            ]
            return _json(
                {"items": [_item(a.xsi_type, data, [{"field": "scans/scan", "items": scans}])]}
            )
        if rest[:2] == ["out", "resources"]:
            base = f"/data/experiments/{ses.id}/assessors/{a.id}/out/resources"
            return self._resources(a.resources, base, rest[2:], q, body, ctype)
        return _html(404, "Not Found")

    def _resources(
        self,
        resources: dict[str, Resource],
        base: str,
        rest: list[str],
        q: dict[str, str],
        body: bytes,
        ctype: str,
    ) -> _Reply:
        s = self.standin
        method = self.command
        if not rest:
            if method != "GET":
                return _html(405, "Method Not Allowed")
            return _result_set(
                [
                    {
                        "xnat_abstractresource_id": str(r.id),
                        "label": r.label,
                        "element_name": "xnat:resourceCatalog",
                        "file_count": str(len(r.files)),
                        "file_size": str(sum(len(b) for b in r.files.values())),
                    }
                    for r in resources.values()
                ]
            )
        res = _find_resource(resources, rest[0])
        if len(rest) == 1:
            if method == "PUT":
                if res is not None:
                    # CatalogResource.handlePost (PUT calls it): a resource whose ID or label
                    # exists is a conflict (xnat-web restlet/resources/files/CatalogResource.java).
                    return _html(409, "Specified resource already exists.")
                resources[rest[0]] = Resource(id=s.next_int(), label=rest[0])
                return _Reply(200, "")
            if method == "GET" and res is not None:
                data = {
                    "xnat_abstractresource_id": res.id,
                    "label": res.label,
                    "file_count": len(res.files),
                }
                return _json({"items": [_item("xnat:resourceCatalog", data)]})
            return _html(404, f"Resource {rest[0]} not found")
        if rest[1] != "files":
            return _html(404, "Not Found")
        name = "/".join(rest[2:])
        if method == "GET" and not name:
            if res is None:
                return _html(404, f"Resource {rest[0]} not found")
            rows = [
                {
                    # FileList lists the base name in Name and the whole path in URI.
                    "Name": n.rsplit("/", 1)[-1],
                    "URI": f"{base}/{res.label}/files/{n}",
                    "Size": str(len(b)),
                    "digest": hashlib.md5(b).hexdigest(),
                    "file_content": "",
                    "file_format": "",
                    "file_tags": "",
                    "collection": res.label,
                    "cat_ID": str(res.id),
                }
                for n, b in sorted(res.files.items())
            ]
            return _result_set(rows)
        if method == "GET":
            if res is None or name not in res.files:
                return _html(404, "File not found")
            return _Reply(200, res.files[name], "application/octet-stream")
        if method in ("PUT", "POST"):
            s.uploads.append((f"{base}/{rest[0]}/files/{name}", ctype, dict(q)))
            raw_ok = ctype in SUPPORTED_UPLOAD_TYPES or q.get("inbody") == "true"
            if not body:
                # FileList.handlePost, no file writers and an empty entity.
                return _html(
                    400,
                    f"You tried to {method} to this service, but didn't provide any data (found "
                    "request entity size of 0). Please check the format of your service request.",
                )
            if not raw_ok:
                # FileList.handlePost: the body was not read (unsupported type, no inbody).
                return _html(
                    400,
                    f"You tried to {method} a payload of {len(body)} B to this service, but didn't "
                    f"provide any data. If you think you sent data to upload, you can try to {method} "
                    "with the query-string parameter inbody=true or use multipart/form-data encoding.",
                )
            if res is None:
                res = Resource(id=s.next_int(), label=rest[0])
                resources[rest[0]] = res
            if name in res.files and q.get("overwrite") != "true":
                # FileList.handlePost: 200 and {"duplicates": [...]} as a JSON text sent with the
                # media type text/html; the stored file is left as it was.
                return _Reply(200, json.dumps({"duplicates": [name]}), "text/html")
            res.files[name] = body
            return _Reply(200, "", "text/plain")
        if method == "DELETE" and res is not None and name in res.files:
            del res.files[name]
            return _Reply(200, "")
        return _html(405, "Method Not Allowed")

    def _dispatch(self) -> None:
        try:
            self._handle()
        except _Reply as r:
            self._reply(r.status, r.body, r.ctype)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

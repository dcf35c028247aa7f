"""Scan search: a query model read from the URL (so a search is shared by its address), turned
into one SQL statement over the index tables, paged on the server."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, Field, ValidationError, field_validator
from qmroct.errors import QmroctError
from qmroct.storage.db import Database
from qmroct.web.index import LETTERS, VERDICT_COLUMNS

VERDICTS = ("pass", "warn", "fail", "not_applicable")
PER_PAGE = 50
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class SearchError(QmroctError):
    """A search parameter could not be read (the message names the parameter)."""


class ValueRange(BaseModel):
    """``measure.value:lo:hi`` in the URL; either bound may be empty."""

    measure: str
    name: str
    lo: float | None = None
    hi: float | None = None

    @classmethod
    def parse(cls, text: str) -> ValueRange:
        head, _, rest = text.partition(":")
        measure, _, name = head.partition(".")
        lo, _, hi = rest.partition(":")
        if not (_NAME.match(measure) and _NAME.match(name)):
            raise SearchError(f"value={text[:80]!r}: expected measure.value:min:max")
        try:
            r = cls(
                measure=measure,
                name=name,
                lo=float(lo) if lo.strip() else None,
                hi=float(hi) if hi.strip() else None,
            )
        except (ValueError, ValidationError) as exc:
            raise SearchError(f"value={text[:80]!r}: min and max must be numbers") from exc
        for b in (r.lo, r.hi):
            if b is not None and not math.isfinite(b):
                raise SearchError(f"value={text[:80]!r}: min and max must be finite")
        return r

    def text(self) -> str:
        def f(x: float | None) -> str:
            return "" if x is None else repr(x)  # exact: a shared link finds the same scans

        return f"{self.measure}.{self.name}:{f(self.lo)}:{f(self.hi)}"


class SearchQuery(BaseModel):
    project: str = ""
    subject: str = ""
    q: str = Field("", description="free text: subject, session or scan label, or hash prefix")
    date_from: date | None = None
    date_to: date | None = None
    device: str = ""
    pattern: str = ""
    laterality: str = ""
    overall: str = ""
    letters: dict[str, str] = Field(default_factory=dict)
    values: list[ValueRange] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(PER_PAGE, ge=1, le=500)

    @field_validator("laterality")
    @classmethod
    def _lat(cls, v: str) -> str:
        if v not in ("", "OD", "OS"):
            raise ValueError("laterality is OD or OS")
        return v

    @field_validator("overall")
    @classmethod
    def _overall(cls, v: str) -> str:
        if v not in ("", "pass", "fail"):
            raise ValueError("overall is pass or fail")
        return v

    @classmethod
    def from_args(cls, args: Any) -> SearchQuery:
        """Read a query from request arguments (a werkzeug MultiDict or a plain dict)."""

        def one(k: str) -> str:
            v = args.get(k, "")
            return (v or "").strip()

        def many(k: str) -> list[str]:
            got = args.getlist(k) if hasattr(args, "getlist") else args.get(k, [])
            if isinstance(got, str):
                got = [got]
            return [g.strip() for g in got if g and g.strip()]

        letters = {}
        for c in LETTERS:
            v = one(f"v_{c}")
            if v:
                if v not in VERDICTS:
                    raise SearchError(f"v_{c}={v[:20]!r}: expected one of {', '.join(VERDICTS)}")
                letters[c] = v
        versions = {}
        for text in many("version"):
            m, _, ver = text.partition(":")
            if not (_NAME.match(m) and _NAME.match(ver)):
                raise SearchError(f"version={text[:80]!r}: expected measure:version")
            versions[m] = ver
        values = [ValueRange.parse(t) for t in many("value")]
        # The form has one value row of separate fields; the URL may carry many as value=...
        vm, vlo, vhi = one("vm"), one("vlo"), one("vhi")
        if vm:
            values.append(ValueRange.parse(f"{vm}:{vlo}:{vhi}"))
        try:
            return cls(
                project=one("project"),
                subject=one("subject"),
                q=one("q"),
                date_from=one("date_from") or None,
                date_to=one("date_to") or None,
                device=one("device"),
                pattern=one("pattern"),
                laterality=one("laterality"),
                overall=one("overall"),
                letters=letters,
                values=values,
                versions=versions,
                page=int(one("page") or 1),
                per_page=int(one("per_page") or PER_PAGE),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise SearchError(f"{where}: {err['msg']}") from exc
        except ValueError as exc:
            raise SearchError(f"page: {exc}") from exc

    def args(self, **override: Any) -> list[tuple[str, str]]:
        """The query as URL arguments (the shareable address), with some changed."""
        d = self.model_copy(update=override)
        out: list[tuple[str, str]] = []
        for k in ("project", "subject", "q", "device", "pattern", "laterality", "overall"):
            if getattr(d, k):
                out.append((k, getattr(d, k)))
        if d.date_from:
            out.append(("date_from", d.date_from.isoformat()))
        if d.date_to:
            out.append(("date_to", d.date_to.isoformat()))
        out += [(f"v_{c}", v) for c, v in d.letters.items()]
        out += [("value", v.text()) for v in d.values]
        out += [("version", f"{m}:{v}") for m, v in d.versions.items()]
        if d.page != 1:
            out.append(("page", str(d.page)))
        if d.per_page != PER_PAGE:
            out.append(("per_page", str(d.per_page)))
        return out

    def version_texts(self) -> list[str]:
        return [f"{m}:{v}" for m, v in self.versions.items()]

    def url_args(self, **override: Any) -> str:
        return urlencode(self.args(**override))


class SearchPage(BaseModel):
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    per_page: int


def where_clause(q: SearchQuery, scope: list[str] | None) -> tuple[str, dict[str, Any]]:
    """The WHERE of a search over ``web_scans s``, and its parameters."""
    conds: list[str] = []
    p: dict[str, Any] = {}
    if scope is not None:
        if not scope:
            return "WHERE 1 = 0", {}
        names = {f"sc{i}": v for i, v in enumerate(scope)}
        p.update(names)
        conds.append("s.project_id IN (" + ", ".join(f":{n}" for n in names) + ")")
    for col, val in (
        ("project_id", q.project),
        ("subject_id", q.subject),
        ("device", q.device),
        ("pattern", q.pattern),
        ("laterality", q.laterality),
        ("overall", q.overall),
    ):
        if val:
            conds.append(f"s.{col} = :{col}")
            p[col] = val
    if q.q:
        # Labels match exactly (indexed); a hash matches by its hex prefix (the primary key).
        hexpart = re.sub(r"[^0-9a-f]", "", q.q.lower())
        hash_cond = (
            "s.scan_hash LIKE :qh OR " if len(hexpart) >= 4 and hexpart == q.q.lower() else ""
        )
        conds.append(f"({hash_cond}s.subject_id = :qt OR s.session_id = :qt OR s.scan_id = :qt)")
        if hash_cond:
            p["qh"] = hexpart + "%"
        p["qt"] = q.q
    if q.date_from:
        conds.append("s.acquired_on >= :dfrom")
        p["dfrom"] = q.date_from.isoformat()
    if q.date_to:
        conds.append("s.acquired_on <= :dto AND s.acquired_on <> ''")
        p["dto"] = q.date_to.isoformat()
    for c, v in q.letters.items():
        conds.append(f"s.{VERDICT_COLUMNS[c]} = :{VERDICT_COLUMNS[c]}")
        p[VERDICT_COLUMNS[c]] = v
    # Value and version filters as IN (subquery): the subquery walks its own index
    # ((measure, name, num) or (measure, version)) once, instead of one probe per scan.
    for i, r in enumerate(q.values):
        sub = f"SELECT v.sid FROM web_values v WHERE v.measure = :vm{i} AND v.name = :vn{i}"
        p[f"vm{i}"], p[f"vn{i}"] = r.measure, r.name
        if r.lo is not None:
            sub += f" AND v.num >= :vlo{i}"
            p[f"vlo{i}"] = r.lo
        if r.hi is not None:
            sub += f" AND v.num <= :vhi{i}"
            p[f"vhi{i}"] = r.hi
        conds.append(f"s.sid IN ({sub})")
    for i, (m, ver) in enumerate(sorted(q.versions.items())):
        conds.append(
            "s.sid IN (SELECT r.sid FROM web_results r"
            f" WHERE r.measure = :rm{i} AND r.version = :rv{i})"
        )
        p[f"rm{i}"], p[f"rv{i}"] = m, ver
    return ("WHERE " + " AND ".join(conds)) if conds else "", p


def search(db: Database, q: SearchQuery, scope: list[str] | None) -> SearchPage:
    """One page of scans matching ``q`` within ``scope`` (None: every project), the most
    recently catalogued first."""
    where, p = where_clause(q, scope)
    off = (q.page - 1) * q.per_page
    ids: list[dict[str, Any]] = []
    if q.values or q.versions:
        # Value and version subqueries are the costly part: one statement gives the page's ids
        # and the total (a window count), so they are built once. Facet-only searches count
        # from their indexes and walk 50 ids, which is cheaper than counting in a window.
        ids = db.query(
            f"SELECT s.sid, COUNT(*) OVER () AS total FROM web_scans s {where}"
            " ORDER BY s.sid DESC LIMIT :lim OFFSET :off",
            {**p, "lim": q.per_page, "off": off},
        )
    else:
        total_row = db.query_one(f"SELECT COUNT(*) AS n FROM web_scans s {where}", p)
        n = int(total_row["n"]) if total_row else 0
        ids = db.query(
            f"SELECT s.sid, {n} AS total FROM web_scans s {where}"
            " ORDER BY s.sid DESC LIMIT :lim OFFSET :off",
            {**p, "lim": q.per_page, "off": off},
        )
    if ids:
        total = int(ids[0]["total"])
        page = q.page
    else:
        total_row = db.query_one(f"SELECT COUNT(*) AS n FROM web_scans s {where}", p)
        total = int(total_row["n"]) if total_row else 0
        page = max(1, math.ceil(total / q.per_page))
        if total and page != q.page:
            ids = db.query(
                f"SELECT s.sid FROM web_scans s {where} ORDER BY s.sid DESC LIMIT :lim OFFSET :off",
                {**p, "lim": q.per_page, "off": (page - 1) * q.per_page},
            )
    pages = max(1, math.ceil(total / q.per_page))
    names = {f"r{k}": r["sid"] for k, r in enumerate(ids)}
    rows = (
        db.query(
            "SELECT * FROM web_scans WHERE sid IN ("
            + ", ".join(f":{n}" for n in names)
            + ") ORDER BY sid DESC",
            names,
        )
        if names
        else []
    )
    for r in rows:
        r["stored"] = datetime.fromtimestamp(r["stored_at"], UTC).strftime("%Y-%m-%d %H:%M")
        r["letters"] = {c: r[VERDICT_COLUMNS[c]] for c in LETTERS}
    return SearchPage(rows=rows, total=total, page=page, pages=pages, per_page=q.per_page)


def matching_hashes(
    db: Database, q: SearchQuery, scope: list[str] | None, *, limit: int = 100_000
) -> list[str]:
    """Every scan hash the query matches (for downloads and plots), newest first."""
    where, p = where_clause(q, scope)
    rows = db.query(
        f"SELECT s.scan_hash FROM web_scans s {where} ORDER BY s.sid DESC LIMIT :lim",
        {**p, "lim": limit},
    )
    return [r["scan_hash"] for r in rows]


def facets(db: Database, scope: list[str] | None) -> dict[str, list[str]]:
    """The distinct values of the choice filters, for the form's drop-downs."""
    where, p = where_clause(SearchQuery(), scope)
    out: dict[str, list[str]] = {}
    for col in ("project_id", "device", "pattern"):
        rows = db.query(
            f"SELECT DISTINCT s.{col} AS v FROM web_scans s {where} ORDER BY 1 LIMIT 200", p
        )
        out[col] = [r["v"] for r in rows if r["v"]]
    rows = db.query(
        "SELECT DISTINCT measure, name FROM web_values ORDER BY measure, name LIMIT 2000"
    )
    out["values"] = [f"{r['measure']}.{r['name']}" for r in rows]
    rows = db.query("SELECT DISTINCT measure, version FROM web_results ORDER BY 1, 2")
    out["versions"] = [f"{r['measure']}:{r['version']}" for r in rows]
    return out

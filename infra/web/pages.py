"""Search, the scan page and the group view."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for
from qmroct.results import MeasureOutput, StoredResult
from qmroct.storage.buckets import RESULTS_BUCKET, result_key
from qmroct.storage.records import check_hash
from qmroct.web.app import current_user, login_required, scope, state
from qmroct.web.index import LETTERS, VERDICT_COLUMNS
from qmroct.web.search import SearchError, SearchQuery, search, where_clause

bp = Blueprint("pages", __name__)

_UNIT_TOKENS = {"um", "deg", "db", "fraction", "ratio"}


def _visible_scan(scan_hash: str) -> dict[str, Any]:
    """The index row of a scan the user may see; 404 otherwise (no hint that it exists)."""
    try:
        check_hash(scan_hash)
    except ValueError:
        abort(404)
    row = state().db.query_one("SELECT * FROM web_scans WHERE scan_hash = :h", {"h": scan_hash})
    user = current_user()
    if row is None or user is None or not user.may_see(row["project_id"], state().test_projects):
        abort(404)
    return row


def value_docs(measure: str) -> dict[str, tuple[str, str, str]]:
    """(unit, direction, meaning) per value name, from the measure's class."""
    from qmroct.measures.base import registry

    cls = registry().get(measure)
    if cls is None:
        return {}
    return {**getattr(cls, "common_values_doc", {}), **getattr(cls, "values_doc", {})}


def thresholds(measure: str, value: str, params: dict[str, Any]) -> dict[str, float]:
    """The warn and fail thresholds of ``value`` among a measure version's parameters.

    The suite names them ``<stem>_warn_<unit>``/``<stem>_fail_<unit>`` (``peak_snr_warn_db``
    grades ``peak_snr_db``): the parameter whose name, without ``warn``/``fail``, shares the most
    words with the value's name wins. A parameter named by its unit alone (``warn_um``) grades
    the measure's headline value, its first documented one.
    """
    from qmroct.measures.base import registry

    cls = registry().get(measure)
    defaults: dict[str, Any] = {}
    if cls is not None:
        try:
            defaults = cls.Params().model_dump()
        except Exception:
            defaults = {}  # a parameter without a default: only the published ones count
    merged = {**defaults, **params}
    words = set(value.split("_"))
    headline = next(iter(getattr(cls, "values_doc", {}) or {}), "") if cls else ""
    best: dict[str, tuple[int, float]] = {}
    for name, v in merged.items():
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        parts = name.split("_")
        for kind in ("warn", "fail"):
            if kind not in parts:
                continue
            stem = [p for p in parts if p != kind]
            if not stem or not set(stem) <= words:
                continue
            if set(stem) <= _UNIT_TOKENS and value != headline:
                continue
            score = len(stem)
            if kind not in best or score > best[kind][0]:
                best[kind] = (score, float(v))
    return {k: v for k, (_, v) in best.items()}


@bp.get("/")
@login_required
def search_page() -> Any:
    st = state()
    error = ""
    try:
        q = SearchQuery.from_args(request.args)
    except SearchError as exc:
        error = str(exc)
        q = SearchQuery()
    result = search(st.db, q, scope())
    return render_template(
        "search.html",
        q=q,
        result=result,
        error=error,
        facets=st.facets(scope()),
        letters=LETTERS,
        verdict_columns=VERDICT_COLUMNS,
    ), (400 if error else 200)


def _fmt_time(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if dt else ""


def _result_view(r: StoredResult) -> dict[str, Any]:
    docs = value_docs(r.measure)
    values = []
    for k, v in r.values.items():
        unit, direction, meaning = docs.get(k, ("", "", ""))
        if isinstance(v, float):
            shown = f"{v:.4g}"
        elif v is None:
            shown = "–"
        else:
            shown = str(v)
        values.append(
            {"name": k, "value": shown, "unit": unit, "direction": direction, "meaning": meaning}
        )
    return {
        "r": r,
        "values": values,
        "recorded": _fmt_time(r.recorded_at),
        "superseded": _fmt_time(r.superseded_at),
        "picture": (
            url_for("pages.picture", scan_hash=r.scan_hash, measure=r.measure, version=r.version)
            if r.picture_stored
            else ""
        ),
    }


def xnat_link(row: dict[str, Any]) -> str:
    """The scan's session in XNAT (its REST path renders as a page with ``format=html``)."""
    st = state()
    base = st.settings.xnat_url.rstrip("/")
    if not base:
        return ""
    from qmroct.clients.xnat import XnatClient

    project = st.settings.xnat_project or row["project_id"]
    path = XnatClient._session_path(project, row["subject_id"], row["session_id"])
    return f"{base}{path}/scans/{row['scan_id']}?format=html"


@bp.get("/scan/<scan_hash>")
@login_required
def scan_page(scan_hash: str) -> Any:
    from qmroct.measures.suite import oscar_ib_summary

    st = state()
    row = _visible_scan(scan_hash)
    history = st.catalog.results(scan_hash, history=True)
    current = [r for r in history if r.current]
    summary = oscar_ib_summary(
        [
            MeasureOutput(measure=r.measure, version=r.version, values={}, verdicts=r.verdicts)
            for r in current
        ]
    )
    record = st.catalog.scan(scan_hash)
    return render_template(
        "scan.html",
        row=row,
        record=record,
        summary=summary if current else None,
        current=[_result_view(r) for r in current],
        archived=[_result_view(r) for r in history if not r.current],
        xnat=xnat_link(row),
        stored=datetime.fromtimestamp(row["stored_at"], UTC).strftime("%Y-%m-%d %H:%M"),
        back=request.args.get("back", ""),
    )


@bp.get("/picture/<scan_hash>/<measure>/<version>.png")
@login_required
def picture(scan_hash: str, measure: str, version: str) -> Any:
    _visible_scan(scan_hash)
    st = state()
    try:
        data = st.store.get(RESULTS_BUCKET, result_key(scan_hash, measure, version))
    except Exception:
        abort(404)
    resp = Response(data, mimetype="image/png")
    # Results are immutable per (scan, measure, version): the browser may keep them.
    resp.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return resp


@bp.get("/group/<measure>/<value>")
@login_required
def group(measure: str, value: str) -> Any:
    if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", measure + value):
        abort(404)
    st = state()
    try:
        q = SearchQuery.from_args(request.args)
    except SearchError as exc:
        abort(400, description=str(exc))
    active = st.catalog.active_version(measure)
    th = thresholds(measure, value, active.params if active else {})
    unit, direction, meaning = value_docs(measure).get(value, ("", "", ""))
    return render_template(
        "group.html",
        q=q,
        measure=measure,
        value=value,
        unit=unit,
        direction=direction,
        meaning=meaning,
        thresholds=th,
        measure_version=active.version if active else "",
        data_url=url_for("pages.group_data", measure=measure, value=value) + "?" + q.url_args(),
    )


@bp.get("/api/group/<measure>/<value>.json")
@login_required
def group_data(measure: str, value: str) -> Any:
    st = state()
    try:
        q = SearchQuery.from_args(request.args)
    except SearchError as exc:
        abort(400, description=str(exc))
    where, p = where_clause(q, scope())
    join = "JOIN web_values v ON v.sid = s.sid AND v.measure = :gm AND v.name = :gn"
    rows = st.db.query(
        f"SELECT s.scan_hash, s.subject_id, s.session_id, s.project_id, s.overall, v.num"
        f" FROM web_scans s {join} {where} ORDER BY s.sid DESC LIMIT 20000",
        {**p, "gm": measure, "gn": value},
    )
    return {
        "measure": measure,
        "value": value,
        "points": [
            {
                "y": r["num"],
                "label": f"{r['project_id']}/{r['subject_id']}/{r['session_id']}",
                "overall": r["overall"],
                "url": url_for("pages.scan_page", scan_hash=r["scan_hash"]),
            }
            for r in rows
        ],
    }


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@bp.get("/vendor/plotly.min.js")
def plotly_js() -> Any:
    """plotly.js as the plotly wheel ships it (package data), so plots work offline."""
    resp = Response(_plotly_js(), mimetype="application/javascript")
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp

"""Downloads: one scan, its results (JSON or CSV), or a filtered selection as a streamed zip.

Only de-identified files leave: objects of the ingest bucket that the gateway wrote (see
:meth:`WebState.deidentified`); a scan stored any other way is listed in the zip's
``skipped.csv`` and not sent. Every download writes a row in ``web_audit`` first, and the
selection's row is updated as the zip streams, which is also what its progress page reads.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, stream_with_context, url_for
from qmroct.web.app import current_user, login_required, scope, state
from qmroct.web.pages import _visible_scan
from qmroct.web.search import SearchError, SearchQuery, matching_hashes

bp = Blueprint("downloads", __name__)
MAX_SELECTION = 5000


def audit(action: str, what: str, *, scans: int = 0, size: int = 0, finished: bool = True) -> str:
    user = current_user()
    assert user is not None
    audit_id = uuid.uuid4().hex
    state().db.execute(
        "INSERT INTO web_audit (audit_id, at, username, role, action, what, scan_count, bytes,"
        " remote, finished) VALUES (:id, :t, :u, :r, :a, :w, :n, :b, :ip, :f)",
        {
            "id": audit_id,
            "t": time.time(),
            "u": user.username,
            "r": user.role,
            "a": action,
            "w": what[:2000],
            "n": scans,
            "b": size,
            "ip": request.remote_addr or "",
            "f": int(finished),
        },
    )
    return audit_id


def _results_rows(scan_hash: str) -> list[dict[str, Any]]:
    out = []
    for r in state().catalog.results(scan_hash, history=True):
        out.append(
            {
                "scan_hash": r.scan_hash,
                "measure": r.measure,
                "version": r.version,
                "current": r.current,
                "status": r.status.value,
                "values": r.values,
                "verdicts": [v.model_dump(mode="json") for v in r.verdicts],
                "failure": r.failure,
                "code_digest": r.code_digest,
                "recorded_at": r.recorded_at.isoformat() if r.recorded_at else None,
                "superseded_at": r.superseded_at.isoformat() if r.superseded_at else None,
                "superseded_by": r.superseded_by,
            }
        )
    return out


def results_csv(rows: list[dict[str, Any]]) -> str:
    """One line per value: scan, measure, version, current, value name and value."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["scan_hash", "measure", "version", "current", "status", "name", "value"])
    for r in rows:
        for k, v in r["values"].items():
            w.writerow(
                [r["scan_hash"], r["measure"], r["version"], r["current"], r["status"], k, v]
            )
        for v in r["verdicts"]:
            w.writerow(
                [r["scan_hash"], r["measure"], r["version"], r["current"], r["status"],
                 f"verdict_{v['criterion']}", v["verdict"]]
            )  # fmt: skip
    return buf.getvalue()


def _filename(row: dict[str, Any]) -> str:
    name = row["object_key"].rsplit("/", 1)[-1] or row["scan_hash"][:16]
    return name.removesuffix(".gz")


@bp.get("/download/scan/<scan_hash>")
@login_required
def scan_file(scan_hash: str) -> Any:
    st = state()
    row = _visible_scan(scan_hash)
    if not st.deidentified(scan_hash):
        abort(403, description="only files de-identified by the gateway can be downloaded")
    data, _ = st.scan_bytes(scan_hash)
    audit("scan", f"{row['project_id']}/{scan_hash}", scans=1, size=len(data))
    resp = Response(data, mimetype="application/octet-stream")
    resp.headers["Content-Disposition"] = f'attachment; filename="{_filename(row)}"'
    return resp


@bp.get("/download/results/<scan_hash>.<fmt>")
@login_required
def results(scan_hash: str, fmt: str) -> Any:
    row = _visible_scan(scan_hash)
    if fmt not in ("json", "csv"):
        abort(404)
    rows = _results_rows(scan_hash)
    body = json.dumps(rows, indent=2) if fmt == "json" else results_csv(rows)
    audit(f"results-{fmt}", f"{row['project_id']}/{scan_hash}", scans=1, size=len(body))
    resp = Response(body, mimetype="application/json" if fmt == "json" else "text/csv")
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="qmroct-{scan_hash[:12]}-results.{fmt}"'
    )
    return resp


@bp.post("/download/selection")
@login_required
def start_selection() -> Any:
    """Record the download (the search in ``what``) and show its progress page."""
    try:
        q = SearchQuery.from_args(request.form)
    except SearchError as exc:
        abort(400, description=str(exc))
    hashes = matching_hashes(state().db, q, scope(), limit=MAX_SELECTION + 1)
    if len(hashes) > MAX_SELECTION:
        abort(413, description=f"more than {MAX_SELECTION} scans: narrow the search")
    audit_id = audit("selection", q.url_args(), scans=0, size=0, finished=False)
    return render_template(
        "download.html",
        audit_id=audit_id,
        total=len(hashes),
        file_url=url_for("downloads.selection_file", audit_id=audit_id),
        progress_url=url_for("downloads.progress", audit_id=audit_id),
        back=url_for("pages.search_page") + "?" + q.url_args(),
    )


def _own_audit(audit_id: str) -> dict[str, Any]:
    row = state().db.query_one("SELECT * FROM web_audit WHERE audit_id = :a", {"a": audit_id})
    user = current_user()
    if row is None or user is None or row["username"] != user.username:
        abort(404)
    return row


@bp.get("/download/selection/<audit_id>/progress.json")
@login_required
def progress(audit_id: str) -> Any:
    row = _own_audit(audit_id)
    return {"scans": row["scan_count"], "bytes": row["bytes"], "finished": bool(row["finished"])}


class _Sink(io.RawIOBase):
    """An unseekable file zipfile writes into; the response drains it chunk by chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.chunks.append(bytes(b))
        return len(b)

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


@bp.get("/download/selection/<audit_id>/qmroct-selection.zip")
@login_required
def selection_file(audit_id: str) -> Any:
    row = _own_audit(audit_id)
    if row["finished"] or row["bytes"] > 0:
        abort(410, description="this download was already sent; start a new one")
    st = state()
    from urllib.parse import parse_qsl

    from werkzeug.datastructures import MultiDict

    q = SearchQuery.from_args(MultiDict(parse_qsl(row["what"])))
    hashes = matching_hashes(st.db, q, scope(), limit=MAX_SELECTION)
    st.db.execute("UPDATE web_audit SET bytes = 1 WHERE audit_id = :a", {"a": audit_id})

    def generate() -> Iterator[bytes]:
        sink = _Sink()
        sent = 0
        skipped: list[tuple[str, str]] = []
        manifest = io.StringIO()
        mw = csv.writer(manifest)
        mw.writerow(["scan_hash", "project", "subject", "session", "scan", "file", "overall"])
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for n, h in enumerate(hashes, 1):
                r = st.db.query_one("SELECT * FROM web_scans WHERE scan_hash = :h", {"h": h})
                if r is None:
                    continue
                base = f"{r['project_id']}/{r['subject_id']}/{r['session_id']}"
                if not st.deidentified(h):
                    skipped.append((h, "not de-identified by the gateway"))
                else:
                    try:
                        data, _ = st.scan_bytes(h)
                    except Exception as exc:
                        skipped.append((h, str(exc)[:200]))
                    else:
                        name = f"{base}/{_filename(r)}"
                        zf.writestr(name, data)
                        rows = _results_rows(h)
                        zf.writestr(
                            f"{base}/{r['scan_id']}.results.json", json.dumps(rows, indent=1)
                        )
                        mw.writerow([h, r["project_id"], r["subject_id"], r["session_id"],
                                     r["scan_id"], name, r["overall"]])  # fmt: skip
                chunk = sink.drain()
                sent += len(chunk)
                st.db.execute(
                    "UPDATE web_audit SET scan_count = :n, bytes = :b WHERE audit_id = :a",
                    {"n": n, "b": max(sent, 1), "a": audit_id},
                )
                yield chunk
            zf.writestr("manifest.csv", manifest.getvalue())
            if skipped:
                zf.writestr(
                    "skipped.csv", "scan_hash,reason\n" + "".join(f"{h},{w}\n" for h, w in skipped)
                )
        chunk = sink.drain()
        sent += len(chunk)
        st.db.execute(
            "UPDATE web_audit SET bytes = :b, finished = 1 WHERE audit_id = :a",
            {"b": sent, "a": audit_id},
        )
        yield chunk

    resp = Response(stream_with_context(generate()), mimetype="application/zip")
    resp.headers["Content-Disposition"] = 'attachment; filename="qmroct-selection.zip"'
    return resp

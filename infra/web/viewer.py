"""The viewer page and the tiles it draws: B-scans, the SLO or en-face image, overlays."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, abort, render_template, request, url_for
from qmroct.web.app import login_required, scope, state
from qmroct.web.pages import _visible_scan
from qmroct.web.search import SearchError, SearchQuery, matching_hashes
from qmroct.web.state import ScanUnavailable
from werkzeug.datastructures import MultiDict

bp = Blueprint("viewer", __name__)


def _width() -> int:
    try:
        return max(16, min(4096, int(request.args.get("w", "512"))))
    except ValueError:
        return 512


def _image(data: bytes) -> Response:
    resp = Response(data, mimetype="image/png")
    # Tiles are functions of the scan's content hash: immutable, so the browser keeps them.
    resp.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return resp


def _loaded(scan_hash: str) -> Any:
    try:
        return state().images.scan(scan_hash)
    except ScanUnavailable as exc:
        abort(503, description=str(exc))
    except Exception as exc:  # a corrupt file: the reader's message names it
        abort(422, description=f"scan {scan_hash[:12]} cannot be shown: {exc}")


@bp.get("/viewer/<scan_hash>")
@login_required
def viewer(scan_hash: str) -> Any:
    st = state()
    row = _visible_scan(scan_hash)
    session_scans = st.db.query(
        "SELECT scan_hash, scan_id FROM web_scans WHERE project_id = :p AND subject_id = :s"
        " AND session_id = :ses ORDER BY scan_id",
        {"p": row["project_id"], "s": row["subject_id"], "ses": row["session_id"]},
    )
    # Previous and next scan in the search the viewer was opened from, so a reader steps
    # through a filtered selection without going back to the list.
    prev_url = next_url = ""
    qs = request.args.get("q", "")
    if qs:
        try:
            q = SearchQuery.from_args(MultiDict(parse_qsl(qs)))
            hashes = matching_hashes(st.db, q, scope(), limit=5000)
        except SearchError:
            hashes = []
        if scan_hash in hashes:
            i = hashes.index(scan_hash)
            if i > 0:
                prev_url = url_for("viewer.viewer", scan_hash=hashes[i - 1], q=qs)
            if i + 1 < len(hashes):
                next_url = url_for("viewer.viewer", scan_hash=hashes[i + 1], q=qs)
    return render_template(
        "viewer.html",
        row=row,
        session_scans=session_scans,
        prev_url=prev_url,
        next_url=next_url,
        qs=qs,
    )


@bp.get("/api/scan/<scan_hash>/geometry.json")
@login_required
def geometry(scan_hash: str) -> Any:
    _visible_scan(scan_hash)
    loaded = _loaded(scan_hash)
    out = loaded.geometry()
    out["has_segmentation"] = loaded.segmentation is not None
    out["pattern"] = loaded.meta.pattern.value
    return out


@bp.get("/tile/<scan_hash>/bscan/<int:i>.png")
@login_required
def bscan(scan_hash: str, i: int) -> Any:
    _visible_scan(scan_hash)
    _loaded(scan_hash)
    try:
        return _image(state().images.bscan(scan_hash, i, _width()))
    except IndexError as exc:
        abort(404, description=str(exc))


@bp.get("/tile/<scan_hash>/fundus.png")
@login_required
def fundus(scan_hash: str) -> Any:
    _visible_scan(scan_hash)
    _loaded(scan_hash)
    data = state().images.fundus(scan_hash, _width())
    if data is None:
        abort(404, description="this scan has no SLO and no en-face image (one B-scan)")
    return _image(data)


@bp.get("/tile/<scan_hash>/overlay/<int:i>.json")
@login_required
def overlay(scan_hash: str, i: int) -> Any:
    _visible_scan(scan_hash)
    loaded = _loaded(scan_hash)
    if not 0 <= i < loaded.volume.shape[0]:
        abort(404)
    resp = Response(json.dumps(loaded.overlay(i, _width())), mimetype="application/json")
    resp.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return resp

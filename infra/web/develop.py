"""The measure developer's page: upload a measure (a .py module or an action zip), choose test
scans and parameters (a form generated from the measure's parameter schema), run it as deployed,
see values and pictures, download the DICOM results, and (admins) approve it.

Everything goes through the same code as the CLI (``qmroct.measures.devtest`` and
``qmroct.orchestration.approval``): the upload is deployed as ``qmroct-dev/measure-NAME``
through the OpenWhisk REST API and each test scan is one activation of it, on the test bucket
only, with the measure-developer role's store keys. Only measure developers and admins see the
page; only admins approve, with the admin role's keys.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from qmroct.errors import QmroctError
from qmroct.web.app import current_user, login_required, state

bp = Blueprint("develop", __name__, url_prefix="/develop")

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_RUN = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")
_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,120}\.(png|dcm|json)$")
DEVELOPERS = ("measure-developer", "admin")


def _developer() -> Any:
    user = current_user()
    if user is None or user.role not in DEVELOPERS:
        abort(403, description="the developer page is for measure developers and admins")
    return user


class _PrivateSandbox:
    """Without a configured or running OpenWhisk, one private sandbox for the app's life, so
    an upload and the runs after it see the same deployment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self.box: Any = None

    def get(self, settings: Any) -> Any:
        from qmroct.measures import devtest

        with self._lock:
            if self.box is None:
                self._stack = contextlib.ExitStack()
                self.box = self._stack.enter_context(devtest.sandbox(settings))
            return self.box

    def close(self) -> None:
        with self._lock:
            if self._stack is not None:
                self._stack.close()
            self._stack, self.box = None, None


@contextlib.contextmanager
def sandbox(role: str) -> Iterator[Any]:
    """The configured/running OpenWhisk and store with ``role``'s keys, else the private one
    (where nothing can be approved)."""
    from qmroct.measures import devtest

    settings = state().settings
    if devtest.whisk_client(settings) is not None:
        with devtest.sandbox(settings, role) as box:
            yield box
        return
    private = current_app.extensions.get("qmroct-develop")
    if private is None:
        private = current_app.extensions["qmroct-develop"] = _PrivateSandbox()
        state().closers.append(private.close)
    yield private.get(settings)


def _runs_dir() -> Path:
    return Path(state().settings.home).resolve() / "devtest-runs"


def _form_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Input fields from a pydantic JSON schema: number, integer, boolean, text."""
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kinds = [prop.get("type")] + [a.get("type") for a in prop.get("anyOf", [])]
        kind = next((k for k in ("integer", "number", "boolean") if k in kinds), "string")
        fields.append({
            "name": name,
            "kind": kind,
            "default": prop.get("default"),
            "min": prop.get("minimum", prop.get("exclusiveMinimum")),
            "max": prop.get("maximum", prop.get("exclusiveMaximum")),
            "description": prop.get("description", ""),
            "nullable": "null" in kinds,
        })  # fmt: skip
    return fields


def _parse_params(fields: list[dict[str, Any]], form: Any) -> dict[str, Any]:
    """The form's values by the schema's types; an empty field keeps the measure's default.
    The action validates them with the measure's own pydantic model."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f"param.{f['name']}", "")
        if f["kind"] == "boolean":
            out[f["name"]] = raw == "on"
            continue
        if raw.strip() == "":
            continue
        try:
            out[f["name"]] = (
                int(raw) if f["kind"] == "integer" else float(raw) if f["kind"] == "number" else raw
            )
        except ValueError:
            abort(400, description=f"parameter {f['name']}: {raw[:40]!r} is not a {f['kind']}")
    return out


def _describe(box: Any, name: str) -> dict[str, Any]:
    from qmroct.measures.devtest import describe_action, dev_action

    return describe_action(box.ow, dev_action(name))


@bp.get("/")
@login_required
def index() -> Any:
    _developer()
    return render_template("develop.html", error="", measure=None)


@bp.post("/upload")
@login_required
def upload() -> Any:
    _developer()
    from qmroct.measures.devtest import build_dev_zip, deploy_dev_zip
    from qmroct.measures.scaffold import folder_from_module

    name = request.form.get("name", "").strip()
    version = request.form.get("version", "").strip() or "0.1.0"
    file = request.files.get("measure")
    error = ""
    if not _NAME.match(name):
        error = "The measure name: 2 to 40 lower-case letters, digits and '_'."
    elif not _VERSION.match(version):
        error = "The version: MAJOR.MINOR.PATCH, e.g. 1.0.0."
    elif file is None or not file.filename:
        error = "Choose a measure_NAME.py or an action zip to upload."
    if error:
        return render_template("develop.html", error=error, measure=None), 400
    data = file.read()  # type: ignore[union-attr]
    try:
        if file.filename.endswith(".py"):  # type: ignore[union-attr]
            with tempfile.TemporaryDirectory(prefix="qmroct-upload-") as tmp:
                folder_from_module(Path(tmp), name, data, version)
                data = build_dev_zip(Path(tmp), name)
        with sandbox("measure-developer") as box:
            deploy_dev_zip(box.ow, name, version, data)
            _describe(box, name)
    except QmroctError as exc:
        return render_template("develop.html", error=str(exc), measure=None), 400
    return redirect(url_for("develop.measure_page", name=name, version=version))


@bp.get("/<name>")
@login_required
def measure_page(name: str) -> Any:
    _developer()
    if not _NAME.match(name):
        abort(404)
    from qmroct.measures.devtest import authorised_scans

    try:
        with sandbox("measure-developer") as box:
            info = _describe(box, name)
            scans = authorised_scans(box.store, "test")
            private = box.private
    except QmroctError as exc:
        return render_template("develop.html", error=str(exc), measure=None), 404
    return render_template(
        "develop.html",
        error="",
        measure=info,
        name=name,
        version=request.args.get("version", info.get("version", "")),
        fields=_form_fields(info.get("params_schema") or {}),
        scans=scans,
        private=private,
        report=None,
        run_id="",
    )


@bp.post("/<name>/run")
@login_required
def run(name: str) -> Any:
    _developer()
    if not _NAME.match(name):
        abort(404)
    from qmroct.measures.devtest import authorised_scans, dev_action, run_test_set

    version = request.form.get("version", "0.1.0")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
    try:
        with sandbox("measure-developer") as box:
            info = _describe(box, name)
            fields = _form_fields(info.get("params_schema") or {})
            params = _parse_params(fields, request.form)
            chosen = set(request.form.getlist("scan"))
            scans = authorised_scans(box.store, "test")
            picked = [s for s in scans if s.key in chosen]
            if not picked:
                abort(400, description="choose at least one test scan")
            report = run_test_set(
                box, dev_action(name), name, version, picked,
                params=params, out_dir=_runs_dir() / run_id,
            )  # fmt: skip
            private = box.private
    except QmroctError as exc:
        return render_template("develop.html", error=str(exc), measure=None), 400
    for o in report.outcomes:
        # Served by file name from this run's folder only.
        o.picture = Path(o.picture).name if o.picture else None
        o.dicom = Path(o.dicom).name if o.dicom else None
    return render_template(
        "develop.html",
        error="",
        measure=info,
        name=name,
        version=version,
        fields=[{**f, "default": params.get(f["name"], f["default"])} for f in fields],
        scans=scans,
        chosen=chosen,
        private=private,
        report=report,
        run_id=run_id,
    )


@bp.get("/runs/<run_id>/<filename>")
@login_required
def run_file(run_id: str, filename: str) -> Any:
    _developer()
    if not _RUN.match(run_id) or not _FILE.match(filename):
        abort(404)
    path = _runs_dir() / run_id / filename
    if not path.is_file():
        abort(404)
    mimetype = {"png": "image/png", "dcm": "application/dicom", "json": "application/json"}
    ext = filename.rsplit(".", 1)[1]
    return send_file(path, mimetype=mimetype[ext], as_attachment=ext != "png")


@bp.post("/<name>/approve")
@login_required
def approve_measure(name: str) -> Any:
    user = _developer()
    if user.role != "admin":
        abort(403, description="only an admin approves a measure for production")
    if not _NAME.match(name):
        abort(404)
    version = request.form.get("version", "")
    if not _VERSION.match(version):
        abort(400, description="the version: MAJOR.MINOR.PATCH")
    from qmroct.orchestration.approval import approve
    from qmroct.storage.ledger import Ledger

    settings = state().settings
    try:
        with sandbox("admin") as box:
            if box.private:
                raise QmroctError(
                    "approval deploys to the production OpenWhisk: none is configured or running"
                )
            ledger = Ledger.open(settings.effective_ledger_url())
            try:
                done = approve(
                    ledger, box, name, version, by=user.username, package=settings.ow_package,
                    bucket=settings.measures_bucket,
                )  # fmt: skip
            finally:
                ledger.close()
    except QmroctError as exc:
        return render_template("develop.html", error=str(exc), measure=None), 409
    return render_template(
        "develop.html",
        error="",
        measure=None,
        approved=json.loads(done.model_dump_json()),
    )

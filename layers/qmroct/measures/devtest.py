"""``qmroct measure test``: a developer's measure, run as deployed, on the test set only.

The measure is deployed as an action of the developers' package (``qmroct-dev/measure-NAME``)
through the OpenWhisk REST API, the way ``wsk action update`` deploys it, and each test scan is
one blocking invoke: the runtime's /init and /run of the action zip, never an import. The
action gets presigned URLs exactly as in production, for one scan and its own outputs.

The test set is the bucket ``oct-devtest`` and nothing else:

- ``phantoms/``: synthetic scans with known, injected defects (made here when missing);
- ``cleared/``: scans an operator has cleared for development (the developer role reads them,
  only operators write them);
- ``runs/``: what the test runs write (pictures and DICOM results).

The developer's store credentials read this bucket and no other (``infra/minio/policies/
measure-developer.json``), so a patient scan cannot be presigned into a test run.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from qmroct.errors import ConfigError, QmroctError

TEST_BUCKET = "oct-devtest"
PHANTOM_PREFIX = "phantoms/"
CLEARED_PREFIX = "cleared/"
RUNS_PREFIX = "runs/"
#: The phantom part of the test set: (object name, injected defects, seed). Small volumes keep
#: a test run to seconds; each defect is one the suite's validation sweeps (qmroct validate).
PHANTOMS: tuple[tuple[str, dict[str, float], int], ...] = (
    ("clean", {}, 101),
    ("low_signal", {"low_signal": 0.8}, 102),
    ("blur", {"blur": 0.8}, 103),
)
_INVOKE_TIMEOUT_MS = 120000


class DevScan(BaseModel):
    key: str
    source: Literal["phantom", "cleared"]


class ScanOutcome(BaseModel):
    scan: str
    status: str
    values: dict[str, Any] = Field(default_factory=dict)
    verdicts: list[dict[str, Any]] = Field(default_factory=list)
    failure: str | None = None
    activation_id: str = ""
    picture: str | None = None
    dicom: str | None = None
    code_digest: str = ""
    seconds: float = 0.0


class DevReport(BaseModel):
    measure: str
    version: str
    action: str
    code_sha256: str = ""
    code_digest: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    outcomes: list[ScanOutcome] = Field(default_factory=list)
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def passed(self) -> bool:
        """Every test scan gave a result, none failed inside the measure, one code digest."""
        digests = {o.code_digest for o in self.outcomes}
        return (
            bool(self.outcomes)
            and all(o.status in ("ok", "not_applicable") for o in self.outcomes)
            and len(digests) == 1
        )

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return {"scans": len(self.outcomes), "statuses": counts, "passed": self.passed}


class DiffRow(BaseModel):
    scan: str
    value: str
    reference: Any = None
    got: Any = None
    ok: bool


# -- the sandbox: where the test runs ------------------------------------------------------------
@dataclass
class Sandbox:
    """An OpenWhisk API and an object store holding the test bucket."""

    ow: Any
    store: Any
    where: str
    #: a throwaway OpenWhisk and store: nothing to record, nothing to approve
    private: bool = False


def whisk_client(settings: Any) -> Any | None:
    """The OpenWhisk client the configuration names (``QMROCT_OW_*``), or the running stack's
    (``QMROCT_HOME/whisk/whisk.json``), or None."""
    from qmroct.clients.openwhisk import OpenWhiskClient

    if settings.ow_api_host and settings.ow_auth:
        return OpenWhiskClient(settings.ow_api_host, settings.ow_auth, settings.ow_namespace)
    info = Path(settings.home) / "whisk" / "whisk.json"
    if info.is_file():
        doc = json.loads(info.read_text())
        return OpenWhiskClient(doc["api_host"], doc["auth"])
    return None


@contextmanager
def sandbox(settings: Any, role: str = "measure-developer") -> Iterator[Sandbox]:
    """The configured (or running) OpenWhisk and store, the store with ``role``'s keys;
    without them, a private embedded OpenWhisk and folder store for the length of the test,
    so a developer needs no servers."""
    from qmroct.objectstore import store_from_settings

    ow = whisk_client(settings)
    store = None
    if ow is not None:
        try:
            store = store_from_settings(settings, role)
        except ConfigError:
            store = None
    if ow is not None and store is not None:
        yield Sandbox(ow, store, f"OpenWhisk at {ow.api_host}")
        return
    with _private_sandbox() as box:
        yield box


@contextmanager
def _private_sandbox() -> Iterator[Sandbox]:
    import secrets

    from qmroct.clients.openwhisk import OpenWhiskClient
    from qmroct.localstore.server import LocalStoreServer
    from qmroct.localstore.store import LocalFolderStore
    from qmroct.objectstore.local import LocalStoreClient
    from qmroct.runtime.api import ApiServer
    from qmroct.runtime.controller import Controller

    with tempfile.TemporaryDirectory(prefix="qmroct-devtest-") as tmp:
        home = Path(tmp)
        folder = LocalFolderStore(home / "store")
        secret = secrets.token_urlsafe(24)
        server = LocalStoreServer(folder, secret=secret).start()
        controller = Controller(home / "whisk", user_memory_mb=2048)
        api = ApiServer(controller)
        controller.set_api(api.api_host, api.auth)
        api.start()
        try:
            store = LocalStoreClient(server.endpoint, server.access_key, secret)
            ow = OpenWhiskClient(api.api_host, api.auth)
            yield Sandbox(ow, store, "a private embedded OpenWhisk (no stack running)", True)
        finally:
            api.stop()
            controller.close()
            server.close()
            folder.notifier.close()


# -- the test set ----------------------------------------------------------------------------------
def ensure_phantoms(store: Any, bucket: str = TEST_BUCKET) -> list[str]:
    """Put the phantom test scans into the test bucket where missing; the keys.

    The bucket is made when missing (an operator's or the embedded stack's credentials may;
    a developer's get AccessDenied naming the bucket: ask the operator to create it)."""
    from qmroct.objectstore.errors import BucketNotFound
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    keys = []
    for name, defects, seed in PHANTOMS:
        key = f"{PHANTOM_PREFIX}{name}.vol"
        try:
            present = store.exists(bucket, key)
        except BucketNotFound:
            store.ensure_bucket(bucket, versioning=True)
            present = False
        if not present:
            scan, _, _ = make_phantom("volume", defects=defects, seed=seed, size="small")
            data = write_vol(scan, patient_id=f"PHANTOM{seed}", visit_id=name)
            store.put(bucket, key, data, content_type="application/octet-stream")
        keys.append(key)
    return keys


def authorised_scans(
    store: Any, data: Literal["test", "phantoms"] = "test", bucket: str = TEST_BUCKET
) -> list[DevScan]:
    """The authorised test scans: the phantoms, plus (``data="test"``) the cleared scans."""
    scans = [DevScan(key=k, source="phantom") for k in ensure_phantoms(store, bucket)]
    if data == "test":
        scans += [
            DevScan(key=o.key, source="cleared")
            for o in store.list(bucket, CLEARED_PREFIX)
            if not o.key.endswith("/")
        ]
    return scans


# -- deploying and running -------------------------------------------------------------------------
def dev_action(name: str) -> str:
    from qmroct.measures.scaffold import DEV_PACKAGE

    return f"{DEV_PACKAGE}/measure-{name}"


def build_dev_zip(folder: Path, name: str) -> bytes:
    """The action zip of measure NAME from a developer folder, as ``qmroct build`` makes one."""
    from qmroct.measures.scaffold import DEV_PACKAGE, dev_manifest_path
    from qmroct.runtime.actionzip import action_entries, deterministic_zip
    from qmroct.runtime.manifest import load_manifest

    manifest = load_manifest(dev_manifest_path(folder))
    _, pkg = manifest.package(DEV_PACKAGE)
    spec = pkg.actions.get(f"measure-{name}")
    if spec is None:
        raise ConfigError(f"{dev_manifest_path(folder)}: no action measure-{name}")
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    return deterministic_zip(action_entries(manifest, spec, pyproject))


def deploy_dev(ow: Any, folder: Path, name: str, version: str) -> str:
    """``wsk action update qmroct-dev/measure-NAME`` with the folder's zip; its sha256."""
    return deploy_dev_zip(ow, name, version, build_dev_zip(folder, name))


def deploy_dev_zip(ow: Any, name: str, version: str, data: bytes) -> str:
    """``wsk action update qmroct-dev/measure-NAME`` with an action zip; its sha256.

    ConfigError unless ``data`` is a zip with ``__main__.py`` at its top, as OpenWhisk's
    Python runtime needs it."""
    import io
    import zipfile

    from qmroct.measures.scaffold import DEV_PACKAGE, MEASURE_ANNOTATION, VERSION_ANNOTATION

    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"measure-{name}.zip: not a zip file: {exc}") from exc
    if "__main__.py" not in names:
        raise ConfigError(f"measure-{name}.zip: no __main__.py at the top of the zip")
    ow.ensure_package(DEV_PACKAGE)
    ow.update_action(
        dev_action(name),
        data,
        limits={"timeout": 120000, "memory": 512, "logs": 5},
        annotations={VERSION_ANNOTATION: version, MEASURE_ANNOTATION: name},
    )
    return hashlib.sha256(data).hexdigest()


def describe_action(ow: Any, action: str) -> dict[str, Any]:
    """The measure's own description, from the deployed action (``{"describe": true}``)."""
    doc = ow.invoke(action, {"describe": True}, blocking=True, result=True, timeout_ms=60000)
    if not isinstance(doc, dict) or "params_schema" not in doc:
        raise QmroctError(f"action {action}: no measure description in its answer: {doc!r}"[:300])
    return doc


def _stem(key: str) -> str:
    return posixpath.basename(key).replace(".", "_")


def run_test_set(
    sb: Sandbox,
    action: str,
    measure: str,
    version: str,
    scans: list[DevScan],
    *,
    params: dict[str, Any] | None = None,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    bucket: str = TEST_BUCKET,
) -> DevReport:
    """Invoke ``action`` once per test scan (blocking); save values, pictures, DICOM results."""
    report = DevReport(measure=measure, version=version, action=action, params=params or {})
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    expires = timedelta(minutes=30)
    for i, scan in enumerate(scans, 1):
        if progress:
            progress(f"[{i}/{len(scans)}] {scan.key}")
        base = f"{RUNS_PREFIX}{measure}/{version}/{run_id}/{_stem(scan.key)}"
        data = sb.store.get(bucket, scan.key)
        inv = {
            "job_key": f"devtest:{run_id}:{scan.key}",
            "lease_token": run_id,
            "scan_hash": hashlib.sha256(data).hexdigest(),
            "scan_url": sb.store.presign_get(bucket, scan.key, expires=expires),
            "scan_name": posixpath.basename(scan.key),
            "picture_url": sb.store.presign_put(
                bucket, f"{base}/picture.png", expires=expires, content_type="image/png"
            ),
            "dicom_url": sb.store.presign_put(
                bucket, f"{base}/picture.dcm", expires=expires, content_type="application/dicom"
            ),
            "measure": measure,
            "version": version,
            "params": params or {},
        }
        t0 = time.monotonic()
        report.outcomes.append(_invoke_one(sb, action, scan.key, inv, base, out_dir, bucket))
        report.outcomes[-1].seconds = round(time.monotonic() - t0, 2)
    digests = {o.code_digest for o in report.outcomes if o.code_digest}
    report.code_digest = digests.pop() if len(digests) == 1 else ""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return report


def _invoke_one(
    sb: Sandbox,
    action: str,
    key: str,
    inv: dict[str, Any],
    base: str,
    out_dir: Path | None,
    bucket: str,
) -> ScanOutcome:
    from qmroct.clients.openwhisk import ActionError

    try:
        record = sb.ow.invoke(action, inv, blocking=True, timeout_ms=_INVOKE_TIMEOUT_MS)
    except ActionError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return ScanOutcome(
            scan=key,
            status="error",
            failure=exc.message,
            activation_id=body.get("activationId", ""),
        )
    result = (record.get("response") or {}).get("result") or {}
    if "activationId" in record and "response" not in record:
        return ScanOutcome(scan=key, status="error", failure="still running after the timeout")
    outcome = ScanOutcome(
        scan=key,
        status=str(result.get("status", "error")),
        values=result.get("values") or {},
        verdicts=result.get("verdicts") or [],
        failure=result.get("failure") or result.get("error"),
        activation_id=record.get("activationId", ""),
        code_digest=result.get("code_digest", ""),
    )
    for flag, name, attr in (
        ("picture_stored", "picture.png", "picture"),
        ("dicom_stored", "picture.dcm", "dicom"),
    ):
        if not result.get(flag):
            continue
        if out_dir is None:
            setattr(outcome, attr, f"s3://{bucket}/{base}/{name}")
            continue
        target = out_dir / f"{_stem(key)}.{name.split('.')[-1]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sb.store.get(bucket, f"{base}/{name}"))
        setattr(outcome, attr, str(target))
    return outcome


# -- comparing with the developer's local results --------------------------------------------------
def load_reference(path: Path) -> dict[str, dict[str, Any]]:
    """``{scan: {value: x}}`` from a reference file: either that mapping, or a results.json
    of an earlier ``qmroct measure test`` (its ``outcomes``). Scans match by base name."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the reference: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("outcomes"), list):
        return {posixpath.basename(o["scan"]): dict(o.get("values") or {}) for o in doc["outcomes"]}
    if isinstance(doc, dict) and all(isinstance(v, dict) for v in doc.values()):
        return {posixpath.basename(k): dict(v) for k, v in doc.items()}
    raise ConfigError(
        f"{path}: expected {{scan: {{value: number}}}} or a results.json of qmroct measure test"
    )


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not (isinstance(a, int | float) and isinstance(b, int | float))
    ):
        return a == b
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


def compare(
    report: DevReport, reference: dict[str, dict[str, Any]], *, rtol: float, atol: float
) -> list[DiffRow]:
    """One row per (scan, value) of the reference: numbers within ``atol + rtol*|reference|``,
    anything else equal. A scan or value the run lacks is a mismatch."""
    got = {posixpath.basename(o.scan): o.values for o in report.outcomes}
    rows = []
    for scan, values in sorted(reference.items()):
        for name, ref in sorted(values.items()):
            present = scan in got and name in got[scan]
            value = got.get(scan, {}).get(name)
            ok = present and _close(value, ref, rtol, atol)
            rows.append(DiffRow(scan=scan, value=name, reference=ref, got=value, ok=ok))
    return rows

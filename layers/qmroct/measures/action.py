"""The glue every measure action runs: one scan in by presigned URL, one result dict out.

Everything heavy is imported when this module is, which an action's ``__main__.py`` does at
module level, so at /init: the scan context and the whole measure suite. The scan readers are
not: a measure reads the stored context, not the scan. Nor are the settings (see
:mod:`qmroct.limits`), a DICOM library (the Secondary Capture is encoded by
:mod:`qmroct.oct.writers.secondary_capture`) or an HTTP library beyond the standard one
(:mod:`qmroct.objectstore.transfer`): each would cost all nine measure containers their import.

``run_action`` never raises for a bad scan or a bad invocation: a typed error becomes a result
with status ``failed`` and the reason, so ``record-result`` can store it and the user sees why.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from qmroct import pictures
from qmroct.errors import QmroctError
from qmroct.heap import keep_freed_memory
from qmroct.limits import max_scan_bytes
from qmroct.measures.base import Measure, get_measure, registry
from qmroct.measures.context import ScanContext
from qmroct.objectstore import transfer
from qmroct.oct.model import Scan, ScanMeta
from qmroct.oct.segmentation import Segmentation
from qmroct.oct.writers.secondary_capture import write_secondary_capture
from qmroct.results import (
    MeasureActionResult,
    MeasureInvocation,
    MeasureOutput,
    ResultStatus,
    Verdict,
)

PNG = "image/png"
DICOM = "application/dicom"


def code_digest(measure: Measure) -> str:
    """``sha256:<hex>`` of the source file of the measure's module: what ran, byte for byte.

    The publication descriptor records the same digest, so a result shows whether the code
    that computed it is the code that was published.
    """
    module = sys.modules[type(measure).__module__]
    return "sha256:" + hashlib.sha256(Path(module.__file__ or "").read_bytes()).hexdigest()


def _max_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def status_of(out: MeasureOutput) -> ResultStatus:
    """not_applicable when every letter the measure covers is not applicable, else ok."""
    if out.verdicts and all(v.verdict is Verdict.NOT_APPLICABLE for v in out.verdicts):
        return ResultStatus.NOT_APPLICABLE
    return ResultStatus.OK


def fetch_inputs(inv: MeasureInvocation, max_bytes: int) -> dict[str, object]:
    """Download the derived products by their presigned URLs.

    The ``segmentation`` product is the scan's stored context (see
    :mod:`qmroct.measures.context`) and arrives as ``inputs["context"]``; one derived before it
    held the boundaries alone and arrives as ``inputs["segmentation"]``.
    """
    inputs: dict[str, object] = {}
    for name, url in inv.inputs.items():
        data = transfer.download(url, max_bytes=max_bytes)
        source = f"derived {name} of {inv.scan_name}"
        if name == "segmentation" and ScanContext.is_stored_context(data):
            # The raw B-scans are not stored: read from the scan if a measure asks for them.
            inputs["context"] = ScanContext.from_bytes(
                data, source=source, bscans=lambda: _read_scan(inv, max_bytes).bscans
            )
        elif name == "segmentation":
            try:
                inputs[name] = Segmentation.from_bytes(data)
            except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
                raise QmroctError(f"{source}: unreadable: {exc}") from exc
        else:
            inputs[name] = data
    return inputs


def secondary_capture(out: MeasureOutput, meta: ScanMeta) -> bytes:
    """The picture as a DICOM Secondary Capture, titled with the measure and version."""
    # The measure's own pixels when it kept them: decoding the PNG it just encoded is waste.
    kept = out.picture_rgb
    if isinstance(kept, np.ndarray) and kept.ndim == 3 and kept.shape[2] == 3:
        rgb = np.ascontiguousarray(kept, dtype=np.uint8)  # the cast pictures.to_png makes
    else:
        rgb = pictures.from_png(out.picture_png or b"")
    return write_secondary_capture(rgb, source=meta, title=f"qmroct {out.measure} {out.version}")


def describe(measure: Measure) -> dict[str, Any]:
    """What an action says about its measure when invoked with ``{"describe": true}``: so the
    approver learns the parameter schema and code digest of a deployed zip without importing
    the developer's code into a process that holds credentials."""
    return {
        "measure": measure.name,
        "version": measure.version,
        "criteria": list(measure.criteria),
        "requires": list(measure.requires),
        "params_schema": measure.Params.model_json_schema(),
        "params": measure.Params().model_dump(mode="json"),
        "code_digest": code_digest(measure),
        "doc": (type(measure).__doc__ or "").strip(),
    }


def _scan_of(inv: MeasureInvocation, inputs: dict[str, object], max_bytes: int) -> Scan:
    """The scan from the stored context, or downloaded and decoded when there is none."""
    ctx = inputs.get("context")
    if isinstance(ctx, ScanContext):
        return ctx.scan
    return _read_scan(inv, max_bytes)


def _read_scan(inv: MeasureInvocation, max_bytes: int) -> Scan:
    """The scan itself, downloaded and decoded: only without a stored context (one derived
    before contexts were stored) or for a measure that reads the raw B-scans. The readers stay
    out of the container's start-up."""
    from qmroct.oct.readers import read_scan

    return read_scan(transfer.download(inv.scan_url, max_bytes=max_bytes), name=inv.scan_name)


def warm(measure: str | None = None) -> None:
    """Pay the one-off costs of a container at /init: its measure's module and what it
    imports (``measure``; else every measure of the registry). The Secondary Capture writer
    needs no warming: it encodes a fixed set of attributes itself (see
    :mod:`qmroct.oct.writers.secondary_capture`). The container keeps its freed memory for
    the next activation (:mod:`qmroct.heap`): the context and the measure's arrays are
    volume-sized, and faulting them in afresh for every scan costs system time."""
    keep_freed_memory()
    if measure is None:
        registry()
    else:
        get_measure(measure)


def run_action(args: dict[str, Any], measure_name: str) -> dict[str, Any]:
    """Run measure ``measure_name`` on the one scan named by ``args`` (a MeasureInvocation);
    ``{"describe": true}`` instead answers :func:`describe`."""
    if args.get("describe") is True:
        return describe(get_measure(measure_name))
    started = datetime.now(UTC)
    cpu0 = time.process_time()
    try:
        inv = MeasureInvocation.model_validate(args)
    except ValidationError as exc:
        # Without job_key and lease there is no result to record: an application error.
        return {"error": f"measure-{measure_name}: invalid invocation: {exc.errors()[:3]}"}
    measure = get_measure(measure_name)
    result: dict[str, Any] = {
        "job_key": inv.job_key,
        "lease_token": inv.lease_token,
        "scan_hash": inv.scan_hash,
        "measure": measure.name,
        "version": inv.version,
        "params": inv.params,
        "code_digest": code_digest(measure),
    }
    try:
        # A published version is code plus parameters: a new version may change only the
        # parameters, so the guard is on the code itself, not on the version label.
        if inv.measure != measure.name:
            raise QmroctError(f"job asks for {inv.measure}, this action runs {measure.name}")
        if inv.code_digest and inv.code_digest != result["code_digest"]:
            raise QmroctError(
                f"job asks for {inv.measure} {inv.version} with code {inv.code_digest[:19]}, "
                f"this action runs code {result['code_digest'][:19]}: deploy the published "
                "code (wsk action update) before publishing"
            )
        params = measure.parse_params(inv.params)
        result["params"] = params.model_dump(mode="json")
        max_bytes = max_scan_bytes()
        inputs = fetch_inputs(inv, max_bytes)
        scan = _scan_of(inv, inputs, max_bytes)
        out = measure.compute(scan, params, inputs)
        if inv.picture_url and out.picture_png:
            transfer.upload(inv.picture_url, out.picture_png, content_type=PNG)
            result["picture_stored"] = True
        if inv.dicom_url and out.picture_png:
            transfer.upload(inv.dicom_url, secondary_capture(out, scan.meta), content_type=DICOM)
            result["dicom_stored"] = True
        result.update(
            status=status_of(out), values=out.values, verdicts=out.verdicts, notes=out.notes
        )
    except (QmroctError, ValidationError) as exc:
        result.update(status=ResultStatus.FAILED, failure=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a measure bug must still yield a result row
        result.update(
            status=ResultStatus.FAILED, failure=f"internal error {type(exc).__name__}: {exc}"
        )
    result.update(
        started_at=started,
        ended_at=datetime.now(UTC),
        cpu_s=round(time.process_time() - cpu0, 4),
        max_rss_mb=round(_max_rss_mb(), 1),
    )
    return MeasureActionResult.model_validate(result).model_dump(mode="json")

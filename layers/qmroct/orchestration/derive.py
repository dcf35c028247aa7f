"""Derive actions: compute an intermediate product of one scan once, for every measure that
needs it. Like a measure, a derive action sees one scan by presigned URL and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from qmroct.errors import QmroctError
from qmroct.limits import max_scan_bytes
from qmroct.objectstore.transfer import download, upload
from qmroct.orchestration.models import DeriveActionResult, DeriveInvocation
from qmroct.results import ResultStatus


def _segmentation(data: bytes, name: str) -> bytes:
    """The scan's context: the segmentation together with the decoded scan, display image and
    disc, so each measure loads it once instead of reading and segmenting the scan again."""
    from qmroct.measures.context import ScanContext
    from qmroct.oct.readers.dispatch import read_scan

    return ScanContext.build(read_scan(data, name=name)).to_bytes()


def warm() -> None:
    """At /init: what the producers import (the scan readers, the scan context and the
    segmentation), so the first activation runs as warm as the later ones; and the
    container keeps its freed memory for the next scan (:mod:`qmroct.heap`)."""
    import qmroct.measures.context  # noqa: F401
    import qmroct.oct.readers.dispatch  # noqa: F401
    from qmroct.heap import keep_freed_memory

    keep_freed_memory()


#: product name -> function of (scan bytes, scan name) returning the product's bytes.
PRODUCERS: dict[str, Callable[[bytes, str], bytes]] = {"segmentation": _segmentation}


def run_derive(args: Mapping[str, Any], *, max_bytes: int | None = None) -> dict[str, Any]:
    """Read the scan, compute the product, PUT it; a bad scan gives a failed result, not a crash."""
    inv = DeriveInvocation.model_validate(dict(args))
    out = {
        "job_key": inv.job_key,
        "lease_token": inv.lease_token,
        "scan_hash": inv.scan_hash,
        "measure": inv.measure,
        "version": inv.version,
    }
    produce = PRODUCERS.get(inv.measure)
    if produce is None:
        return DeriveActionResult(
            **out, status=ResultStatus.FAILED, failure=f"no producer for {inv.measure!r}"
        ).model_dump(mode="json")
    if max_bytes is None:
        max_bytes = max_scan_bytes()
    try:
        data = download(inv.scan_url, max_bytes=max_bytes)
        upload(
            inv.output_url, produce(data, inv.scan_name), content_type="application/octet-stream"
        )
    except QmroctError as exc:
        return DeriveActionResult(**out, status=ResultStatus.FAILED, failure=str(exc)).model_dump(
            mode="json"
        )
    return DeriveActionResult(
        **out,
        status=ResultStatus.OK,
        output_bucket=inv.output_bucket,
        output_key=inv.output_key,
    ).model_dump(mode="json")

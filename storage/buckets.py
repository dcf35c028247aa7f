"""The bucket layout and the object key layout of qmroct.

Buckets (names are defaults; ``QMROCT_*_BUCKET`` settings may rename them):

- ``oct-ingest``: de-identified scans, ``{project}/{subject}/{session}/{scan}.{ext}``.
  Versioned; every created object fires the ``image-stored`` trigger.
- ``oct-measures``: published measure descriptors, ``{name}/{version}.json``; fires
  ``measure-published``.
- ``oct-results``: measure outputs, ``{scan_hash}/{measure}/{version}/{file}`` (``picture.png``).
- ``oct-derived``: derived data (segmentations, converted volumes), same key shape as results.

Every key that enters the system passes :func:`validate_key` first.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field
from qmroct.errors import InvalidKey
from qmroct.objectstore.keys import MAX_KEY_BYTES, validate_bucket, validate_key

__all__ = [
    "BUCKETS",
    "DERIVED_BUCKET",
    "INGEST_BUCKET",
    "MAX_KEY_BYTES",
    "MEASURES_BUCKET",
    "RESULTS_BUCKET",
    "BucketSpec",
    "ScanKey",
    "measure_key",
    "parse_result_key",
    "parse_scan_key",
    "result_key",
    "validate_bucket",
    "validate_key",
]

INGEST_BUCKET = "oct-ingest"
MEASURES_BUCKET = "oct-measures"
RESULTS_BUCKET = "oct-results"
DERIVED_BUCKET = "oct-derived"

# Compression suffixes the gateway may add; they belong to the extension, not the scan name.
_COMPRESSION = ("gz", "zst", "xz", "bz2")
_HASH_RE = re.compile(r"^[0-9a-f]{16,128}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class BucketSpec(BaseModel):
    """One bucket: its name, what it holds, and the settings it needs."""

    name: str
    purpose: str
    versioning: bool = True
    object_lock: bool = False
    trigger: str | None = Field(None, description="OpenWhisk trigger fired on object creation")
    suffixes: tuple[str, ...] = ()


BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec(
        name=INGEST_BUCKET,
        purpose="de-identified scans",
        object_lock=True,
        trigger="image-stored",
    ),
    BucketSpec(
        name=MEASURES_BUCKET,
        purpose="published measure descriptors",
        trigger="measure-published",
        suffixes=(".json",),
    ),
    BucketSpec(name=RESULTS_BUCKET, purpose="measure pictures and outputs", object_lock=True),
    BucketSpec(name=DERIVED_BUCKET, purpose="derived data (segmentations, conversions)"),
)


class ScanKey(BaseModel):
    """``{project}/{subject}/{session}/{scan}.{ext}`` in the ingest bucket."""

    project: str
    subject: str
    session: str
    scan: str
    ext: str

    @property
    def key(self) -> str:
        return validate_key(f"{self.project}/{self.subject}/{self.session}/{self.scan}.{self.ext}")


def parse_scan_key(key: str) -> ScanKey:
    """Split an ingest key into its parts; ``scan.vol.gz`` gives scan ``scan``, ext ``vol.gz``."""
    validate_key(key)
    parts = key.split("/")
    if len(parts) != 4:
        raise InvalidKey(key, f"expected project/subject/session/scan.ext, got {len(parts)} parts")
    project, subject, session, filename = parts
    pieces = filename.split(".")
    if len(pieces) < 2 or not pieces[0]:
        raise InvalidKey(key, "the scan file name has no extension")
    n_ext = 2 if len(pieces) >= 3 and pieces[-1].lower() in _COMPRESSION else 1
    scan = ".".join(pieces[:-n_ext])
    ext = ".".join(pieces[-n_ext:])
    if not ext or any(not p for p in pieces[-n_ext:]):
        raise InvalidKey(key, "empty extension")
    return ScanKey(project=project, subject=subject, session=session, scan=scan, ext=ext)


def result_key(scan_hash: str, measure: str, version: str, name: str = "picture.png") -> str:
    """``{scan_hash}/{measure}/{version}/{name}`` in the results (or derived) bucket."""
    if not _HASH_RE.match(scan_hash):
        raise InvalidKey(scan_hash, "a scan hash is 16 to 128 lowercase hex digits")
    for label, part in (("measure", measure), ("version", version), ("file name", name)):
        if not _NAME_RE.match(part) or part in (".", ".."):
            raise InvalidKey(part, f"not a valid {label} (letters, digits, '_', '.', '-')")
    return validate_key(f"{scan_hash}/{measure}/{version}/{name}")


def parse_result_key(key: str) -> tuple[str, str, str, str]:
    """Inverse of :func:`result_key`: ``(scan_hash, measure, version, name)``."""
    parts = validate_key(key).split("/")
    if len(parts) != 4:
        raise InvalidKey(key, "expected scan_hash/measure/version/file")
    result_key(*parts)
    return parts[0], parts[1], parts[2], parts[3]


def measure_key(name: str, version: str) -> str:
    """``{name}/{version}.json`` in the measures bucket."""
    for label, part in (("measure", name), ("version", version)):
        if not _NAME_RE.match(part):
            raise InvalidKey(part, f"not a valid {label} (letters, digits, '_', '.', '-')")
    return validate_key(f"{name}/{version}.json")

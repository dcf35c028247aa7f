"""Put scans and their quality results into XNAT, writing only what changed.

- A stored scan is registered once per content hash: subject, ``xnat:optSessionData`` session,
  ``xnat:optScanData`` scan, and the de-identified file in the scan's ``OCT`` resource, stored
  as what its name says (the gateway's gzip transfer encoding undone) and checked against the
  content hash, with a ``SHA256SUMS`` manifest; a scan whose manifest already lists its hash is
  left alone.
- Results, each scan its own (see :mod:`qmroct.xnat.assessor`): one ``xnat:qcAssessmentData``
  per scan and measure version, written only when its values differ from XNAT's; in the scan's
  ``QMROCT`` resource the pictures (``{measure}.png``), the report (``report.html``) and the
  results (``results.json``), replaced only when their digest differs; superseded versions in
  the scan's ``QMROCT_ARCHIVE`` resource as ``{measure}/{version}/{id}.json``, written once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from urllib.parse import unquote

from pydantic import BaseModel, Field

from qmroct.clients.xnat import XnatClient, XnatError, XnatUnavailable, md5_hex
from qmroct.errors import QmroctError
from qmroct.oct.readers.source import GZIP_MAGIC, default_max_bytes, gunzip_bounded
from qmroct.results import StoredResult
from qmroct.xnat.assessor import (
    XSI_TYPE,
    assessor_label,
    assessor_xml,
    qc_from_item,
    scan_qc,
    worst_verdicts,
)
from qmroct.xnat.report import scan_report

SCAN_RESOURCE = "OCT"
RESULTS_RESOURCE = "QMROCT"
ARCHIVE_RESOURCE = "QMROCT_ARCHIVE"
MANIFEST = "SHA256SUMS"


class ScanPlace(BaseModel):
    """Where one stored scan lives in XNAT (the pseudonymised labels of its object key)."""

    project: str
    subject: str
    session: str
    scan: str
    ext: str
    scan_hash: str
    format: str = ""
    pattern: str = ""


class PushReport(BaseModel):
    registered: bool = False
    assessors_written: list[str] = Field(default_factory=list)
    assessors_unchanged: int = 0
    files_written: list[str] = Field(default_factory=list)
    files_unchanged: int = 0


def _path_of(row: dict) -> str:
    """A listed file's path inside its resource: XNAT's ``Name`` is only the base name, the
    ``URI`` ends in ``/files/<path>``."""
    uri = str(row.get("URI", ""))
    if "/files/" in uri:
        return unquote(uri.split("/files/", 1)[1])
    return str(row.get("Name", ""))


def _scan_type(place: ScanPlace) -> str:
    return f"OCT {place.pattern or 'scan'} ({place.format or place.ext})"


def scan_file(place: ScanPlace, data: bytes) -> tuple[str, bytes]:
    """The file as XNAT should hold it: name and bytes that say the same thing. The gateway
    stores scans gzip-encoded; XNAT gets them decoded, under the name without ``.gz``, and the
    bytes must hash to the catalogued content hash (what ``SHA256SUMS`` states)."""
    name = f"{place.scan}.{place.ext}"
    if data[:2] == GZIP_MAGIC:
        data = gunzip_bounded(name, data, default_max_bytes())
        name = name.removesuffix(".gz")
    got = hashlib.sha256(data).hexdigest()
    if got != place.scan_hash:
        raise QmroctError(
            f"{place.project}/{place.subject}/{place.session}/{name}: content sha256 {got} is not "
            f"the catalogued {place.scan_hash}; not sent to XNAT"
        )
    return name, data


class XnatSync:
    def __init__(self, client: XnatClient) -> None:
        self.client = client

    def is_registered(self, place: ScanPlace) -> bool:
        """True when the scan's ``SHA256SUMS`` in XNAT lists this content hash."""
        p = place
        try:
            manifest = self.client.get_file(
                p.project, p.subject, p.session, SCAN_RESOURCE, MANIFEST, scan=p.scan
            )
        except XnatUnavailable:
            raise
        except XnatError as exc:
            if exc.status == 404:
                return False
            raise
        return p.scan_hash in manifest.decode("ascii", "replace").split()

    def register_scan_lazy(self, place: ScanPlace, fetch: Callable[[], bytes]) -> bool:
        """Like :meth:`register_scan`, fetching the file only when it must be uploaded."""
        if self.is_registered(place):
            return False
        return self.register_scan(place, fetch(), checked=True)

    def register_scan(self, place: ScanPlace, data: bytes, *, checked: bool = False) -> bool:
        """Create subject, session, scan and upload the file, unless this hash is there."""
        c, p = self.client, place
        if not checked and self.is_registered(place):
            return False
        name, body = scan_file(p, data)
        c.put_subject(p.project, p.subject)
        c.put_session(p.project, p.subject, p.session)
        c.put_scan(
            p.project,
            p.subject,
            p.session,
            p.scan,
            scan_type=_scan_type(p),
            extra={"note": f"sha256:{p.scan_hash}"},
        )
        c.put_file(p.project, p.subject, p.session, SCAN_RESOURCE, name, body, scan=p.scan)
        # The manifest goes last: it is what says "registered".
        c.put_file(
            p.project,
            p.subject,
            p.session,
            SCAN_RESOURCE,
            MANIFEST,
            f"{p.scan_hash}  {name}\n".encode(),
            scan=p.scan,
        )
        return True

    def push_results(
        self,
        place: ScanPlace,
        results: list[StoredResult],
        pictures: dict[str, bytes] | None = None,
    ) -> PushReport:
        """Publish one scan's results. ``results`` holds current and archived values;
        ``pictures`` maps measure name -> PNG of its current result."""
        report = PushReport()
        self._push_assessors(place, results, report)
        self._push_files(place, results, pictures or {}, report)
        self._push_archive(place, [r for r in results if not r.current], report)
        return report

    def _push_assessors(
        self, place: ScanPlace, results: list[StoredResult], report: PushReport
    ) -> None:
        c, p = self.client, place
        # One result per assessor label: the current one, else the latest archived one.
        chosen: dict[str, StoredResult] = {}
        for r in sorted(results, key=lambda r: (r.current, r.id or 0)):
            chosen[assessor_label(p.session, p.scan, r.measure, r.version)] = r
        if not chosen:
            return
        held = {
            str(row.get("label")): row for row in c.list_assessors(p.project, p.subject, p.session)
        }
        session_id = ""
        for label, r in sorted(chosen.items()):
            qc = scan_qc(p.scan, r)
            if label in held:
                if str(held[label].get("xsiType", XSI_TYPE)) != XSI_TYPE:
                    raise QmroctError(
                        f"XNAT assessor {label} of {p.session} is a {held[label].get('xsiType')},"
                        f" not an {XSI_TYPE}; qmroct leaves it alone"
                    )
                item = c.get_assessor(p.project, p.subject, p.session, label)
                if qc_from_item(item) == [qc]:
                    report.assessors_unchanged += 1
                    continue
            session_id = session_id or c.session_id(p.project, p.subject, p.session)
            doc = assessor_xml(
                label=label,
                project=p.project,
                session_id=session_id,
                qc=qc,
                date=r.ended_at.date().isoformat(),
            )
            c.put_assessor(p.project, p.subject, p.session, label, doc)
            report.assessors_written.append(label)

    def _push_files(
        self,
        place: ScanPlace,
        results: list[StoredResult],
        pictures: dict[str, bytes],
        report: PushReport,
    ) -> None:
        c, p = self.client, place
        current = [r for r in results if r.current]
        files: dict[str, bytes] = {f"{m}.png": png for m, png in pictures.items()}
        files["report.html"] = scan_report(p.scan, p.scan_hash, results).encode()
        payload = {
            "scan": p.model_dump(),
            "oscar_ib": worst_verdicts(current),
            "results": [r.model_dump(mode="json") for r in current],
        }
        files["results.json"] = json.dumps(payload, indent=1, sort_keys=True).encode()
        listed = {
            _path_of(row): row
            for row in c.list_files(p.project, p.subject, p.session, RESULTS_RESOURCE, scan=p.scan)
        }
        for name, data in files.items():
            have = listed.get(name)
            if have and have.get("digest") == md5_hex(data):
                report.files_unchanged += 1
                continue
            c.put_file(
                p.project,
                p.subject,
                p.session,
                RESULTS_RESOURCE,
                name,
                data,
                scan=p.scan,
                content="QC",
            )
            report.files_written.append(f"{RESULTS_RESOURCE}/{name}")

    def _push_archive(
        self, place: ScanPlace, archived: list[StoredResult], report: PushReport
    ) -> None:
        c, p = self.client, place
        if not archived:
            return
        stored = {
            _path_of(row)
            for row in c.list_files(p.project, p.subject, p.session, ARCHIVE_RESOURCE, scan=p.scan)
        }
        for r in archived:
            name = f"{r.measure}/{r.version}/{r.id if r.id is not None else r.job_key}.json"
            if name in stored:
                report.files_unchanged += 1
                continue
            body = json.dumps(r.model_dump(mode="json"), indent=1, sort_keys=True).encode()
            dup = c.put_file(
                p.project,
                p.subject,
                p.session,
                ARCHIVE_RESOURCE,
                name,
                body,
                scan=p.scan,
                overwrite=False,
                content="QC_ARCHIVE",
            )
            if dup:
                report.files_unchanged += 1  # XNAT kept what it had: archived once, never replaced
            else:
                report.files_written.append(f"{ARCHIVE_RESOURCE}/{name}")

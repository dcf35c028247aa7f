"""Put scans and their quality results into XNAT, writing only what changed.

- A stored scan is registered once per content hash: subject, ``xnat:optSessionData`` session,
  ``xnat:optScanData`` scan, and the de-identified file in the scan's ``OCT`` resource with a
  ``SHA256SUMS`` manifest; a scan whose manifest already lists its hash is left alone.
- Results: every current value as a session field (one PUT per session, only when a value
  differs from what XNAT holds), and in resource ``QMROCT`` the pictures
  (``{scan}/{measure}.png``), the per-scan report (``{scan}/report.html``) and the results JSON
  (``{scan}/results.json``), replaced with ``overwrite=true`` only when their digest differs.
  Superseded versions go to ``QMROCT_ARCHIVE/{measure}/{version}/{scan}-{id}.json`` once, never
  replaced.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import unquote

from pydantic import BaseModel, Field

from qmroct.clients.xnat import XnatClient, XnatError, XnatUnavailable, md5_hex
from qmroct.results import StoredResult
from qmroct.xnat.fields import session_fields
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
    fields_written: int = 0
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
        name = f"{p.scan}.{p.ext}"
        c.put_file(p.project, p.subject, p.session, SCAN_RESOURCE, name, data, scan=p.scan)
        # The manifest goes last: it is what says "registered".
        c.put_file(
            p.project,
            p.subject,
            p.session,
            SCAN_RESOURCE,
            MANIFEST,
            f"{p.scan_hash}  {name}\n".encode(),
            content_type="text/plain",
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
        c, p = self.client, place
        report = PushReport()
        wanted = session_fields(results)
        held = c.get_session_fields(p.project, p.subject, p.session)
        changed = {k: v for k, v in wanted.items() if held.get(k) != v}
        if changed:
            c.set_session_fields(p.project, p.subject, p.session, changed)
            report.fields_written = len(changed)

        current = [r for r in results if r.current]
        files: dict[str, tuple[bytes, str]] = {}
        for measure, png in (pictures or {}).items():
            files[f"{p.scan}/{measure}.png"] = (png, "image/png")
        files[f"{p.scan}/report.html"] = (
            scan_report(p.scan, p.scan_hash, results).encode(),
            "text/html",
        )
        payload = {
            "scan": p.model_dump(),
            "results": [r.model_dump(mode="json") for r in current],
        }
        files[f"{p.scan}/results.json"] = (
            json.dumps(payload, indent=1, sort_keys=True).encode(),
            "application/octet-stream",
        )
        listed = {
            _path_of(row): row
            for row in c.list_files(p.project, p.subject, p.session, RESULTS_RESOURCE)
        }
        for name, (data, ctype) in files.items():
            have = listed.get(name)
            if have and have.get("digest") == md5_hex(data):
                report.files_unchanged += 1
                continue
            c.put_file(
                p.project, p.subject, p.session, RESULTS_RESOURCE, name, data, content_type=ctype
            )
            report.files_written.append(f"{RESULTS_RESOURCE}/{name}")

        archived = [r for r in results if not r.current]
        if archived:
            stored = {
                _path_of(row)
                for row in c.list_files(p.project, p.subject, p.session, ARCHIVE_RESOURCE)
            }
            for r in archived:
                name = f"{r.measure}/{r.version}/{p.scan}-{r.id if r.id is not None else r.job_key}.json"
                if name in stored:
                    report.files_unchanged += 1
                    continue
                body = json.dumps(r.model_dump(mode="json"), indent=1, sort_keys=True).encode()
                dup = c.put_file(
                    p.project, p.subject, p.session, ARCHIVE_RESOURCE, name, body, overwrite=False
                )
                if not dup:
                    report.files_written.append(f"{ARCHIVE_RESOURCE}/{name}")
        return report

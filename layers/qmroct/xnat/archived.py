"""Sessions archived in XNAT -> the ingest bucket -> the ``image-stored`` trigger.

XNAT's Event Service has no webhook action, so a tiny Container Service command runs this
module when an ``xnat:optSessionData`` session is archived (see infra/xnat). The session is
mounted at ``/input`` (``SCANS/<id>/<RESOURCE>/<files>``). Every OCT file found is de-identified
like any gateway upload and stored at ``{project}/{subject}/{session}/{scan}.{ext}`` with
XNAT's own labels, so the results come back to the same session. MinIO's webhook then fires
``image-stored``; with ``--trigger-url`` (a store without webhooks) this module fires it
itself with the body MinIO would have sent. Scans that qmroct registered in XNAT itself (they
carry its ``OCT/SHA256SUMS`` manifest) are skipped: creating their session fired the event.

    python -m qmroct.xnat.archived /input --project P --subject S --session E
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

from qmroct.errors import QmroctError, ScanError
from qmroct.events import object_created, render_body
from qmroct.gateway.deid import deidentify, sniff
from qmroct.gateway.models import DeidRefused, Identity, UploadOutcome
from qmroct.gateway.upload import Uploader
from qmroct.xnat.sync import MANIFEST, SCAN_RESOURCE

# Files XNAT keeps beside the data, never scans.
_SKIP = {"SHA256SUMS"}
# The manifest xnat-callback writes next to every scan it registers.
QMROCT_MANIFEST = Path(SCAN_RESOURCE) / MANIFEST


def _oct_files(scan_dir: Path) -> list[Path]:
    found = []
    for f in sorted(p for p in scan_dir.rglob("*") if p.is_file()):
        if f.name in _SKIP or f.suffix.lower() == ".xml":
            continue
        with f.open("rb") as fh:
            head = fh.read(132)
        try:
            sniff(head, f.name)
        except ScanError:
            continue
        found.append(f)
    return found


def stage_session(
    root: str | Path, *, subject: str, session: str, uploader: Uploader
) -> list[UploadOutcome]:
    """De-identify and store every OCT file of a mounted XNAT session under XNAT's labels."""
    scans = Path(root) / "SCANS"
    if not scans.is_dir():
        raise QmroctError(f"{root}: no SCANS folder (is the session mounted at /input?)")
    outcomes: list[UploadOutcome] = []
    for scan_dir in sorted(p for p in scans.iterdir() if p.is_dir()):
        if (scan_dir / QMROCT_MANIFEST).is_file():
            # qmroct put this scan into XNAT itself (xnat-callback registers a scan with this
            # manifest), and creating its session fired this very event: it is already in the
            # ingest bucket, and staging it again would start a loop.
            outcomes.append(
                UploadOutcome(
                    source=str(scan_dir),
                    status="duplicate",
                    reason="registered in XNAT by qmroct; not staged again",
                )
            )
            continue
        files = _oct_files(scan_dir)
        for i, path in enumerate(files, start=1):
            label = scan_dir.name if len(files) == 1 else f"{scan_dir.name}-{i}"
            try:
                result = deidentify(path.read_bytes(), uploader.pseudonyms, name=str(path))
            except DeidRefused as exc:
                outcomes.append(
                    UploadOutcome(source=str(path), status="flagged", reason=exc.reason)
                )
                continue
            except ScanError as exc:
                outcomes.append(
                    UploadOutcome(source=str(path), status="rejected", reason=exc.reason)
                )
                continue
            result = result.model_copy(
                update={"identity": Identity(subject=subject, session=session, scan=label)}
            )
            outcomes.append(uploader.upload_deidentified(result, source=str(path)))
    return outcomes


def fire_image_stored(
    trigger_url: str, auth: tuple[str, str], bucket: str, outcome: UploadOutcome, *, store: object
) -> None:
    """POST the MinIO ``s3:ObjectCreated:Put`` body for one stored object to the trigger."""
    info = store.stat(bucket, outcome.key)  # type: ignore[attr-defined]
    log = object_created(
        event_name="s3:ObjectCreated:Put",
        bucket=bucket,
        key=outcome.key or "",
        size=info.size,
        etag=info.etag,
        content_type=info.content_type,
        user_metadata={f"X-Amz-Meta-{k.title()}": v for k, v in info.metadata.items()},
        version_id=info.version_id,
        at=datetime.now(UTC),
        sequencer=uuid.uuid4().hex[:16].upper(),
        request_id=uuid.uuid4().hex[:16].upper(),
        principal="xnat",
        source_host="xnat",
        user_agent="qmroct-xnat-command",
    )
    resp = requests.post(
        trigger_url,
        data=render_body(log),
        auth=auth,
        headers={"Content-Type": "application/json"},
        timeout=(5, 60),
    )
    if resp.status_code not in (200, 202, 204):
        raise QmroctError(f"trigger {trigger_url} answered {resp.status_code}: {resp.text[:200]}")


def main(argv: list[str] | None = None) -> int:
    from qmroct.config import load_settings
    from qmroct.gateway.pseudonyms import PseudonymStore
    from qmroct.gateway.state import GatewayState
    from qmroct.objectstore import store_from_settings

    ap = argparse.ArgumentParser(prog="python -m qmroct.xnat.archived", description=__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("--project", required=True)
    ap.add_argument("--subject", required=True)
    ap.add_argument("--session", required=True)
    ap.add_argument("--trigger-url", default="", help="fire image-stored directly (no webhook)")
    ap.add_argument("--trigger-auth", default="", help="uuid:key of the OpenWhisk namespace")
    args = ap.parse_args(argv)
    s = load_settings()
    store = store_from_settings(s, "gateway")
    home = s.home / "gateway"
    uploader = Uploader(
        store,
        PseudonymStore(home / "pseudonyms.sqlite3"),
        GatewayState(home / "state.sqlite3"),
        project=args.project,
        bucket=s.ingest_bucket,
        compress="auto" if s.store == "minio" else "none",
    )
    outcomes = stage_session(
        args.root, subject=args.subject, session=args.session, uploader=uploader
    )
    for o in outcomes:
        print(f"{o.status:9} {o.source} -> {o.key or '-'} {o.reason or ''}")
        if args.trigger_url and o.status == "uploaded":
            user, _, key = args.trigger_auth.partition(":")
            fire_image_stored(args.trigger_url, (user, key), s.ingest_bucket, o, store=store)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""An archived XNAT session staged into the ingest bucket, and the image-stored trigger fired."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qmroct.events import parse_body
from qmroct.gateway.pseudonyms import PseudonymStore
from qmroct.gateway.state import GatewayState
from qmroct.gateway.upload import Uploader
from qmroct.xnat.archived import fire_image_stored, stage_session


@pytest.fixture
def up(store, tmp_path: Path) -> Uploader:  # noqa: ANN001
    """The gateway's uploader as the XNAT command builds it, for project GLAUCOMA."""
    return Uploader(
        store,
        PseudonymStore(tmp_path / "gw/p.sqlite3"),
        GatewayState(tmp_path / "gw/s.sqlite3"),
        project="GLAUCOMA",
        compress="none",
    )


def test_stage_archived_session_and_fire(store, up, samples_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    root = tmp_path / "input"
    (root / "SCANS" / "1" / "OCT").mkdir(parents=True)
    (root / "SCANS" / "2" / "SNAPSHOTS").mkdir(parents=True)
    shutil.copy(samples_dir / "heidelberg_vol/Willis_B_716_0.vol", root / "SCANS/1/OCT/raw.vol")
    (root / "SCANS/1/OCT/scan_catalog.xml").write_text("<cat:Catalog/>")
    (root / "SCANS/2/SNAPSHOTS/thumb.gif").write_bytes(b"GIF89a" + b"\0" * 200)
    (out,) = stage_session(root, subject="XNAT_S0001", session="OCT_2024_01", uploader=up)
    assert out.status == "uploaded" and out.key == "GLAUCOMA/XNAT_S0001/OCT_2024_01/1.vol"
    assert b"01234" not in store.get("oct-ingest", out.key)[:2048]  # de-identified as well

    bodies: list[bytes] = []

    class Trigger(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trigger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = (
            f"http://127.0.0.1:{server.server_address[1]}/api/v1/namespaces/_/triggers/image-stored"
        )
        fire_image_stored(url, ("uuid", "key"), "oct-ingest", out, store=store)
    finally:
        server.shutdown()
    (obj,) = parse_body(bodies[0]).objects()
    assert (obj.bucket, obj.key, obj.event_name) == ("oct-ingest", out.key, "s3:ObjectCreated:Put")
    assert obj.size == out.stored_size


def test_scans_qmroct_registered_itself_are_not_staged_again(
    store,
    samples_dir: Path,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    """Creating a session in XNAT fires SessionEvent CREATED for qmroct's own pushes too; the
    command must not feed qmroct's scans back in (a loop)."""
    root = tmp_path / "input"
    (root / "SCANS" / "OD" / "OCT").mkdir(parents=True)
    shutil.copy(samples_dir / "heidelberg_vol/Willis_B_716_0.vol", root / "SCANS/OD/OCT/OD.vol")
    (root / "SCANS/OD/OCT/SHA256SUMS").write_text("0" * 64 + "  OD.vol\n")
    (out,) = stage_session(root, subject="S", session="E", uploader=up)
    assert out.status == "duplicate" and "qmroct" in (out.reason or "")
    assert list(store.list("oct-ingest")) == []

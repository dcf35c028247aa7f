"""Random identifiers planted in random places never leave the gateway.

Each example plants fresh random strings in a random choice of places: DICOM elements (public
and private, known and unknown, nested at any depth, file meta, preamble), .vol header fields,
.e2e patient and diagnosis chunks, and the file's own name. The file goes through the whole
gateway path into the local store; then every byte the store holds (objects, metadata, event
queue), every object key and metadata value, every log line and every row of the gateway's
state database is searched for each string in every encoding (:func:`gateway_fixtures.surviving`). The pseudonym table is the one
place meant to hold originals; it is checked to be private to its owner instead.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from gateway_fixtures import DICOM_PLACES, E2E_PLACES, plant_dicom, plant_e2e, surviving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qmroct.gateway.upload import Uploader

VOL_PLACES = ("vol_patient_id", "vol_visit_id")
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# 10 random characters from 32: a chance collision with bytes already in a file is negligible.
phi = st.text(ALPHABET, min_size=10, max_size=10).map(lambda s: f"Q{s}")


def _vol(planted: dict[str, str]) -> bytes:
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    scan = make_phantom("line", seed=3)[0]
    return write_vol(
        scan,
        patient_id=planted.get("vol_patient_id", "PAT-0"),
        visit_id=planted.get("vol_visit_id", "VIS-0"),
    )


def _everything_stored(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _rows(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(row) for t in tables for row in con.execute(f"SELECT * FROM {t}"))
    finally:
        con.close()


def test_planted_identifiers_never_leave_the_gateway(
    local_store,  # noqa: ANN001
    gateway_home,  # noqa: ANN001
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pseudonyms, state = gateway_home
    uploader = Uploader(
        local_store, pseudonyms, state, project="fuzz", bucket="oct-ingest", sleep=lambda s: None
    )
    store_root = tmp_path / "store"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    caplog.set_level(logging.DEBUG)

    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        kind=st.sampled_from(["dicom", "vol", "e2e"]),
        dicom_places=st.sets(st.sampled_from(DICOM_PLACES), min_size=1, max_size=8),
        vol_places=st.sets(st.sampled_from(VOL_PLACES), min_size=1),
        e2e_places=st.sets(st.sampled_from(E2E_PLACES), min_size=1),
        values=st.lists(phi, min_size=12, max_size=12, unique=True),
        name_phi=phi,
    )
    def run(
        kind: str,
        dicom_places: set[str],
        vol_places: set[str],
        e2e_places: set[str],
        values: list[str],
        name_phi: str,
    ) -> None:
        chosen = {"dicom": dicom_places, "vol": vol_places, "e2e": e2e_places}[kind]
        planted = dict(zip(sorted(chosen), values, strict=False))
        build = {"dicom": plant_dicom, "vol": _vol, "e2e": plant_e2e}[kind]
        data = build(planted)
        assert surviving(data, planted) == list(planted)  # each place really holds its value
        path = inbox / f"{name_phi} eye scan.{ {'dicom': 'dcm'}.get(kind, kind) }"
        path.write_bytes(data)
        caplog.clear()

        outcome = uploader.upload_file(path)
        assert outcome.status == "uploaded", outcome

        everything = {**planted, "file name": name_phi}
        assert surviving(_everything_stored(store_root), everything) == []
        objects = list(local_store.list("oct-ingest"))
        listed = "\n".join(f"{o.key} {o.metadata}" for o in objects)
        assert surviving(listed.encode(), everything) == []
        assert surviving(str(outcome.key).encode(), everything) == []
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert surviving(logged.encode(), everything) == []
        assert surviving(_rows(state.path).encode(), everything) == []

    run()
    # The table that maps pseudonyms back to patients, and its key, are readable by the owner only.
    for secret in (pseudonyms.path, pseudonyms.key_path):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret

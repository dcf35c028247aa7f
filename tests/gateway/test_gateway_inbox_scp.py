"""The inbox watcher (complete files only, each once) and the DICOM C-STORE SCP."""

from __future__ import annotations

import fcntl
import io
import shutil
from pathlib import Path

import pydicom
from gateway_fixtures import identified_dicom
from qmroct.gateway.dicom_scp import STATUS_CANNOT_UNDERSTAND, StoreSCP
from qmroct.gateway.inbox import InboxWatcher
from qmroct.gateway.upload import Uploader

VOL = "heidelberg_vol/Willis_B_716_0.vol"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watcher(store, home, inbox: Path, clock: Clock) -> InboxWatcher:  # noqa: ANN001
    pseudonyms, state = home
    up = Uploader(store, pseudonyms, state, project="p1", bucket=store.test_bucket)
    return InboxWatcher(inbox, up, state, settle_s=2.0, clock=clock)


def test_partial_files_wait_and_complete_files_go_once(
    minio_store,
    gateway_home,
    samples_dir: Path,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = Clock()
    watcher = _watcher(minio_store, gateway_home, inbox, clock)
    full = (samples_dir / VOL).read_bytes()
    growing = inbox / "growing.vol"
    growing.write_bytes(full[: len(full) // 2])
    partial = inbox / "copying.vol.part"
    partial.write_bytes(full)
    locked = inbox / "locked.vol"
    locked.write_bytes((samples_dir / "heidelberg_vol/Willis_B_716_2.vol").read_bytes())
    holder = locked.open("rb")
    fcntl.flock(holder, fcntl.LOCK_EX)

    assert watcher.poll() == []  # first sight: nothing is settled yet
    with growing.open("ab") as fh:  # the copy goes on
        fh.write(full[len(full) // 2 :])
    clock.now = 5
    assert watcher.poll() == []  # it grew: wait again; the locked one is held
    clock.now = 10
    done = watcher.poll()
    assert [Path(o.source).name for o in done] == ["growing.vol"]
    assert done[0].status == "uploaded"

    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    partial.rename(inbox / "copied.vol")
    clock.now = 11
    released = watcher.poll()  # settled long ago and now unlocked; the renamed one is new
    assert [(Path(o.source).name, o.status) for o in released] == [("locked.vol", "uploaded")]
    clock.now = 20
    (copied,) = watcher.poll()
    assert (Path(copied.source).name, copied.status) == ("copied.vol", "duplicate")
    clock.now = 40
    assert watcher.poll() == []  # each file once
    assert all(p.exists() for p in (growing, locked, inbox / "copied.vol"))


def test_inbox_rejects_non_oct_once(minio_store, gateway_home, tmp_path: Path) -> None:  # noqa: ANN001
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "letter.docx").write_bytes(b"PK\x03\x04" + b"\0" * 500)
    clock = Clock()
    watcher = _watcher(minio_store, gateway_home, inbox, clock)
    watcher.poll()
    clock.now = 3
    (outcome,) = watcher.poll()
    assert outcome.status == "rejected" and "not an OCT file" in outcome.reason
    clock.now = 9
    assert watcher.poll() == []


def test_dicom_c_store(minio_store, gateway_home, tmp_path: Path) -> None:  # noqa: ANN001
    from pynetdicom import AE
    from pynetdicom.sop_class import OphthalmicTomographyImageStorage

    pseudonyms, state = gateway_home
    up = Uploader(minio_store, pseudonyms, state, project="p1", bucket=minio_store.test_bucket)
    scp = StoreSCP(up, tmp_path / "spool")
    scp.start("127.0.0.1", 0)
    try:
        scu = AE(ae_title="OCT_DEVICE")
        scu.add_requested_context(OphthalmicTomographyImageStorage, "1.2.840.10008.1.2.1")
        assoc = scu.associate("127.0.0.1", scp.port, ae_title="QMROCT")
        assert assoc.is_established
        good = pydicom.dcmread(io.BytesIO(identified_dicom()))
        burned = pydicom.dcmread(io.BytesIO(identified_dicom(burned_in="YES")))
        burned.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
        ok = assoc.send_c_store(good)
        refused = assoc.send_c_store(burned)
        assoc.release()
    finally:
        scp.stop()
    assert ok.Status == 0x0000
    assert refused.Status == STATUS_CANNOT_UNDERSTAND and "flagged" in refused.ErrorComment
    (obj,) = list(minio_store.list(minio_store.test_bucket))
    assert obj.key.startswith("p1/sub-") and obj.key.endswith(".dcm")
    assert list((tmp_path / "spool").iterdir()) == []


def test_hostile_names_in_inbox(
    minio_store, gateway_home, samples_dir: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    inbox = tmp_path / "in box $(x)"
    (inbox / "sub;dir`id`").mkdir(parents=True)
    shutil.copy(samples_dir / VOL, inbox / "sub;dir`id`" / "--rf *.vol")
    clock = Clock()
    watcher = _watcher(minio_store, gateway_home, inbox, clock)
    watcher.poll()
    clock.now = 5
    (outcome,) = watcher.poll()
    assert outcome.status == "uploaded", outcome.reason

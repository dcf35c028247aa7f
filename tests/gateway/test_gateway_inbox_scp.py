"""The inbox watcher (complete files only, each once) and the DICOM C-STORE SCP."""

from __future__ import annotations

import fcntl
import io
import shutil
from pathlib import Path

import pydicom
import pytest
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
    scp = StoreSCP(up, tmp_path / "spool", calling_aes=["OCT_DEVICE"])
    scp.start(port=0)
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


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qmroct-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_dicom_scp_doors_closed_by_default(local_store, gateway_home, tmp_path: Path) -> None:  # noqa: ANN001
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import OphthalmicTomographyImageStorage
    from qmroct.errors import ConfigError
    from qmroct.gateway.dicom_scp import tls_context

    pseudonyms, state = gateway_home
    up = Uploader(local_store, pseudonyms, state, project="p1", bucket=local_store.test_bucket)
    with pytest.raises(ConfigError, match="no calling AE"):
        StoreSCP(up, tmp_path / "spool", calling_aes=[])
    cert, key = _self_signed(tmp_path)
    scp = StoreSCP(up, tmp_path / "spool", calling_aes=["OCT_DEVICE"])
    server = scp.start(port=0, ssl_context=tls_context(cert, key, ca=cert))
    try:
        assert server.server_address[0] == "127.0.0.1"  # loopback unless told otherwise

        def associate(calling: str, called: str, tls: bool = True, client_cert: bool = True):  # noqa: ANN202
            scu = AE(ae_title=calling)
            scu.acse_timeout = scu.network_timeout = 5
            scu.add_requested_context(OphthalmicTomographyImageStorage, "1.2.840.10008.1.2.1")
            ctx = None
            if tls:
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
                if client_cert:
                    ctx.load_cert_chain(str(cert), str(key))
            args = (ctx, "127.0.0.1") if ctx else None
            assoc = scu.associate("127.0.0.1", scp.port, ae_title=called, tls_args=args)
            established = assoc.is_established
            if established:
                assoc.release()
            return established

        assert associate("OCT_DEVICE", "QMROCT")
        assert not associate("OCT_DEVICE", "SOMEONE_ELSE")  # wrong called AE
        assert not associate("INTRUDER", "QMROCT")  # calling AE not configured
        assert not associate("OCT_DEVICE", "QMROCT", tls=False)  # plain TCP to a TLS port
        assert not associate("OCT_DEVICE", "QMROCT", client_cert=False)  # no client certificate
    finally:
        scp.stop()

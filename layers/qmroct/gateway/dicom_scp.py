"""A DICOM C-STORE SCP for the clinic's devices: ophthalmic tomography and photography.

Every received instance is written to a spool folder first (so nothing is lost if the store is
unreachable), then de-identified and uploaded. The answer tells the device what happened:
``0x0000`` stored (or already stored), ``0xA700`` out of resources (upload failed; the spooled
copy waits and the device may send again), ``0xC000`` refused (not de-identifiable: burned-in
annotation, or not an image we read), with the reason in the Error Comment.

Closed by default: it listens on 127.0.0.1 unless given another address, refuses an
association whose called AE title is not its own, accepts only the calling AE titles it is
configured with (none configured: it does not start), and speaks TLS when given a server
context (:func:`tls_context`; with a CA, devices must present a certificate it signed).
"""

from __future__ import annotations

import io
import logging
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    OphthalmicOpticalCoherenceTomographyEnFaceImageStorage,
    OphthalmicPhotography8BitImageStorage,
    OphthalmicPhotography16BitImageStorage,
    OphthalmicTomographyImageStorage,
    OphthlamicOpticalCoherenceTomographyBscanVolumeAnalysisStorage,
    Verification,
    WideFieldOphthalmicPhotography3DCoordinatesImageStorage,
    WideFieldOphthalmicPhotographyStereographicProjectionImageStorage,
)

from qmroct.errors import ConfigError
from qmroct.gateway.upload import Uploader
from qmroct.secretfiles import private_dir, write_private

log = logging.getLogger(__name__)

STORAGE_CLASSES = (
    OphthalmicTomographyImageStorage,
    OphthalmicPhotography8BitImageStorage,
    OphthalmicPhotography16BitImageStorage,
    OphthalmicOpticalCoherenceTomographyEnFaceImageStorage,
    OphthlamicOpticalCoherenceTomographyBscanVolumeAnalysisStorage,
    WideFieldOphthalmicPhotographyStereographicProjectionImageStorage,
    WideFieldOphthalmicPhotography3DCoordinatesImageStorage,
)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


class StoreSCP:
    """Receive, spool, de-identify and upload. ``start`` returns the running server."""

    def __init__(
        self,
        uploader: Uploader,
        spool: str | Path,
        *,
        calling_aes: Iterable[str],
        ae_title: str = "QMROCT",
    ) -> None:
        allowed = sorted({a.strip() for a in calling_aes if a.strip()})
        if not allowed:
            raise ConfigError(
                "no calling AE title configured: the C-STORE SCP accepts only the devices it is"
                " told about (--calling-ae, QMROCT_GATEWAY_CALLING_AES)"
            )
        self.uploader = uploader
        self.spool = Path(spool)
        private_dir(self.spool)  # what waits here is not yet de-identified
        self.ae = AE(ae_title=ae_title)
        # PS3.8 9.3.4: A-ASSOCIATE-RJ with reason 7 (called AE title not recognised) and 3
        # (calling AE title not recognised); pynetdicom answers both from these settings.
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = allowed
        for sop in STORAGE_CLASSES:
            self.ae.add_supported_context(sop)
        self.ae.add_supported_context(Verification)
        self._server: Any = None

    def handle_store(self, event: Any) -> tuple[int, ...] | Dataset:
        ds: Dataset = event.dataset
        ds.file_meta = event.file_meta
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
        # The spool name is the instance UID hashed by the uploader's pseudonyms: never a
        # value from the wire as a path.
        spooled = (
            self.spool / f"{self.uploader.pseudonyms.pseudonym('uid', str(ds.SOPInstanceUID))}.dcm"
        )
        write_private(spooled, data)
        outcome = self.uploader.upload_bytes(data, source=f"c-store:{spooled.name}")
        status = Dataset()
        if outcome.status in ("uploaded", "duplicate"):
            spooled.unlink()
            status.Status = STATUS_SUCCESS
            return status
        log.warning("C-STORE %s: %s (%s)", spooled.name, outcome.status, outcome.reason)
        if outcome.status == "failed":
            status.Status = STATUS_OUT_OF_RESOURCES
        else:
            spooled.unlink()  # refused content is not kept: the device still holds it
            status.Status = STATUS_CANNOT_UNDERSTAND
        status.ErrorComment = f"{outcome.status}: {outcome.reason or ''}"[:64]
        return status

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 11112,
        *,
        block: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Any:
        handlers = [(evt.EVT_C_STORE, self.handle_store)]
        self._server = self.ae.start_server(
            (host, port), block=block, evt_handlers=handlers, ssl_context=ssl_context
        )
        return self._server

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def tls_context(cert: str | Path, key: str | Path, ca: str | Path | None = None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later); with ``ca``, client certificates are required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if ca is not None:
        ctx.load_verify_locations(str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx

"""A DICOM C-STORE SCP for the clinic's devices: ophthalmic tomography and photography.

Every received instance is written to a spool folder first (so nothing is lost if the store is
unreachable), then de-identified and uploaded. The answer tells the device what happened:
``0x0000`` stored (or already stored), ``0xA700`` out of resources (upload failed; the spooled
copy waits and the device may send again), ``0xC000`` refused (not de-identifiable: burned-in
annotation, or not an image we read), with the reason in the Error Comment.
"""

from __future__ import annotations

import io
import logging
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

    def __init__(self, uploader: Uploader, spool: str | Path, *, ae_title: str = "QMROCT") -> None:
        self.uploader = uploader
        self.spool = Path(spool)
        private_dir(self.spool)  # what waits here is not yet de-identified
        self.ae = AE(ae_title=ae_title)
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

    def start(self, host: str = "0.0.0.0", port: int = 11112, *, block: bool = False) -> Any:
        handlers = [(evt.EVT_C_STORE, self.handle_store)]
        self._server = self.ae.start_server((host, port), block=block, evt_handlers=handlers)
        return self._server

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

"""DICOM Secondary Capture (SOP 1.2.840.10008.5.1.4.1.1.7) for result pictures that XNAT holds."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from highdicom.sc import SCImage
from pydicom.uid import generate_uid

from qmroct.oct.model import ScanMeta


def write_secondary_capture(rgb: np.ndarray, *, source: ScanMeta | None, title: str) -> bytes:
    """Encode an RGB picture (h, w, 3) uint8 as a Secondary Capture instance; return its bytes.

    ``source`` gives the laterality and names the scan the picture was made from (Series
    Description carries ``title``). Patient identity is left empty: pictures travel next to
    de-identified scans, and XNAT files them by session, not by DICOM patient.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"secondary capture needs an (h, w, 3) RGB array, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"secondary capture needs uint8 pixels, got {arr.dtype}")
    laterality = {"OD": "R", "OS": "L"}.get((source.laterality if source else None) or "")
    sc = SCImage(
        pixel_array=np.ascontiguousarray(arr),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=1,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="qmroct",
        patient_orientation=("L", "F"),
        laterality=laterality,
    )
    sc.SeriesDescription = title[:64]
    if source is not None:
        sc.DerivationDescription = f"quality picture of {source.source}"[:1024]
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, sc, enforce_file_format=True)
    return buf.getvalue()

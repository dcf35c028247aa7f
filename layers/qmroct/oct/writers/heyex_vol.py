"""Spectralis .vol writer (HSF-OCT-103 layout) for line, ring and volume scans.

eyepy's HeVolWriter always writes scan pattern 0 and converts intensities through its display
map, so it can express neither circle scans nor our linear floats; this writer lays the bytes out
itself with the same structured dtypes the reader uses. Pixels are written as float32 exactly as
they are (NaN becomes FLT_MAX, the format's no-data value); positions go to the B-scan headers in
mm (for rings: start on the circle, end at the centre); device boundaries ILM, BM and RNFL go to
the B-scan headers; the fundus becomes the uint8 SLO.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from qmroct.oct.model import Scan, ScanPattern
from qmroct.oct.readers.heyex_vol import (
    BSCAN_FIELDS_BYTES,
    BSCAN_HEADER,
    FILE_HEADER,
    NO_DATA,
    SEG_NAMES,
)

PATTERN_CODES = {
    ScanPattern.LINE: 1,
    ScanPattern.RING: 2,
    ScanPattern.VOLUME: 3,
    ScanPattern.RADIAL: 5,
}
_TICKS_EPOCH = datetime(1601, 1, 1)


def write_vol(scan: Scan, *, patient_id: str = "", visit_id: str = "") -> bytes:
    """Encode ``scan`` as a .vol file; linear float32 pixels are kept bit for bit.

    ``patient_id`` and ``visit_id`` fill the header's identification fields (the gateway
    pseudonymises them); phantoms use synthetic ones.
    """
    meta = scan.meta
    n, h, w = scan.shape
    fundus = scan.fundus
    if fundus is None:
        fundus = np.zeros((1, 1), np.float32)
    h_slo, w_slo = fundus.shape
    fs = meta.fundus_spacing_um
    sx_mm = (fs.lateral_um if fs else meta.spacing.lateral_um) / 1000
    sy_mm = (fs.axial_um if fs else meta.spacing.lateral_um) / 1000

    names = [k for k in SEG_NAMES[:3] if k in scan.segmentation]
    num_seg = len(names) and SEG_NAMES.index(names[-1]) + 1
    hdr_size = BSCAN_FIELDS_BYTES + num_seg * w * 4
    hdr_size += (-hdr_size) % 16

    fh = np.zeros(1, FILE_HEADER)[0]
    fh["version"] = b"HSF-OCT-103"
    fh["size_x"], fh["n_bscans"], fh["size_y"] = w, n, h
    fh["scale_x"] = meta.spacing.lateral_um / 1000
    fh["distance"] = (meta.spacing.bscan_um or 0.0) / 1000
    fh["scale_y"] = meta.spacing.axial_um / 1000
    fh["size_x_slo"], fh["size_y_slo"] = w_slo, h_slo
    fh["scale_x_slo"], fh["scale_y_slo"] = sx_mm, sy_mm
    fh["field_size_slo"] = int(meta.extra.get("field_size_slo_deg") or 30)
    fh["scan_position"] = (meta.laterality or "").encode("ascii")
    if meta.acquisition_date:
        dt = datetime.combine(meta.acquisition_date, datetime.min.time())
        fh["exam_time"] = int((dt - _TICKS_EPOCH).total_seconds()) * 10_000_000
    fh["scan_pattern"] = PATTERN_CODES.get(meta.pattern, 0)
    fh["bscan_hdr_size"] = hdr_size
    fh["id"] = b"qmroct"
    fh["patient_id"] = patient_id.encode("ascii")[:23]
    fh["visit_id"] = visit_id.encode("ascii")[:23]

    record = np.dtype([("hdr", BSCAN_HEADER), ("rest", f"V{hdr_size - BSCAN_FIELDS_BYTES}"),
                       ("pixels", "<f4", (h, w))])  # fmt: skip
    recs = np.zeros(n, record)
    bh = recs["hdr"]
    bh["version"] = b"HSF-BS-103"
    bh["bscan_hdr_size"] = hdr_size
    bh["num_seg"] = num_seg
    bh["seg_offset"] = BSCAN_FIELDS_BYTES
    q = meta.device_quality or [None] * n
    bh["quality"] = [NO_DATA if v is None else v for v in q]
    if meta.bscan_positions:
        for i, p in enumerate(meta.bscan_positions[:n]):
            bh[i]["start_x"], bh[i]["start_y"] = p.start.x * sx_mm, p.start.y * sy_mm
            bh[i]["end_x"], bh[i]["end_y"] = p.end.x * sx_mm, p.end.y * sy_mm
    pixels = np.where(np.isnan(scan.bscans), NO_DATA, scan.bscans).astype("<f4")
    recs["pixels"] = pixels
    body = bytearray(recs.tobytes())
    if num_seg:
        seg = np.full((n, num_seg, w), NO_DATA, "<f4")
        for name in names:
            arr = np.asarray(scan.segmentation[name], np.float32)
            seg[:, SEG_NAMES.index(name), :] = np.where(np.isnan(arr), NO_DATA, arr)
        view = np.frombuffer(body, np.uint8).reshape(n, record.itemsize)
        view[:, BSCAN_FIELDS_BYTES : BSCAN_FIELDS_BYTES + seg[0].nbytes] = seg.view(
            np.uint8
        ).reshape(n, -1)
    slo = np.clip(np.nan_to_num(fundus), 0, 255).astype(np.uint8)
    return fh.tobytes() + slo.tobytes() + bytes(body)

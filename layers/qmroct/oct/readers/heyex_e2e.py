"""Heidelberg E2E (Heyex export): B-scans as 16-bit custom floats in tagged data chunks.

The file is a header ("CMDb"), a main directory ("MDbMDir") and data chunks ("MDbData"), each a
60-byte chunk header and its payload. Exports (and the cut-down files used in tests) do not
always keep the directory consistent with the chunks, so this reader walks the chunks themselves:
it looks for each chunk magic in turn, validates the chunk header, and jumps over every payload it
has read. No directory offset is trusted.

Chunk types used: 0x40000000 image (index 1 = OCT B-scan, 0 = fundus), 10004 B-scan metadata
(pixel size, positions), 3 laterality, 10019 device boundaries. OCT pixels are the unsigned
"ufloat16" of Heyex (6-bit exponent, 10-bit mantissa): value = (1 + m/1024) * 2**(e - 63), which
is the linear reflectivity of a .vol file.

Without a metadata chunk the pixel size is unknown: the reader then assumes Spectralis'
3.87 um axial and oct-converter's defaults of 10 um lateral and 50 um between B-scans, and says
so in ``meta.extra["spacing_assumed"]``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from qmroct.errors import CorruptScan, UnsupportedFormat
from qmroct.oct.model import IntensityScale, Scan, ScanMeta, ScanPattern, Spacing
from qmroct.oct.readers.source import Source, check_dims

MAGIC = b"CMDb"
CHUNK_MAGIC = b"MDbData\x00"
CHUNK_HEADER = np.dtype(
    [
        ("magic", "S12"),
        ("u1", "<u4"),
        ("u2", "<u4"),
        ("pos", "<u4"),
        ("size", "<u4"),
        ("u3", "<u4"),
        ("patient", "<i4"),
        ("study", "<i4"),
        ("series", "<i4"),
        ("slice", "<i4"),
        ("ind", "<u2"),
        ("u4", "<u2"),
        ("type", "<u4"),
        ("u5", "<u4"),
    ]
)
IMAGE_HEADER = np.dtype(
    [("size", "<u4"), ("type", "<u4"), ("n", "<u4"), ("height", "<u4"), ("width", "<u4")]
)
BSCAN_META = np.dtype(
    [
        ("u1", "<u4"),
        ("size_y", "<u4"),
        ("size_x", "<u4"),
        ("x1", "<f4"),
        ("y1", "<f4"),
        ("x2", "<f4"),
        ("y2", "<f4"),
        ("zero1", "<u4"),
        ("u2", "<f4"),
        ("scale_y", "<f4"),
    ]
)
TYPE_IMAGE, TYPE_BSCAN_META, TYPE_LATERALITY = 0x40000000, 10004, 3
ASSUMED_UM = {"lateral": 10.0, "axial": 3.87, "bscan": 50.0}


def ufloat16_to_linear(raw: np.ndarray) -> np.ndarray:
    """Decode Heyex's unsigned 16-bit float (6-bit exponent, 10-bit mantissa) to float32."""
    raw = raw.astype(np.uint32)
    mantissa = (raw & 0x3FF).astype(np.float32) / 1024.0 + 1.0
    exponent = (raw >> 10).astype(np.int32) - 63
    # Raw 0 would decode to 2**-63; it means "nothing measured", i.e. zero reflectivity.
    return np.where(raw == 0, 0.0, np.ldexp(mantissa, exponent)).astype(np.float32)


def read_e2e(src: Source) -> Scan:
    data = src.data
    if not data.startswith(MAGIC):
        raise UnsupportedFormat(src.name, data[:16], "not a Heidelberg E2E file (no CMDb)")
    series: dict[tuple[int, int, int], dict[int, np.ndarray]] = defaultdict(dict)
    scale_y: float | None = None
    laterality: str | None = None
    decoded = 0
    pos = data.find(CHUNK_MAGIC)
    while pos >= 0 and pos + CHUNK_HEADER.itemsize <= len(data):
        chunk = np.frombuffer(data, CHUNK_HEADER, count=1, offset=pos)[0]
        body = pos + CHUNK_HEADER.itemsize
        nxt = body
        kind = int(chunk["type"])
        if kind == TYPE_IMAGE and int(chunk["ind"]) == 1 and body + 20 <= len(data):
            img = np.frombuffer(data, IMAGE_HEADER, count=1, offset=body)[0]
            h, w = int(img["height"]), int(img["width"])
            check_dims(src.name, height=h, width=w)
            decoded += h * w * 4
            src.check_decoded(decoded, "the B-scans")
            src.need(body + 20 + h * w * 2, f"B-scan {int(chunk['slice'])} of {h}x{w}")
            raw = np.frombuffer(data, "<u2", h * w, body + 20).reshape(h, w)
            key = (int(chunk["patient"]), int(chunk["study"]), int(chunk["series"]))
            series[key][int(chunk["slice"]) // 2] = ufloat16_to_linear(raw)
            nxt = body + 20 + h * w * 2
        elif kind == TYPE_BSCAN_META and body + BSCAN_META.itemsize <= len(data):
            m = np.frombuffer(data, BSCAN_META, count=1, offset=body)[0]
            if scale_y is None and 0 < float(m["scale_y"]) < 1:
                scale_y = float(m["scale_y"])
        elif kind == TYPE_LATERALITY and body + 15 <= len(data):
            code = data[body + 14 : body + 15]
            laterality = {b"R": "OD", b"L": "OS"}.get(code, laterality)
        pos = data.find(CHUNK_MAGIC, max(nxt, pos + 1))
    if not series:
        raise CorruptScan(src.name, "no OCT B-scan found in the E2E chunks")
    # One scan per file: take the series with the most B-scans.
    key, slices = max(series.items(), key=lambda kv: len(kv[1]))
    shapes = {b.shape for b in slices.values()}
    if len(shapes) != 1:
        raise CorruptScan(src.name, f"B-scans of one series differ in size: {sorted(shapes)}")
    bscans = np.stack([slices[i] for i in sorted(slices)])
    n, h, w = bscans.shape
    assumed = scale_y is None
    spacing = Spacing(
        lateral_um=ASSUMED_UM["lateral"],
        axial_um=scale_y * 1000 if scale_y else ASSUMED_UM["axial"],
        bscan_um=ASSUMED_UM["bscan"] if n > 1 else None,
    )
    meta = ScanMeta(
        source=src.name,
        format="heyex_e2e",
        pattern=ScanPattern.VOLUME if n > 1 else ScanPattern.LINE,
        scale=IntensityScale.LINEAR,
        spacing=spacing,
        n_bscans=n,
        height=h,
        width=w,
        laterality=laterality,
        device="Heidelberg Spectralis",
        extra={
            "spacing_assumed": "lateral,axial,bscan" if assumed else "lateral,bscan",
            "series": "/".join(str(k) for k in key),
            "n_series": len(series),
        },
    )
    return Scan(meta=meta, bscans=bscans)

"""Topcon .fda (3D OCT-1000/2000, JPEG B-scans) and .fds (Maestro/Triton, raw uint16).

Both are a header ("FOCT" + "FDA"/"FDS") and named chunks (``@IMG_JPEG``, ``@IMG_SCAN_03``,
``@PARAM_SCAN_04``, ``@FAST_Q2_INFO``, ...). Pixels, spacing, device boundaries and the fundus are
decoded by oct-converter (through :mod:`.octconverter_compat` on NumPy >= 2.3). Before it is
called, this module walks the chunk list itself with bounds checks, so a truncated or hostile
file gets a typed error instead of an IndexError deep inside the parser, and the pixel count the
header declares is checked against the size limit before anything is decoded.

Intensities are the device's display values: uint8 for FDA (JPEG), uint16 for FDS.
``FAST_Q2_INFO`` holds six undocumented quality statistics; all six are kept in ``meta.extra``
(``topcon_fast_q2_0`` .. ``_5``) and the second, which lies on the 0..100 scale of Topcon's
image-quality index, is the per-B-scan ``device_quality``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import warnings

import numpy as np

from qmroct.errors import CorruptScan, ScanTooLarge, UnsupportedFormat
from qmroct.oct.model import IntensityScale, Scan, ScanMeta, ScanPattern, Spacing
from qmroct.oct.readers import octconverter_compat
from qmroct.oct.readers.source import Source, check_dims

MAGIC = b"FOCT"
HEADER_BYTES = 15
VOLUME_CHUNKS = (b"@IMG_JPEG", b"@IMG_SCAN_03", b"@IMG_MOT_COMP_03")


def list_chunks(src: Source) -> dict[bytes, list[tuple[int, int]]]:
    """Chunk name -> [(offset of payload, size)], validated against the file's length."""
    data = src.data
    src.need(HEADER_BYTES, "the Topcon header")
    chunks: dict[bytes, list[tuple[int, int]]] = {}
    pos = HEADER_BYTES
    while True:
        src.need(pos + 1, "the chunk list")
        name_len = data[pos]
        if name_len == 0:
            break
        src.need(pos + 1 + name_len + 4, "a chunk header")
        name = data[pos + 1 : pos + 1 + name_len]
        if not name.startswith(b"@"):
            raise CorruptScan(src.name, f"chunk at byte {pos} has no '@' name ({name[:16]!r})")
        (size,) = struct.unpack_from("<I", data, pos + 1 + name_len)
        body = pos + 1 + name_len + 4
        src.need(body + size, f"chunk {name.decode('latin-1')}")
        chunks.setdefault(name, []).append((body, size))
        pos = body + size
        if pos == len(data):  # some writers omit the zero terminator
            break
    return chunks


def declared_volume(
    src: Source, chunks: dict[bytes, list[tuple[int, int]]]
) -> tuple[int, int, int]:
    """(width, height, slices) that the OCT image chunk's header declares."""
    for name in VOLUME_CHUNKS:
        if name in chunks:
            body, size = chunks[name][0]
            if size < 21:
                raise CorruptScan(src.name, f"{name.decode()} chunk is too short ({size} bytes)")
            if name == b"@IMG_JPEG":  # mode u8, u32, u32, width, height, slices
                w, h, n = struct.unpack_from("<III", src.data, body + 9)
            else:  # mode u8, width, height, bits per pixel, slices
                w, h, _bpp, n = struct.unpack_from("<IIII", src.data, body + 1)
            check_dims(src.name, width=w, height=h, n_bscans=n)
            src.check_decoded(w * h * n * 4, "the declared volume")
            return w, h, n
    raise CorruptScan(src.name, "no OCT image chunk (@IMG_JPEG, @IMG_SCAN_03, @IMG_MOT_COMP_03)")


def read_topcon(src: Source, kind: str) -> Scan:
    """Read an FDA (``kind='topcon_fda'``) or FDS (``kind='topcon_fds'``) file."""
    if not src.data.startswith(MAGIC):
        raise UnsupportedFormat(src.name, src.data[:16], "not a Topcon file (no FOCT)")
    chunks = list_chunks(src)
    declared_volume(src, chunks)
    octconverter_compat.install()
    from oct_converter.readers import FDA, FDS

    # oct-converter reads from a path; bytes from an object store go through a private temp file.
    fd, tmp = tempfile.mkstemp(suffix=".fda" if kind == "topcon_fda" else ".fds")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(src.data)
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            reader = (FDA if kind == "topcon_fda" else FDS)(tmp)
            vol = reader.read_oct_volume()
    except (ScanTooLarge, CorruptScan):
        raise
    except Exception as exc:  # the third-party parser raises anything on bad bytes
        raise CorruptScan(src.name, f"Topcon parser failed: {type(exc).__name__}: {exc}") from None
    finally:
        os.unlink(tmp)
    if vol.volume is None:
        raise CorruptScan(src.name, "no OCT volume in the file")
    frames = [np.asarray(b) for b in vol.volume]
    if not frames or any(f.ndim != 2 for f in frames):
        raise CorruptScan(src.name, "OCT frames are not 2-D grey images")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise CorruptScan(src.name, f"B-scans differ in size: {sorted(shapes)}")
    h, w = frames[0].shape
    check_dims(src.name, height=h, width=w, n_bscans=len(frames))
    src.check_decoded(len(frames) * h * w * 4, "the B-scans")
    bscans = np.stack(frames).astype(np.float32)
    n = bscans.shape[0]
    dtype_kind = frames[0].dtype
    scale = (
        IntensityScale.DISPLAY_UINT8 if dtype_kind == np.uint8 else IntensityScale.DISPLAY_UINT16
    )

    spacing = _spacing(src, vol.pixel_spacing, n)
    stats = (vol.metadata or {}).get("fast_q2_info", {}).get("various_quality_statistics") or []
    extra: dict[str, str | float | int | None] = {
        f"topcon_fast_q2_{i}": float(v) for i, v in enumerate(stats)
    }
    segmentation = _segmentation(vol.contours, n, h, w)
    hw = (vol.metadata or {}).get("hw_info_03", {})
    device = hw.get("model_name") if isinstance(hw, dict) else None
    meta = ScanMeta(
        source=src.name,
        format=kind,
        pattern=ScanPattern.VOLUME if n > 1 else ScanPattern.LINE,
        scale=scale,
        spacing=spacing,
        n_bscans=n,
        height=h,
        width=w,
        laterality={"R": "OD", "L": "OS"}.get(vol.laterality or ""),
        device=f"Topcon {device}".strip() if device else "Topcon",
        acquisition_date=vol.acquisition_date.date() if vol.acquisition_date else None,
        device_quality=[float(stats[1])] * n if len(stats) > 1 else None,
        device_quality_kind="topcon_fast_q2" if len(stats) > 1 else None,
        extra=extra,
    )
    return Scan(meta=meta, bscans=bscans, segmentation=segmentation)


def _spacing(src: Source, pixel_spacing: list[float] | None, n: int) -> Spacing:
    if not pixel_spacing or len(pixel_spacing) != 3:
        raise CorruptScan(src.name, "no @PARAM_SCAN chunk: pixel size unknown")
    lateral_mm, bscan_mm, axial_mm = (float(v) for v in pixel_spacing)
    if not (lateral_mm > 0 and axial_mm > 0):
        raise CorruptScan(src.name, f"pixel size must be positive ({pixel_spacing})")
    return Spacing(
        lateral_um=lateral_mm * 1000,
        axial_um=axial_mm * 1000,
        bscan_um=bscan_mm * 1000 if n > 1 and bscan_mm >= 0 else None,
    )


def _segmentation(contours: dict | None, n: int, h: int, w: int) -> dict[str, np.ndarray]:
    """oct-converter gives rows from the top for FDA; keep the boundaries shaped (n, w)."""
    out: dict[str, np.ndarray] = {}
    for name, rows in (contours or {}).items():
        arr = np.asarray(rows, dtype=np.float32)
        if arr.shape != (n, w):
            continue  # contour grids of another sampling are not per A-scan rows of these B-scans
        arr[(arr < 0) | (arr > h)] = np.nan
        out[{"RETINA_1": "ILM", "RETINA_2": "RNFL", "RETINA_4": "BM"}.get(name, name)] = arr
    return out

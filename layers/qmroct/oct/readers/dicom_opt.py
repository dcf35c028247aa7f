"""DICOM Ophthalmic Tomography (multi-frame OPT) reader.

Reads any OPT instance: frames become B-scans, Pixel Measures gives the pixel size, Ophthalmic
Frame Location gives B-scan positions on the fundus. Files written by qmroct carry a private block
(:mod:`qmroct.oct.dicom_tags`) with the exact linear scale, the no-data value and the device
quality; without it, pixels are the device's display values. The decoded size is checked against
the limit before any pixel is touched, so a compressed frame cannot inflate past it.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from qmroct.errors import CorruptScan, ScanError, UnsupportedFormat
from qmroct.oct.dicom_tags import OPT_SOP_CLASS, PRIVATE, PRIVATE_CREATOR, PRIVATE_GROUP
from qmroct.oct.model import (
    BscanPosition,
    IntensityScale,
    Point,
    RingGeometry,
    Scan,
    ScanMeta,
    ScanPattern,
    Spacing,
)
from qmroct.oct.readers.source import Source, check_dims, inflate_bounded


def _private(ds: pydicom.Dataset) -> dict[str, object]:
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        return {}
    out: dict[str, object] = {}
    for key, (offset, _vr) in PRIVATE.items():
        if offset in block:
            out[key] = block[offset].value
    return out


def _first(seq_owner: object, name: str) -> object | None:
    seq = getattr(seq_owner, name, None)
    return seq[0] if seq else None


def read_dicom(name: str, data: bytes, max_bytes: int) -> pydicom.Dataset:
    """Parse a DICOM file, inflating a deflated one under ``max_bytes``.

    pydicom inflates a Deflated Explicit VR Little Endian dataset whole before reading it (a
    1 MB file can hold gigabytes of pixels), so the file meta is read here first, and a
    deflated dataset is inflated incrementally with a cap before pydicom parses it.
    Raises :class:`UnsupportedFormat` for non-DICOM bytes, :class:`CorruptScan` otherwise.
    """
    fp = DicomBytesIO(data)
    try:
        preamble = read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        syntax = str(meta.get("TransferSyntaxUID", ""))
        if syntax != DeflatedExplicitVRLittleEndian:
            return pydicom.dcmread(io.BytesIO(data), force=False)
        inflated = inflate_bounded(name, memoryview(data)[fp.tell() :], max_bytes)
        body = read_dataset(DicomBytesIO(inflated), is_implicit_VR=False, is_little_endian=True)
        ds = FileDataset(name, body, preamble=preamble, file_meta=meta, is_implicit_VR=False)
        ds.set_original_encoding(False, True, body._character_set)
        return ds
    except InvalidDicomError:
        raise UnsupportedFormat(name, data[128:132], "not a DICOM file") from None
    except ScanError:
        raise
    except Exception as exc:  # pydicom raises many types on broken files
        raise CorruptScan(name, f"unreadable DICOM: {type(exc).__name__}: {exc}") from None


def read_opt(src: Source) -> Scan:
    ds = read_dicom(src.name, src.data, src.max_bytes)
    sop = str(getattr(ds, "SOPClassUID", ""))
    if sop != OPT_SOP_CLASS:
        raise UnsupportedFormat(
            src.name, b"DICM", f"DICOM SOP class {sop or '(none)'} is not Ophthalmic Tomography"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        declared = ds.get("NumberOfFrames")
        frames = 1 if declared is None or declared == "" else int(declared)
        bits = int(ds.BitsAllocated)
        samples = int(getattr(ds, "SamplesPerPixel", 1))
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptScan(src.name, f"missing or invalid image pixel attributes: {exc}") from None
    check_dims(src.name, rows=rows, columns=cols, frames=frames)
    if samples != 1 or bits not in (8, 16):
        raise CorruptScan(src.name, f"OPT pixels must be 1 sample of 8/16 bits ({samples}, {bits})")
    src.check_decoded(rows * cols * frames * 4, "the declared frames")
    if "PixelData" not in ds:
        raise CorruptScan(src.name, "no Pixel Data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise CorruptScan(src.name, f"pixel data cannot be decoded: {exc}") from None
    pixels = np.asarray(pixels)
    if pixels.size != frames * rows * cols:
        raise CorruptScan(
            src.name,
            f"Pixel Data holds {pixels.size} values, not NumberOfFrames x Rows x Columns"
            f" = {frames} x {rows} x {cols}",
        )
    pixels = pixels.reshape(frames, rows, cols)

    priv = _private(ds)
    no_data = priv.get("no_data", getattr(ds, "PixelPaddingValue", None))
    if "slope" in priv:
        scale = IntensityScale(str(priv.get("scale", "linear")))
        bscans = pixels.astype(np.float32) * np.float32(float(priv["slope"]))  # type: ignore[arg-type]
    else:
        scale = IntensityScale.DISPLAY_UINT8 if bits == 8 else IntensityScale.DISPLAY_UINT16
        bscans = pixels.astype(np.float32)
    if no_data is not None:
        bscans[pixels == int(no_data)] = np.nan  # type: ignore[call-overload]
    if not np.isfinite(bscans).any():
        raise CorruptScan(src.name, "every pixel is no-data")

    shared = _first(ds, "SharedFunctionalGroupsSequence")
    pm = _first(shared, "PixelMeasuresSequence") if shared else None
    per_frame = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []) or [])
    if pm is None and per_frame:
        pm = _first(per_frame[0], "PixelMeasuresSequence")
    if pm is None or len(getattr(pm, "PixelSpacing", []) or []) != 2:
        raise CorruptScan(src.name, "no Pixel Measures (pixel size unknown)")
    axial_mm, lateral_mm = (float(v) for v in pm.PixelSpacing)
    if not (axial_mm > 0 and lateral_mm > 0):
        raise CorruptScan(src.name, f"pixel size must be positive ({pm.PixelSpacing})")
    bscan_um = priv.get("bscan_um")
    if bscan_um is None and frames > 1 and getattr(pm, "SliceThickness", None):
        bscan_um = float(pm.SliceThickness) * 1000

    positions = []
    for g in per_frame:
        loc = _first(g, "OphthalmicFrameLocationSequence")
        coords = list(getattr(loc, "ReferenceCoordinates", []) or []) if loc else []
        if len(coords) >= 4:
            positions.append(
                BscanPosition(
                    start=Point(x=float(coords[1]), y=float(coords[0])),
                    end=Point(x=float(coords[-1]), y=float(coords[-2])),
                )
            )
    pattern = ScanPattern(str(priv["pattern"])) if "pattern" in priv else None
    pattern = pattern or (ScanPattern.VOLUME if frames > 1 else ScanPattern.LINE)
    ring = None
    if "ring" in priv:
        cx, cy, r = (float(v) for v in priv["ring"])  # type: ignore[union-attr]
        ring = RingGeometry(center=Point(x=cx, y=cy), radius_px=r)
    quality = None
    if "device_quality" in priv:
        raw_q = priv["device_quality"]
        vals = (
            list(raw_q)
            if isinstance(raw_q, list | tuple | pydicom.multival.MultiValue)
            else [raw_q]
        )
        quality = [None if not np.isfinite(float(q)) else float(q) for q in vals]
    fundus_spacing = None
    if "fundus_spacing" in priv:
        fx, fy = (float(v) for v in priv["fundus_spacing"])  # type: ignore[union-attr]
        fundus_spacing = Spacing(lateral_um=fx, axial_um=fy)
    laterality = {"R": "OD", "L": "OS"}.get(str(getattr(ds, "ImageLaterality", "")))
    acq = str(getattr(ds, "AcquisitionDateTime", "") or getattr(ds, "StudyDate", "") or "")
    acquisition_date = None
    if len(acq) >= 8 and acq[:8].isdigit():
        from datetime import date

        try:
            acquisition_date = date(int(acq[:4]), int(acq[4:6]), int(acq[6:8]))
        except ValueError:
            acquisition_date = None
    meta = ScanMeta(
        source=src.name,
        format="dicom_opt",
        pattern=pattern,
        scale=scale,
        spacing=Spacing(
            lateral_um=lateral_mm * 1000,
            axial_um=axial_mm * 1000,
            bscan_um=float(bscan_um) if frames > 1 and bscan_um is not None else None,  # type: ignore[arg-type]
        ),
        n_bscans=frames,
        height=rows,
        width=cols,
        laterality=laterality,
        device=str(getattr(ds, "ManufacturerModelName", "") or "") or None,
        acquisition_date=acquisition_date,
        device_quality=quality,
        device_quality_kind=str(priv["device_quality_kind"])
        if "device_quality_kind" in priv
        else None,
        fundus_spacing_um=fundus_spacing,
        bscan_positions=positions if len(positions) == frames else None,
        ring=ring,
        extra={
            "sop_instance_uid": str(getattr(ds, "SOPInstanceUID", "")),
            "source_format": str(priv.get("source_format", "")) or None,
        },
    )
    return Scan(meta=meta, bscans=bscans)

"""A folder of B-scan images (PNG or TIFF) described by a sidecar.

Two sidecars are understood:

- ``scan.json`` (qmroct's own, :class:`FolderSidecar`): the image files in B-scan order, the
  pixel size, the pattern, the intensity scale and optional device quality and laterality.
- a Heidelberg HEYEX XML export (``*.xml`` next to B-scan TIFFs): read through eyepy, with
  device quality, B-scan positions, the SLO and the device's layer boundaries.

Images are opened lazily and their declared size is checked before pixels are decoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field, ValidationError

from qmroct.errors import CorruptScan, UnsupportedFormat
from qmroct.oct.model import (
    BscanPosition,
    IntensityScale,
    Point,
    Scan,
    ScanMeta,
    ScanPattern,
    Spacing,
)
from qmroct.oct.readers.source import MAX_BSCANS, check_dims

SIDECAR = "scan.json"
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


class FolderSidecar(BaseModel):
    """``scan.json``: how to read a folder of B-scan images."""

    files: list[str] = Field(min_length=1, max_length=MAX_BSCANS, description="B-scans in order")
    spacing: Spacing
    pattern: ScanPattern = ScanPattern.VOLUME
    scale: IntensityScale | None = Field(None, description="default: from the image bit depth")
    laterality: str | None = None
    device: str | None = None
    device_quality: list[float | None] | None = None
    device_quality_kind: str | None = None


def is_image_folder(path: Path) -> bool:
    return path.is_dir() and ((path / SIDECAR).is_file() or any(path.glob("*.xml")))


def read_folder(path: Path, name: str, max_bytes: int) -> Scan:
    if (path / SIDECAR).is_file():
        return _read_json_folder(path, name, max_bytes)
    xml = sorted(path.glob("*.xml"))
    if xml:
        return _read_heyex_xml(path, name, max_bytes)
    raise UnsupportedFormat(name, b"", f"folder has no {SIDECAR} and no HEYEX XML sidecar")


def _open_checked(file: Path, name: str, budget: list[int]) -> np.ndarray:
    try:
        with Image.open(file) as img:
            w, h = img.size
            check_dims(name, width=w, height=h)
            budget[0] -= w * h * 4
            if budget[0] < 0:
                from qmroct.errors import ScanTooLarge

                raise ScanTooLarge(name, "the B-scan images decode to more than the size limit")
            return np.asarray(img)
    except (OSError, Image.DecompressionBombError) as exc:
        raise CorruptScan(name, f"{file.name}: cannot decode image: {exc}") from None


def _read_json_folder(path: Path, name: str, max_bytes: int) -> Scan:
    try:
        side = FolderSidecar.model_validate(json.loads((path / SIDECAR).read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise CorruptScan(name, f"invalid {SIDECAR}: {exc}".splitlines()[0]) from None
    root = path.resolve()
    budget = [max_bytes]
    frames = []
    for f in side.files:
        file = (path / f).resolve()
        if root not in file.parents or file.suffix.lower() not in IMAGE_SUFFIXES:
            raise CorruptScan(name, f"{SIDECAR} lists {f!r}, not an image inside the folder")
        if not file.is_file():
            raise CorruptScan(name, f"{SIDECAR} lists {f!r}, which is missing")
        arr = _open_checked(file, name, budget)
        if arr.ndim == 3:  # a grey image saved as RGB(A): take the first channel
            arr = arr[..., 0]
        frames.append(arr)
    shapes = {a.shape for a in frames}
    if len(shapes) != 1:
        raise CorruptScan(name, f"B-scan images differ in size: {sorted(shapes)}")
    dtype = frames[0].dtype
    scale = side.scale or (
        IntensityScale.DISPLAY_UINT8 if dtype == np.uint8 else IntensityScale.DISPLAY_UINT16
    )
    bscans = np.stack(frames).astype(np.float32)
    n, h, w = bscans.shape
    if side.device_quality is not None and len(side.device_quality) != n:
        raise CorruptScan(name, f"device_quality has {len(side.device_quality)} values for {n}")
    meta = ScanMeta(
        source=name,
        format="image_folder",
        pattern=side.pattern,
        scale=scale,
        spacing=side.spacing if n > 1 else side.spacing.model_copy(update={"bscan_um": None}),
        n_bscans=n,
        height=h,
        width=w,
        laterality=side.laterality,
        device=side.device,
        device_quality=side.device_quality,
        device_quality_kind=side.device_quality_kind,
    )
    return Scan(meta=meta, bscans=bscans)


def _read_heyex_xml(path: Path, name: str, max_bytes: int) -> Scan:
    import eyepy as ep

    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    if total > max_bytes:
        from qmroct.errors import ScanTooLarge

        raise ScanTooLarge(name, f"folder holds {total} bytes, over the limit of {max_bytes}")
    try:
        vol = ep.import_heyex_xml(path)
    except Exception as exc:  # eyepy raises anything on a broken export
        raise CorruptScan(
            name, f"HEYEX XML export unreadable: {type(exc).__name__}: {exc}"
        ) from None
    data = np.asarray(vol.data)
    n, h, w = data.shape
    check_dims(name, n_bscans=n, height=h, width=w)
    m = vol.meta
    loc = vol.localizer
    sx, sy = float(loc.meta["scale_x"]), float(loc.meta["scale_y"])
    positions = None
    if sx > 0 and sy > 0:
        positions = [
            BscanPosition(
                start=Point(x=b["start_pos"][0] / sx, y=b["start_pos"][1] / sy),
                end=Point(x=b["end_pos"][0] / sx, y=b["end_pos"][1] / sy),
            )
            for b in m["bscan_meta"]
        ]
    segmentation = {}
    for key in ("ILM", "BM", "RNFL"):
        if key in vol.layers:
            arr = np.asarray(vol.layers[key].data, dtype=np.float32)
            if arr.shape == (n, w):
                segmentation[key] = arr
    lat = str(m.get("laterality") or "")
    meta = ScanMeta(
        source=name,
        format="image_folder",
        pattern=ScanPattern.VOLUME if n > 1 else ScanPattern.LINE,
        scale=IntensityScale.DISPLAY_UINT8
        if data.dtype == np.uint8
        else IntensityScale.DISPLAY_UINT16,
        spacing=Spacing(
            lateral_um=float(m["scale_x"]) * 1000,
            axial_um=float(m["scale_y"]) * 1000,
            bscan_um=float(m["scale_z"]) * 1000 if n > 1 else None,
        ),
        n_bscans=n,
        height=h,
        width=w,
        laterality=lat if lat in ("OD", "OS") else None,
        device="Heidelberg Spectralis",
        device_quality=[
            float(b["quality"]) if b.get("quality") is not None else None for b in m["bscan_meta"]
        ],
        device_quality_kind="spectralis_q",
        fundus_spacing_um=Spacing(lateral_um=sx * 1000, axial_um=sy * 1000)
        if sx > 0 and sy > 0
        else None,
        bscan_positions=positions,
        extra={"sidecar": "heyex_xml"},
    )
    return Scan(meta=meta, bscans=data.astype(np.float32), segmentation=segmentation,
                fundus=np.asarray(loc.data, dtype=np.float32))  # fmt: skip

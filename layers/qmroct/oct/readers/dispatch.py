"""``read_scan``: size limit, format detection and dispatch to the format's reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmroct.errors import CorruptScan
from qmroct.oct.model import Scan
from qmroct.oct.readers.detect import detect_format
from qmroct.oct.readers.source import GZIP_MAGIC, Source, default_max_bytes, gunzip_bounded, load


def read_scan(
    source: str | Path | bytes, *, name: str | None = None, max_bytes: int | None = None
) -> Scan:
    """Read one OCT scan from a path (file, or a folder of B-scan images) or from bytes.

    The format comes from the magic bytes; the extension is never trusted. ``name`` names bytes
    input in messages (default ``<bytes>``); ``max_bytes`` defaults to ``QMROCT_MAX_SCAN_BYTES``
    and bounds both the file and what its header says the pixels decode to.

    Raises :class:`~qmroct.errors.UnsupportedFormat`, :class:`~qmroct.errors.CorruptScan` or
    :class:`~qmroct.errors.ScanTooLarge`, each naming the file and the reason.
    """
    limit = max_bytes if max_bytes is not None else default_max_bytes()
    if isinstance(source, bytes | bytearray | memoryview):
        src = Source(name=name or "<bytes>", data=bytes(source), max_bytes=limit)
        if len(src.data) > limit:
            from qmroct.errors import ScanTooLarge

            raise ScanTooLarge(src.name, f"{len(src.data)} bytes, over the limit of {limit}")
    else:
        path = Path(source)
        shown = name or str(path)
        from qmroct.oct.readers.image_folder import is_image_folder, read_folder

        if path.is_dir():
            if not is_image_folder(path):
                from qmroct.errors import UnsupportedFormat

                raise UnsupportedFormat(shown, b"", "folder without a scan.json or XML sidecar")
            return _checked(read_folder(path, shown, limit))
        src = load(path, shown, limit)
    if src.data[:2] == GZIP_MAGIC:
        # The gateway gzips scans where it pays; no OCT format starts with the gzip magic.
        src = Source(name=src.name, data=gunzip_bounded(src.name, src.data, limit), max_bytes=limit)
    fmt = detect_format(src.data[:132], src.name)
    if fmt == "heyex_vol":
        from qmroct.oct.readers.heyex_vol import read_vol

        scan = read_vol(src)
    elif fmt == "heyex_e2e":
        from qmroct.oct.readers.heyex_e2e import read_e2e

        scan = read_e2e(src)
    elif fmt in ("topcon_fda", "topcon_fds"):
        from qmroct.oct.readers.topcon import read_topcon

        scan = read_topcon(src, fmt)
    else:
        from qmroct.oct.readers.dicom_opt import read_opt

        scan = read_opt(src)
    return _checked(scan)


def _checked(scan: Scan) -> Scan:
    """The invariants every reader's output must meet, whatever the format."""
    b = scan.bscans
    if b.ndim != 3 or 0 in b.shape:
        raise CorruptScan(scan.meta.source, f"zero dimension in pixel array {b.shape}")
    if (scan.meta.n_bscans, scan.meta.height, scan.meta.width) != b.shape:
        raise CorruptScan(scan.meta.source, "header dimensions disagree with the pixels")
    finite = np.isfinite(b)
    if not finite.any():
        raise CorruptScan(scan.meta.source, "NaN-filled: no pixel holds data")
    empty = np.flatnonzero(~finite.any(axis=(1, 2)))
    if empty.size:
        shown = ", ".join(str(i) for i in empty[:5]) + (" ..." if empty.size > 5 else "")
        raise CorruptScan(
            scan.meta.source, f"{empty.size} B-scan(s) hold no data (all NaN): {shown}"
        )
    if np.isinf(b).any():
        raise CorruptScan(scan.meta.source, "infinite pixel values")
    return scan

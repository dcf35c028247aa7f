"""Compression where it pays: gzip (RFC 1952) at level 1, stored with ``Content-Encoding: gzip``.

Why gzip: it is the one encoding every HTTP client decodes by itself (requests, urllib3, and so
the minio client and presigned GETs), so a measure that downloads the scan gets the original
bytes and the readers never see the compression. The object key keeps its extension; the
metadata records ``encoding=gzip`` and the sha256 of the uncompressed bytes.

Why parallel members: a gzip file may be several gzip members back to back (RFC 1952 2.2), and
zlib releases the GIL, so 4 MiB pieces compress on all cores and still decode as one stream.
Raw Spectralis floats shrink to about 0.6 of their size. Whether it pays depends on the link
(see :class:`qmroct.gateway.upload.Uploader`): a file that shrinks by less than 10 % on a 1 MiB
trial is sent as it is; otherwise the uploader measures the end-to-end rate (input bytes per
second of compress + send) of both ways and keeps the faster one. On a clinic's uplink gzip
wins by far; on loopback next to a busy server it may not.
"""

from __future__ import annotations

import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

PIECE = 4 << 20
TRIAL = 1 << 20
WORTH = 0.9
_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="gzip")


def _member(piece: bytes | memoryview, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
    return c.compress(piece) + c.flush()


def trial_ratio(data: bytes, *, level: int = 1) -> tuple[float, float]:
    """Compressed/original size of a 1 MiB trial from the middle of the file, and the
    compression speed seen on it in MB/s (one core)."""
    if len(data) < 4096:
        return 1.0, 0.0
    start = max(0, len(data) // 2 - TRIAL // 2)
    trial = memoryview(data)[start : start + TRIAL]
    t0 = time.perf_counter()
    size = len(zlib.compress(trial, level))
    seconds = max(time.perf_counter() - t0, 1e-6)
    return size / len(trial), len(trial) / 1e6 / seconds


def worth_compressing(data: bytes, *, level: int = 1) -> bool:
    """True when a 1 MiB trial from the middle of the file shrinks below 90 %."""
    return trial_ratio(data, level=level)[0] < WORTH


def gzip_parallel(data: bytes, *, level: int = 1, piece: int = PIECE) -> bytes:
    """gzip ``data`` as independent members compressed in parallel; decodes as one stream."""
    view = memoryview(data)
    pieces = [view[i : i + piece] for i in range(0, len(data), piece)] or [view]
    return b"".join(_POOL.map(lambda p: _member(p, level), pieces))


def gunzip(data: bytes) -> bytes:
    """Decode every member (zlib.decompress alone stops after the first)."""
    out = bytearray()
    while data:
        d = zlib.decompressobj(31)
        out += d.decompress(data)
        out += d.flush()
        data = d.unused_data
    return bytes(out)

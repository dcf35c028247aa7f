"""Getting a scan's bytes in, under a size limit, with a name for every message."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qmroct.errors import CorruptScan, ScanTooLarge

# Sane upper bounds for any OCT dimension a header may declare; beyond them the header is corrupt.
MAX_SIDE = 8192
MAX_BSCANS = 4096


def default_max_bytes() -> int:
    from qmroct.config import load_settings

    return load_settings().max_scan_bytes


@dataclass(frozen=True)
class Source:
    """The bytes of one file, and the name to use when reporting on it."""

    name: str
    data: bytes
    max_bytes: int

    def need(self, end: int, what: str) -> None:
        """Raise CorruptScan unless the file holds bytes up to ``end``."""
        if end > len(self.data):
            raise CorruptScan(
                self.name, f"truncated: {what} needs {end} bytes, the file has {len(self.data)}"
            )

    def check_decoded(self, n_bytes: int, what: str) -> None:
        """Refuse to allocate more than the limit for pixels a header declares (zip bombs)."""
        if n_bytes > self.max_bytes:
            raise ScanTooLarge(
                self.name,
                f"{what} would decode to {n_bytes} bytes, over the limit of {self.max_bytes}",
            )


GZIP_MAGIC = b"\x1f\x8b"


def gunzip_bounded(name: str, data: bytes | memoryview, max_bytes: int) -> bytes:
    """Undo the gateway's gzip transfer compression without ever holding more than the limit.

    A gzip member can claim almost any ratio, so decompress in steps and stop at the limit
    instead of trusting the trailer's size field (zip bombs). Concatenated members (what a
    streaming compressor writes) are read one after the other, as ``gzip`` does.
    """
    return inflate_bounded(name, data, max_bytes, wbits=16 + 15, members=True, what="gzip")


def inflate_bounded(
    name: str,
    data: bytes | memoryview,
    max_bytes: int,
    *,
    wbits: int = -15,
    members: bool = False,
    what: str = "deflate",
) -> bytes:
    """Decompress ``data`` incrementally, refusing as soon as the output passes ``max_bytes``.

    Linear in the input whatever its shape: the input is walked by offset, never re-copied, and
    each member is fed in chunks that start small and double, so a file of a million tiny gzip
    members costs a million small steps, not a million copies of the rest of the file. The
    output grows in one buffer whose final bytes are handed over without a second copy, so the
    peak is the limit plus one step, not twice the limit.
    """
    import io
    import zlib

    view = memoryview(data).cast("B")
    out = io.BytesIO()
    pos, total = 0, 0
    try:
        while pos < len(view):
            d = zlib.decompressobj(wbits=wbits)
            step = 1024
            while not d.eof:
                if pos >= len(view):
                    raise CorruptScan(name, f"truncated {what} compression")
                chunk = view[pos : pos + step]
                pos += len(chunk)
                step = min(step * 2, 1 << 20)
                while chunk:
                    piece = d.decompress(chunk, 1 << 20)
                    total += len(piece)
                    if total > max_bytes:
                        raise ScanTooLarge(
                            name,
                            f"{what} payload decompresses past the limit of {max_bytes} bytes",
                        )
                    out.write(piece)
                    chunk = d.unconsumed_tail
                    if d.eof:
                        break
            # What followed the end of this member was fed but not used: step back over it.
            pos -= len(d.unused_data)
            if not members or view[pos : pos + 2] != GZIP_MAGIC:
                break  # one stream, or what follows the last member is padding, not a member
    except zlib.error as exc:
        raise CorruptScan(name, f"broken {what} compression: {exc}") from None
    return out.getvalue()


def load(path: Path, name: str, max_bytes: int) -> Source:
    """Read a file whole, refusing it before reading when it is over the limit."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise CorruptScan(name, f"cannot open: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise ScanTooLarge(name, f"file is {size} bytes, over the limit of {max_bytes}")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise CorruptScan(name, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # the file grew while we read it
        raise ScanTooLarge(name, f"file is over the limit of {max_bytes} bytes")
    return Source(name=name, data=data, max_bytes=max_bytes)


def check_dims(name: str, **dims: int) -> None:
    """Reject zero, negative and absurd dimensions a header declares."""
    for key, value in dims.items():
        limit = MAX_BSCANS if key in ("n_bscans", "frames") else MAX_SIDE
        if value <= 0:
            raise CorruptScan(name, f"zero dimension: {key} = {value}")
        if value > limit:
            raise CorruptScan(name, f"absurd header size: {key} = {value} (limit {limit})")

"""Format detection by magic bytes, with the file name's extension as a hint."""

from __future__ import annotations

from qmroct.errors import UnsupportedFormat

FORMATS: tuple[str, ...] = (
    "heyex_vol",
    "heyex_e2e",
    "topcon_fda",
    "topcon_fds",
    "dicom_opt",
    "image_folder",
)
# Bytes that detection needs: the DICOM preamble (128) + "DICM".
HEAD_BYTES = 132


def detect_format(head: bytes, name: str = "") -> str:
    """Return the format of a file from its first bytes (at least 132 for DICOM).

    Returns one of :data:`FORMATS` except ``image_folder``, which is a folder and is recognised
    by :func:`qmroct.oct.readers.read_scan` from the path. ``name`` only appears in messages.
    Raises :class:`~qmroct.errors.UnsupportedFormat` naming the file and its first bytes.
    """
    if not head:
        raise UnsupportedFormat(name or "<bytes>", b"", "empty file")
    # eyepy's HeVolWriter puts its own version ("ep-v0.6.8") where Heyex writes HSF-OCT-1xx.
    if head.startswith(b"HSF-OCT-") or (head.startswith(b"ep-v") and name.lower().endswith(".vol")):
        return "heyex_vol"
    if head.startswith(b"CMDb") or head.startswith(b"E2EMultipleVolumeFile"):
        return "heyex_e2e"
    if head.startswith(b"FOCT"):
        kind = head[4:7]
        if kind in (b"FDA", b"FAA"):
            return "topcon_fda"
        if kind == b"FDS":
            return "topcon_fds"
        raise UnsupportedFormat(name or "<bytes>", head[:16], f"unknown Topcon kind {kind!r}")
    if len(head) >= HEAD_BYTES and head[128:132] == b"DICM":
        return "dicom_opt"
    raise UnsupportedFormat(name or "<bytes>", head[:16])

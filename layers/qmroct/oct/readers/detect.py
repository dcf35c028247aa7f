"""Format detection by magic bytes, with the file name's extension as a hint."""

from __future__ import annotations

FORMATS: tuple[str, ...] = (
    "heyex_vol",
    "heyex_e2e",
    "topcon_fda",
    "topcon_fds",
    "dicom_opt",
    "image_folder",
)


def detect_format(head: bytes, name: str = "") -> str:
    """Return the format of a file from its first bytes (at least 132 for DICOM).

    Returns one of :data:`FORMATS`. ``name`` is only used for messages and to tell FDA from FDS
    when the magic alone cannot. Raises :class:`~qmroct.errors.UnsupportedFormat`.
    """
    raise NotImplementedError

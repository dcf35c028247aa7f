"""``read_scan``: size limit, format detection and dispatch to the format's reader."""

from __future__ import annotations

from pathlib import Path

from qmroct.oct.model import Scan


def read_scan(
    source: str | Path | bytes, *, name: str | None = None, max_bytes: int | None = None
) -> Scan:
    """Read one OCT scan from a path (file, or a folder of B-scan images) or from bytes.

    ``name`` names bytes input in messages (and gives the extension hint); ``max_bytes``
    defaults to ``QMROCT_MAX_SCAN_BYTES``.
    """
    raise NotImplementedError

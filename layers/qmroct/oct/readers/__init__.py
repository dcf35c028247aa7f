"""Read any supported OCT file into a :class:`~qmroct.oct.model.Scan`.

``read_scan`` sniffs the first bytes (the extension is only a hint), enforces a size limit, and
hands the bytes to the reader of that format. Every failure is a typed error naming the file and
the reason: :class:`~qmroct.errors.UnsupportedFormat`, :class:`~qmroct.errors.CorruptScan` or
:class:`~qmroct.errors.ScanTooLarge`.
"""

from __future__ import annotations

from qmroct.oct.readers.detect import FORMATS, detect_format
from qmroct.oct.readers.dispatch import read_scan

__all__ = ["FORMATS", "detect_format", "read_scan"]

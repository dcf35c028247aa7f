"""Typed errors. Each names the file (or object) and the reason, the way pydicom's errors do."""

from __future__ import annotations


class QmroctError(Exception):
    """Base class for every error qmroct raises on purpose."""


class ScanError(QmroctError):
    """A scan could not be read. ``path`` names the file or object, ``reason`` says why."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedFormat(ScanError):
    """The bytes are not an OCT format qmroct reads (``magic`` holds the first bytes seen)."""

    def __init__(self, path: object, magic: bytes | str = b"", reason: str | None = None) -> None:
        self.magic = magic if isinstance(magic, bytes) else magic.encode()
        shown = self.magic[:16].hex(" ") if self.magic else "no bytes"
        super().__init__(path, reason or f"unsupported format (first bytes: {shown})")


class CorruptScan(ScanError):
    """The format was recognised but the content is truncated, inconsistent or invalid."""


class ScanTooLarge(ScanError):
    """The file, or the size its header declares, is over the configured limit."""


class InvalidKey(QmroctError):
    """An object key that could escape the store root or that no component should accept."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid object key {key[:80]!r}: {reason}")


class NotApplicable(QmroctError):
    """A measure does not apply to this scan (a line scan for blink detection, say)."""


class ConfigError(QmroctError):
    """The configuration is missing or inconsistent."""

"""Run oct-converter's Topcon FDA/FDS readers on NumPy 2.3 and newer.

oct-converter 0.7 parses Topcon chunks with ``np.fromstring(raw, dtype=...)``. Binary mode of
``np.fromstring`` was deprecated in NumPy 1.14 and removed in 2.3, where the call raises. Rather
than pin NumPy below 2.3 for the whole stack, the two reader modules get a NumPy namespace of
their own in which ``fromstring`` on bytes means what it always meant: ``frombuffer(...).copy()``.
Everything else resolves to the real ``numpy``; no other module sees a change, and NumPy itself
is not patched. The shim is installed once, on first use, and is a no-op on NumPy versions where
binary ``fromstring`` still works. When oct-converter switches to ``frombuffer`` the shim can go.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

_PATCHED_MODULES = ("oct_converter.readers.fda", "oct_converter.readers.fds")


class _NumpyWithBinaryFromstring(types.ModuleType):
    """A view of ``numpy`` whose ``fromstring`` accepts bytes again."""

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def fromstring(string: bytes | str, dtype: Any = float, count: int = -1, sep: str = "") -> Any:
        if sep == "" and isinstance(string, bytes | bytearray | memoryview):
            # frombuffer returns a read-only view; copying gives fromstring's owned array.
            return np.frombuffer(string, dtype=dtype, count=count).copy()
        return np.fromstring(string, dtype=dtype, count=count, sep=sep)


def _binary_fromstring_works() -> bool:
    try:
        np.fromstring(b"\x00\x00", dtype=np.uint8)  # type: ignore[call-overload]
    except (ValueError, TypeError, AttributeError, DeprecationWarning):
        return False
    return True


_installed = False


def install() -> None:
    """Give oct-converter's FDA and FDS reader modules the binary-``fromstring`` namespace."""
    global _installed
    if _installed:
        return
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        needed = not _binary_fromstring_works()
    if needed:
        shim = _NumpyWithBinaryFromstring()
        for name in _PATCHED_MODULES:
            module = importlib.import_module(name)
            module.np = shim  # type: ignore[attr-defined]
    _installed = True

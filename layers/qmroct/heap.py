"""Keep an action container's freed memory for its next activation instead of giving it back.

A measure or derive activation allocates volume-sized arrays (a 25 x 496 x 512 scan is 25 MB
as float32, 50 MB as float64; segmentation makes dozens of such temporaries). glibc's malloc
serves every block over its mmap threshold (128 KiB to 32 MiB, adaptive) with a fresh
``mmap`` and returns it with ``munmap`` on free, so each temporary is faulted in page by page
again, zeroed by the kernel, and, with numpy's ``madvise(MADV_HUGEPAGE)`` on large arrays,
huge pages are compacted for it on a busy machine. Measured on the paper-size volume
(derive's read, segment, display, shared state and stored form, one process, 4 runs): with
the defaults 0.55 s of system time in the first run and 0.1 to 0.3 s in every later one (about
18,000 page faults each); with the heap kept, 0.25 s in the first run and none after (no page
faults), the same user time and the same peak resident size (334 MB).

So :func:`keep_freed_memory` tells glibc (``mallopt(3)``) to serve large blocks from the heap
(``M_MMAP_MAX`` 0) and never to trim it (``M_TRIM_THRESHOLD``): a warm container reuses the
pages it already has. Resident memory stays at the container's peak between activations, which
the action's memory limit already allows for. It also turns numpy's huge-page advice off: once
the heap is kept, huge pages only cost the first activation the kernel's compaction of memory
for them (0.24 to 0.6 s of system time in the first run above, against 0.13 to 0.15 s with
plain pages; the later runs fault nothing either way, and their user time is the same).
A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

#: The trim threshold meaning "never" for an action: 2 GiB, the most mallopt's int takes,
#: beyond any action's memory limit.
NEVER_TRIM = 2**31 - 1

_done = False


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed blocks for reuse (see the module docstring).
    Returns whether it took effect; idempotent."""
    global _done
    if _done:
        return True
    try:
        # "glibc 2.36"; platform.libc_ver() would read the interpreter's binary to learn it.
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (ValueError, OSError):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    if _done:
        _no_huge_page_advice()
    return _done


def _no_huge_page_advice() -> None:
    """numpy's switch for ``madvise(MADV_HUGEPAGE)`` on its large arrays, which the
    ``NUMPY_MADVISE_HUGEPAGE`` variable sets at import (numpy's "Hugepage usage" notes)."""
    import numpy as np

    setter = getattr(getattr(np, "_core", None), "multiarray", None)
    setter = getattr(setter, "_set_madvise_hugepage", None)
    if callable(setter):
        setter(False)

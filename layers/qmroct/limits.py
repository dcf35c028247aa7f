"""Limits the settings default to, for code that must not import the settings.

Measure and derive action containers import this instead of :mod:`qmroct.config`:
pydantic_settings costs each container about 0.2 s of CPU at start-up, and those containers
get no ``QMROCT_*`` variables anyway (their actions have no bound inputs).
"""

import os

#: The largest scan (or derived product) a transfer accepts, in bytes.
MAX_SCAN_BYTES = 512 * 1024 * 1024


def max_scan_bytes() -> int:
    """The settings' ``max_scan_bytes`` when ``QMROCT_MAX_SCAN_BYTES`` is set, else its default,
    without importing the settings when it is not."""
    if "QMROCT_MAX_SCAN_BYTES" not in os.environ:
        return MAX_SCAN_BYTES
    from qmroct.config import load_settings

    return load_settings().max_scan_bytes

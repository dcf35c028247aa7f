"""Limits the settings default to, for code that must not import the settings.

A measure action container imports this instead of :mod:`qmroct.config`: pydantic_settings
costs each container about 0.2 s of CPU at start-up, and a measure container gets no
``QMROCT_*`` variables anyway (measure actions have no bound inputs).
"""

#: The largest scan (or derived product) a transfer accepts, in bytes.
MAX_SCAN_BYTES = 512 * 1024 * 1024

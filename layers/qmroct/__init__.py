"""qmroct: quality management for retinal OCT.

This package is the shared library every OpenWhisk action ships with: OCT readers and the scan
model, quality metrics and measures, pictures, result schemas and the small clients for the
object store, OpenWhisk and XNAT.
"""

__version__ = "0.1.0"

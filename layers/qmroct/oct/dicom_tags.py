"""What qmroct keeps in its private DICOM block, shared by the OPT writer and reader.

Standard OPT pixels are 8 or 16-bit integers and the IOD has no real-world value mapping, so
the linear intensity scale, the no-data marker and the per-B-scan device quality travel in a
private block (creator ``QMROCT 1.0``, group 0x0071). Files from other writers have no such
block and are read as the device's display values.
"""

from __future__ import annotations

OPT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "QMROCT 1.0"
# element offset (low byte) -> (keyword, VR)
PRIVATE = {
    "slope": (0x10, "FD"),  # linear value = stored * slope
    "scale": (0x11, "LO"),  # IntensityScale of the decoded values
    "no_data": (0x12, "US"),  # stored value meaning "no data" (NaN)
    "device_quality": (0x13, "FD"),  # one per frame, NaN when absent
    "device_quality_kind": (0x14, "LO"),
    "pattern": (0x15, "LO"),
    "ring": (0x16, "FD"),  # centre x, centre y, radius px (fundus)
    "source_format": (0x17, "LO"),
    "fundus_spacing": (0x18, "FD"),  # x um, y um of the fundus the positions refer to
    "bscan_um": (0x19, "FD"),
}

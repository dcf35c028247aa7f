"""DICOM Secondary Capture (SOP 1.2.840.10008.5.1.4.1.1.7) for result pictures that XNAT holds.

The instance carries the modules highdicom's ``SCImage`` writes (highdicom/sc/sop.py, with
``coordinate_system="PATIENT"``): Patient, General Study, General Series, SC Equipment, General
Image, Image Pixel and SOP Common, about thirty attributes. It is encoded here, element by
element, in Explicit VR Little Endian (PS3.5 section 7.1.2: tag, VR, a 16-bit length, or two
reserved bytes and a 32-bit length for OB; values padded to even length, UIDs with NUL, text
with a space, PS3.5 section 6.2) after the PS3.10 section 7.1 file preamble and meta group.

Why not through a DICOM library: every measure action writes one per activation, and importing
pydicom (which imports requests) costs each of the nine measure containers about 0.3 s of CPU
at start-up, highdicom as much again, for a fixed set of attributes. The tests read the bytes
back with pydicom, compare them with pydicom's own encoding of the same dataset, and check
them against highdicom's tables of the IOD's mandatory modules.
"""

from __future__ import annotations

import struct
import uuid
from datetime import datetime

import numpy as np

from qmroct import __version__
from qmroct.oct.model import ScanMeta

SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: qmroct's Implementation Class UID: a UUID-derived UID (PS3.5 section B.2) of a fixed UUID.
IMPLEMENTATION_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "qmroct:implementation").int)
IMPLEMENTATION_VERSION = f"QMROCT_{__version__}"[:16]
# VRs with the 32-bit length form (PS3.5 table 7.1-1).
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
UTF8 = "ISO_IR 192"


def new_uid() -> str:
    """A UUID-derived UID, ``2.25.<128-bit integer>`` (PS3.5 section B.2), 44 characters at most."""
    return "2.25." + str(uuid.uuid4().int)


def _element(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(
            f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr}: {len(value)} bytes is too long"
        )
    return head + struct.pack("<H", len(value)) + value


def write_secondary_capture(
    rgb: np.ndarray,
    *,
    source: ScanMeta | None,
    title: str,
    uids: tuple[str, str, str] | None = None,
    now: datetime | None = None,
) -> bytes:
    """Encode an RGB picture (h, w, 3) uint8 as a Secondary Capture instance; return its bytes.

    ``source`` gives the laterality and names the scan the picture was made from (Series
    Description carries ``title``). Patient identity is left empty: pictures travel next to
    de-identified scans, and XNAT files them by session, not by DICOM patient. ``uids`` (study,
    series, instance) and ``now`` default to new UIDs and the current time.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"secondary capture needs an (h, w, 3) RGB array, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"secondary capture needs uint8 pixels, got {arr.dtype}")
    if arr.shape[0] > 0xFFFF or arr.shape[1] > 0xFFFF:
        raise ValueError(f"secondary capture rows and columns fit 16 bits, got {arr.shape[:2]}")
    study, series, sop = uids or (new_uid(), new_uid(), new_uid())
    now = now or datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    laterality = {"OD": "R", "OS": "L"}.get((source.laterality if source else None) or "")
    texts = {
        0x0008103E: ("LO", title[:64]),  # Series Description
        0x00082111: (  # Derivation Description
            ("ST", f"quality picture of {source.source}"[:1024]) if source else None
        ),
    }
    utf8 = any(v is not None and not v[1].isascii() for v in texts.values())
    encoding = "utf-8" if utf8 else "ascii"

    def text(value: str) -> bytes:
        return value.encode(encoding)

    def us(value: int) -> bytes:
        return struct.pack("<H", value)

    elements: dict[int, tuple[str, bytes]] = {
        0x00080008: ("CS", b"DERIVED\\SECONDARY\\OTHER"),  # Image Type
        0x00080012: ("DA", text(date)),  # Instance Creation Date
        0x00080013: ("TM", text(time)),  # Instance Creation Time
        0x00080016: ("UI", text(SC_SOP_CLASS)),
        0x00080018: ("UI", text(sop)),
        0x00080020: ("DA", b""),  # Study Date (Type 2)
        0x00080023: ("DA", text(date)),  # Content Date
        0x00080030: ("TM", b""),  # Study Time (Type 2)
        0x00080033: ("TM", text(time)),  # Content Time
        0x00080050: ("SH", b""),  # Accession Number
        0x00080060: ("CS", b"OT"),  # Modality
        0x00080064: ("CS", b"DI"),  # Conversion Type: digital interface (made by software)
        0x00080070: ("LO", b"qmroct"),  # Manufacturer
        0x00080090: ("PN", b""),  # Referring Physician's Name
        0x00100010: ("PN", b""),  # Patient's Name
        0x00100020: ("LO", b""),  # Patient ID
        0x00100030: ("DA", b""),  # Patient's Birth Date
        0x00100040: ("CS", b""),  # Patient's Sex
        0x00181012: ("DA", text(date)),  # Date of Secondary Capture
        0x00181014: ("TM", text(time)),  # Time of Secondary Capture
        0x00181020: ("LO", text(f"qmroct {__version__}"[:64])),  # Software Versions
        0x0020000D: ("UI", text(study)),
        0x0020000E: ("UI", text(series)),
        0x00200010: ("SH", b""),  # Study ID
        0x00200011: ("IS", b"1"),  # Series Number
        0x00200013: ("IS", b"1"),  # Instance Number
        # Rows run to the patient's left, columns to the feet.
        0x00200020: ("CS", b"L\\F"),  # Patient Orientation
        0x00280002: ("US", us(3)),  # Samples per Pixel
        0x00280004: ("CS", b"RGB"),  # Photometric Interpretation
        0x00280006: ("US", us(0)),  # Planar Configuration: interleaved
        0x00280010: ("US", us(int(arr.shape[0]))),  # Rows
        0x00280011: ("US", us(int(arr.shape[1]))),  # Columns
        0x00280100: ("US", us(8)),  # Bits Allocated
        0x00280101: ("US", us(8)),  # Bits Stored
        0x00280102: ("US", us(7)),  # High Bit
        0x00280103: ("US", us(0)),  # Pixel Representation: unsigned
        0x7FE00010: ("OB", np.ascontiguousarray(arr).tobytes()),  # Pixel Data
    }
    if utf8:
        elements[0x00080005] = ("CS", UTF8.encode("ascii"))  # Specific Character Set
    for tag, item in texts.items():
        if item is not None:
            elements[tag] = (item[0], text(item[1]))
    if laterality:
        elements[0x00200060] = ("CS", laterality.encode("ascii"))
    meta = b"".join(
        _element(tag, vr, value)
        for tag, vr, value in (
            (0x00020001, "OB", b"\0\1"),  # File Meta Information Version
            (0x00020002, "UI", SC_SOP_CLASS.encode("ascii")),
            (0x00020003, "UI", sop.encode("ascii")),
            (0x00020010, "UI", EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii")),
            (0x00020012, "UI", IMPLEMENTATION_UID.encode("ascii")),
            (0x00020013, "SH", IMPLEMENTATION_VERSION.encode("ascii")),
        )
    )
    body = b"".join(_element(tag, *elements[tag]) for tag in sorted(elements))
    group_length = _element(0x00020000, "UL", struct.pack("<I", len(meta)))
    return b"\0" * 128 + b"DICM" + group_length + meta + body

"""De-identify vendor OCT files in place: the identifying header fields are blanked or replaced
by pseudonyms of the same width, so every byte offset stays where the readers expect it.

- Heidelberg ``.vol`` (HSF-OCT-1xx, 2048-byte header): ID, ReferenceID, PID, PatientID, VID,
  VisitID are pseudonymised or zeroed, DOB (float64 OLE date at offset 164) keeps only its year,
  ExamTime and VisitDate are zeroed (as the DICOM path empties Study Date).
- Heidelberg ``.e2e``: every patient chunk (type 9: first name, surname, title, birth date,
  sex, patient id) has its names zeroed, its id pseudonymised and its birth date cut to the year;
  examination, B-scan acquisition and localizer timestamps are zeroed, diagnosis text too.
- Topcon ``.fda``/``.fds``: ``@PATIENT_INFO_02`` gets a pseudonymised id, zeroed names, the
  birth year only and everything after the birth date zeroed; the capture date keeps its year
  and the capture label is zeroed; ``@PATIENT_INFO``,
  ``@PATIENT_INFO_03`` and ``@PATIENTEXT_INFO`` (undocumented) are zeroed whole.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import date, timedelta

from qmroct.errors import CorruptScan, UnsupportedFormat
from qmroct.gateway.models import DeidResult, Identity
from qmroct.gateway.pseudonyms import PseudonymStore

_OLE_EPOCH = date(1899, 12, 30)
_VOL_HEADER = 2048
_E2E_CHUNK_MAGIC = b"MDbData\x00"
_E2E_CHUNK_HEADER = 60
_E2E_PATIENT = 9
_JDN_OFFSET = 1721425  # Julian day number of date.fromordinal(n) is n + this


def _fixed(text: str, width: int) -> bytes:
    """ASCII, NUL-padded to ``width`` with at least one terminating NUL."""
    raw = text.encode("ascii")[: width - 1]
    return raw + b"\x00" * (width - len(raw))


def _cstr(buf: bytes | bytearray, offset: int, width: int) -> str:
    return bytes(buf[offset : offset + width]).split(b"\x00", 1)[0].decode("latin-1").strip()


def _put(buf: bytearray, offset: int, value: bytes) -> None:
    buf[offset : offset + len(value)] = value


# ---------------------------------------------------------------- Heidelberg .vol
def deidentify_vol(data: bytes, pseudonyms: PseudonymStore, *, name: str = "<bytes>") -> DeidResult:
    if not data.startswith(b"HSF-OCT-"):
        raise UnsupportedFormat(name, data[:16])
    if len(data) < _VOL_HEADER:
        raise CorruptScan(name, f"{len(data)} bytes is shorter than the 2048-byte .vol header")
    buf = bytearray(data)
    exam_id, ref_id = _cstr(buf, 104, 16), _cstr(buf, 120, 16)
    (pid,) = struct.unpack_from("<i", buf, 136)
    patient_id = _cstr(buf, 140, 21)
    (dob,) = struct.unpack_from("<d", buf, 164)
    (vid,) = struct.unpack_from("<i", buf, 172)
    visit_id = _cstr(buf, 176, 24)
    (visit_date,) = struct.unpack_from("<d", buf, 200)

    patient = patient_id or (f"vol-pid:{pid}" if pid else "")
    if not patient:
        raise CorruptScan(name, ".vol header has neither PatientID nor PID")
    session = visit_id or (f"vol-vid:{vid}" if vid else f"vol-visit:{visit_date!r}")
    scan_key = f"{exam_id}|{ref_id}|{hashlib.sha256(data[:_VOL_HEADER]).hexdigest()}"
    identity = Identity(
        subject=pseudonyms.pseudonym("patient", patient),
        session=pseudonyms.pseudonym("study", f"{patient}|{session}"),
        scan=pseudonyms.pseudonym("scan", scan_key),
    )
    _put(buf, 104, _fixed(identity.scan[:15], 16))
    _put(buf, 120, _fixed(pseudonyms.pseudonym("scan", ref_id)[:15], 16) if ref_id else b"\0" * 16)
    struct.pack_into("<i", buf, 136, 0)
    _put(buf, 140, _fixed(identity.subject, 21))
    struct.pack_into("<d", buf, 164, _ole_year(dob))
    struct.pack_into("<i", buf, 172, 0)
    _put(buf, 176, _fixed(identity.session, 24))
    # Dates go as the DICOM path's Study Date does (Basic Profile Z): ExamTime (FILETIME at 88)
    # and VisitDate (OLE date at 200) become 0, which every .vol reader takes as "unknown".
    struct.pack_into("<Q", buf, 88, 0)
    struct.pack_into("<d", buf, 200, 0.0)
    return DeidResult(
        data=bytes(buf),
        format="heyex_vol",
        ext="vol",
        identity=identity,
        pattern=_vol_pattern(buf),
        changes=[
            "ID, ReferenceID, PatientID, VisitID: pseudonym",
            "PID, VID, ExamTime, VisitDate: 0",
            "DOB: year",
        ],
    )


def _ole_year(value: float) -> float:
    """An OLE date (days since 1899-12-30) moved to 1 January of its year; 0 stays 0 (unknown)."""
    if not value or value != value:
        return 0.0
    try:
        year = (_OLE_EPOCH + timedelta(days=value)).year
    except OverflowError:
        return 0.0
    return float((date(year, 1, 1) - _OLE_EPOCH).days)


def _vol_pattern(buf: bytearray) -> str | None:
    # HSF-OCT ScanPattern at offset 96: 1 line, 2 circle, 3 volume, 4 radial (Heidelberg spec).
    (code,) = struct.unpack_from("<i", buf, 96)
    return {1: "line", 2: "ring", 3: "volume", 4: "radial", 5: "volume", 6: "radial"}.get(code)


# ---------------------------------------------------------------- Heidelberg .e2e
def _e2e_year(value: int) -> int:
    if value == 0:
        return 0
    if 10_000_000 <= value <= 99_991_231:  # some exports store YYYYMMDD
        return (value // 10_000) * 10_000 + 101
    try:
        jdn = value / 64 - 14558805
        year = date.fromordinal(int(jdn) - _JDN_OFFSET).year
    except (ValueError, OverflowError):
        return 0
    return int((date(year, 1, 1).toordinal() + _JDN_OFFSET + 14558805) * 64)


# Chunk type -> (offset, length) of an 8-byte FILETIME in its body, after eyepy's E2E format
# (eyepy/io/he/e2e_format.py): 10005 examination time (Type10005.examination_time, at 16),
# 10004 B-scan metadata (Type10004.acquisitionTime, at 88), 10025 localizer (windate, at 24).
_E2E_DATES = {10005: 16, 10004: 88, 10025: 24}
_E2E_DIAGNOSIS = 17  # free text the clinic typed: zeroed whole


def _e2e_clear_dates(buf: bytearray, body: int, kind: int, size: int) -> None:
    """Zero the chunk's timestamps, as the DICOM path empties Study Date and Acquisition Time."""
    end = min(body + size, len(buf))
    at = _E2E_DATES.get(kind)
    if at is not None and body + at + 8 <= end:
        _put(buf, body + at, b"\0" * 8)
    elif kind == _E2E_DIAGNOSIS and end > body:
        _put(buf, body, b"\0" * (end - body))


def deidentify_e2e(data: bytes, pseudonyms: PseudonymStore, *, name: str = "<bytes>") -> DeidResult:
    if not data.startswith(b"CMDb"):
        raise UnsupportedFormat(name, data[:16])
    # Chunks are found by their magic rather than through the directory: cut-down exports keep
    # the chunks but not consistent directory positions, and a patient chunk must never be missed.
    buf = bytearray(data)
    patients: list[str] = []
    db_ids: set[int] = set()
    studies: set[int] = set()
    start = 0
    while (offset := buf.find(_E2E_CHUNK_MAGIC, start)) >= 0:
        start = offset + 1
        if offset + _E2E_CHUNK_HEADER > len(buf):
            break
        (size,) = struct.unpack_from("<I", buf, offset + 24)
        patient_db, study = struct.unpack_from("<II", buf, offset + 28)
        (kind,) = struct.unpack_from("<I", buf, offset + 52)
        db_ids.add(patient_db)
        studies.add(study)
        _e2e_clear_dates(buf, offset + _E2E_CHUNK_HEADER, kind, size)
        if kind != _E2E_PATIENT or size < 127 or offset + _E2E_CHUNK_HEADER + 127 > len(buf):
            continue
        body = offset + _E2E_CHUNK_HEADER
        patient_id = _cstr(buf, body + 102, 25)
        patients.append(patient_id or f"e2e-db:{patient_db}")
        _put(buf, body, b"\0" * 97)  # first name, surname, title
        (birth,) = struct.unpack_from("<I", buf, body + 97)
        struct.pack_into("<I", buf, body + 97, _e2e_year(birth))
    if not patients and not db_ids:
        raise CorruptScan(name, "no E2E chunk found")
    patient = patients[0] if patients else f"e2e-db:{min(db_ids)}"
    subject = pseudonyms.pseudonym("patient", patient)
    # Second pass: every patient chunk gets the subject pseudonym as its id.
    start = 0
    while (offset := buf.find(_E2E_CHUNK_MAGIC, start)) >= 0:
        start = offset + 1
        if offset + _E2E_CHUNK_HEADER > len(buf):
            break
        (size,) = struct.unpack_from("<I", buf, offset + 24)
        (kind,) = struct.unpack_from("<I", buf, offset + 52)
        if kind == _E2E_PATIENT and size >= 127 and offset + _E2E_CHUNK_HEADER + 127 <= len(buf):
            _put(buf, offset + _E2E_CHUNK_HEADER + 102, _fixed(subject, 25))
    identity = Identity(
        subject=subject,
        session=pseudonyms.pseudonym("study", f"{patient}|e2e-study:{sorted(studies)}"),
        scan=pseudonyms.pseudonym("scan", hashlib.sha256(data).hexdigest()),
    )
    return DeidResult(
        data=bytes(buf),
        format="heyex_e2e",
        ext="e2e",
        identity=identity,
        changes=[
            f"{len(patients)} patient chunk(s): names zeroed, id pseudonym, birth year",
            "examination, acquisition and localizer times: 0; diagnosis text: zeroed",
        ],
    )


# ---------------------------------------------------------------- Topcon .fda / .fds
def _fda_chunks(buf: bytearray, name: str) -> dict[bytes, list[tuple[int, int]]]:
    """Chunk name -> [(data offset, size)], walking the chunk list after the 15-byte header."""
    chunks: dict[bytes, list[tuple[int, int]]] = {}
    offset = 15
    while offset < len(buf):
        n = buf[offset]
        if n == 0 or offset + 1 + n + 4 > len(buf):
            break
        label = bytes(buf[offset + 1 : offset + 1 + n])
        (size,) = struct.unpack_from("<I", buf, offset + 1 + n)
        data_at = offset + 1 + n + 4
        if data_at + size > len(buf):
            raise CorruptScan(name, f"chunk {label!r} runs past the end of the file")
        chunks.setdefault(label, []).append((data_at, size))
        offset = data_at + size
    return chunks


def deidentify_topcon(
    data: bytes, pseudonyms: PseudonymStore, *, name: str = "<bytes>", ext: str = "fda"
) -> DeidResult:
    if data[:4] != b"FOCT":
        raise UnsupportedFormat(name, data[:16])
    buf = bytearray(data)
    chunks = _fda_chunks(buf, name)
    info = chunks.get(b"@PATIENT_INFO_02", [])
    patient = ""
    for at, _size in info:
        patient = patient or _cstr(buf, at, 32)
    capture = chunks.get(b"@CAPTURE_INFO_02", []) + chunks.get(b"@CAPTURE_INFO", [])
    capture_key = hashlib.sha256(
        b"".join(bytes(buf[at : at + size]) for at, size in capture)
    ).hexdigest()
    patient = patient or f"topcon-file:{hashlib.sha256(data).hexdigest()}"
    identity = Identity(
        subject=pseudonyms.pseudonym("patient", patient),
        session=pseudonyms.pseudonym("study", f"{patient}|{capture_key}"),
        scan=pseudonyms.pseudonym("scan", hashlib.sha256(data).hexdigest()),
    )
    for at, size in info:
        if size < 110:
            _put(buf, at, b"\0" * size)
            continue
        _put(buf, at, _fixed(identity.subject, 32))
        _put(buf, at + 32, b"\0" * 72)  # first, last and middle names
        year, _month, _day = struct.unpack_from("<3H", buf, at + 105)
        struct.pack_into("<3H", buf, at + 105, *((year, 1, 1) if year else (0, 0, 0)))
        _put(buf, at + 111, b"\0" * (size - 111))
    # @CAPTURE_INFO_02: eye, scan mode, session id, a 100-byte free-text label, then the capture
    # date and time as six uint16 (year, month, day, hour, minute, second); @CAPTURE_INFO: eye,
    # then the same six (oct_converter's fda_binary.capture_info*_header). The label is zeroed and
    # the date cut to 1 January of its year at 00:00 (a zero date is no valid date to readers).
    for label, date_at in ((b"@CAPTURE_INFO_02", 106), (b"@CAPTURE_INFO", 1)):
        for at, size in chunks.get(label, []):
            if size < date_at + 12:
                _put(buf, at, b"\0" * size)
                continue
            if date_at > 1:
                _put(buf, at + 6, b"\0" * 100)
            (year,) = struct.unpack_from("<H", buf, at + date_at)
            cut = (year, 1, 1, 0, 0, 0) if year else (0,) * 6
            struct.pack_into("<6H", buf, at + date_at, *cut)
    for label in (b"@PATIENT_INFO", b"@PATIENT_INFO_03", b"@PATIENTEXT_INFO"):
        for at, size in chunks.get(label, []):
            _put(buf, at, b"\0" * size)
    return DeidResult(
        data=bytes(buf),
        format="topcon_fds" if ext == "fds" else "topcon_fda",
        ext=ext,
        identity=identity,
        changes=[
            "PATIENT_INFO_02: id pseudonym, names zeroed, birth year",
            "PATIENT*_INFO: zeroed",
            "CAPTURE_INFO*: label zeroed, capture date: year",
        ],
    )

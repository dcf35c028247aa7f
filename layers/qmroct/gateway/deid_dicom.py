"""De-identify one DICOM file by allow-list: only what the study needs is kept, and of that only
what the PS3.15 Annex E Basic Profile allows (both lists in :mod:`qmroct.gateway.profile`).

Every other element, public or private, known or unknown, at any depth, is removed; the file
meta is rebuilt from scratch and the preamble zeroed. One deviation from the profile serves the
study: the patient's birth date keeps its year (YYYY0101), so age at acquisition stays usable.

Files that may show identifying text in their pixels are refused (:class:`DeidRefused`): the
profile's attribute rules cannot clean pixels, so such files stay at the clinic, flagged.
"""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID_dictionary

from qmroct.errors import CorruptScan
from qmroct.gateway.models import DeidRefused, DeidResult, Identity
from qmroct.gateway.profile import (
    CLASS_UID_KEYWORDS,
    SAFE_PRIVATE,
    STUDY_KEEP,
    first_action,
    profile_action,
)
from qmroct.gateway.pseudonyms import PseudonymStore
from qmroct.oct.readers.dicom_opt import read_dicom
from qmroct.oct.readers.source import default_max_bytes

# PS3.4 B.5: the Secondary Capture classes (single-frame and the four multi-frame ones). Matched
# exactly: every Ophthalmic class (1.2.840.10008.5.1.4.1.1.77...) shares the prefix "...1.1.7".
SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
_OPT_PREFIX = "1.2.840.10008.5.1.4.1.1.77.1.5."
_METHOD = "PS3.15 E.1 Basic Profile on an allow-list; birth date: year only"
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                         "TM", "UC", "UR", "UT", "UI"})  # fmt: skip


def burned_in_reason(ds: Dataset) -> str | None:
    """Why this dataset may carry identifying text in its pixels, or None."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation is YES"
    if str(ds.get("RecognizableVisualFeatures", "")).upper() == "YES":
        return "RecognizableVisualFeatures is YES"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "SCREEN SAVE" in image_type:
        return "ImageType says SCREEN SAVE (a screenshot, likely with burned-in text)"
    sop = str(ds.get("SOPClassUID", ""))
    if sop in SECONDARY_CAPTURE_CLASSES and "BurnedInAnnotation" not in ds:
        return "Secondary Capture without BurnedInAnnotation NO"
    return None


def _dummy(vr: str) -> object:
    return {
        "DA": "19000101",
        "TM": "000000",
        "DT": "19000101000000",
        "PN": "ANONYMOUS",
        "UI": "2.25.0",
        "SQ": [],
        "IS": "0",
        "DS": "0",
    }.get(vr, "ANONYMOUS")


def _value_bytes(elem: pydicom.DataElement) -> int:
    """The encoded length of a value, as near as the parsed value tells."""
    value = elem.value
    if isinstance(value, bytes | bytearray):
        return len(value)
    values = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
    if elem.VR in _STRING_VRS:
        return sum(len(str(v)) + 1 for v in values)
    size = {"FD": 8, "FL": 4, "US": 2, "SS": 2, "UL": 4, "SL": 4, "AT": 4}.get(elem.VR, 8)
    return size * len(values)


class _Cleaner:
    """Walks a dataset and keeps what :mod:`qmroct.gateway.profile` allows, at any depth."""

    def __init__(self, pseudonyms: PseudonymStore) -> None:
        self.pseudonyms = pseudonyms
        self.changes: set[str] = set()
        self.retained_private = False

    def _safe_private(self, ds: Dataset, elem: pydicom.DataElement) -> bool:
        """Both the block's creator and the element are on the safe list, and the value fits."""
        tag = elem.tag
        if tag.is_private_creator:
            creator = str(elem.value).strip()
            return (tag.group, creator) in SAFE_PRIVATE
        owner = ds.get(Tag(tag.group, tag.element >> 8))
        if owner is None:
            return False
        spec = SAFE_PRIVATE.get((tag.group, str(owner.value).strip()), {}).get(tag.element & 0xFF)
        if spec is None or spec.vr != elem.VR or _value_bytes(elem) > spec.max_bytes:
            return False
        return spec.values is None or str(elem.value) in spec.values

    def _uid(self, value: object) -> object:
        text = str(value)
        if not text or text in UID_dictionary:
            return value
        return self.pseudonyms.uid(text)

    def clean(self, ds: Dataset) -> None:
        for elem in list(ds):
            tag = elem.tag
            name = elem.keyword or str(tag)
            if tag.is_private:
                if self._safe_private(ds, elem):
                    self.retained_private = True
                else:
                    del ds[tag]
                    self.changes.add("private attributes removed (not on the safe list)")
                continue
            if elem.keyword not in STUDY_KEEP:
                del ds[tag]
                self.changes.add("attributes the study does not need removed")
                continue
            code = profile_action(int(tag))
            if code is not None and "U*" in code.split("/") and elem.VR == "SQ":
                # The table's option for reference sequences: keep them, and replace the UIDs
                # inside; the allow-list still applies to every item.
                self._apply(ds, elem, "K", name)
            elif code is not None:
                action = first_action(code)
                # An allow-listed attribute stays present: "remove" becomes "empty".
                self._apply(ds, elem, "Z" if action == "X" else action, name)
            elif elem.VR == "UI" and elem.keyword not in CLASS_UID_KEYWORDS:
                self._apply(ds, elem, "U", name)
            elif elem.VR == "UI":
                if any(str(v) not in UID_dictionary for v in _values(elem)):
                    self._apply(ds, elem, "U", name)  # a private class UID names its maker
            elif elem.VR == "SQ":
                for item in elem.value or []:
                    self.clean(item)

    def _apply(self, ds: Dataset, elem: pydicom.DataElement, action: str, name: str) -> None:
        if action == "K":
            if elem.VR == "SQ":
                for item in elem.value or []:
                    self.clean(item)
            return
        if action == "X":
            del ds[elem.tag]
        elif action == "Z" or (action == "D" and elem.VR == "SQ"):
            elem.value = [] if elem.VR == "SQ" else ""
        elif action == "D":
            elem.value = _dummy(elem.VR)
        elif action == "U":
            if elem.VM > 1:
                elem.value = [self._uid(v) for v in elem.value]
            elif elem.value:
                elem.value = self._uid(elem.value)
        self.changes.add(f"{name}: {action}")


def _values(elem: pydicom.DataElement) -> list[object]:
    value = elem.value
    return list(value) if isinstance(value, list | pydicom.multival.MultiValue) else [value]


def _new_file_meta(ds: Dataset, name: str) -> FileMetaDataset:
    """File meta built from scratch (PS3.10 7.1): nothing of the sender's survives it."""
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax not in UID_dictionary or UID_dictionary[syntax][1] != "Transfer Syntax":
        raise CorruptScan(name, f"TransferSyntaxUID {syntax!r} is not a registered syntax")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    return meta


def _birth_year(value: object) -> str:
    text = str(value or "").strip()
    return f"{text[:4]}0101" if len(text) >= 4 and text[:4].isdigit() else ""


def deidentify_dicom(
    data: bytes, pseudonyms: PseudonymStore, *, name: str = "<bytes>", max_bytes: int | None = None
) -> DeidResult:
    """Apply the Basic Profile to one DICOM file; return the new bytes and the pseudonymised identity.

    Raises :class:`DeidRefused` for files with (possible) burned-in annotation,
    :class:`UnsupportedFormat` for bytes that are not DICOM and :class:`CorruptScan` for DICOM
    that cannot be parsed.
    """
    ds = read_dicom(name, data, default_max_bytes() if max_bytes is None else max_bytes)
    if not isinstance(ds, FileDataset) or not isinstance(ds.file_meta, FileMetaDataset):
        raise CorruptScan(name, "DICOM file has no File Meta Information")
    reason = burned_in_reason(ds)
    if reason:
        raise DeidRefused(name, f"not uploaded: {reason}")

    patient = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    study = str(ds.get("StudyInstanceUID", "") or "")
    instance = str(ds.get("SOPInstanceUID", "") or "")
    if not patient or not study or not instance:
        raise CorruptScan(name, "DICOM lacks PatientID, StudyInstanceUID or SOPInstanceUID")
    birth = _birth_year(ds.get("PatientBirthDate"))
    identity = Identity(
        subject=pseudonyms.pseudonym("patient", patient),
        session=pseudonyms.pseudonym("study", study),
        scan=pseudonyms.pseudonym("scan", instance),
    )

    cleaner = _Cleaner(pseudonyms)
    cleaner.clean(ds)
    ds.file_meta = _new_file_meta(ds, name)
    ds.preamble = b"\0" * 128  # the preamble is free for application use: nothing survives it

    ds.PatientID = identity.subject
    ds.PatientName = identity.subject
    ds.PatientBirthDate = birth
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    ds.DeidentificationMethod = _METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    codes = [code]
    if cleaner.retained_private:
        safe = Dataset()
        safe.CodeValue = "113111"
        safe.CodingSchemeDesignator = "DCM"
        safe.CodeMeaning = "Retain Safe Private Option"
        codes.append(safe)
    ds.DeidentificationMethodCodeSequence = codes

    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    sop = str(ds.get("SOPClassUID", ""))
    fmt = "dicom_opt" if sop.startswith(_OPT_PREFIX) else "dicom"
    return DeidResult(
        data=out.getvalue(),
        format=fmt,
        ext="dcm",
        identity=identity,
        pattern=None,
        changes=sorted(cleaner.changes)
        + ["PatientID, PatientName: pseudonym", "PatientBirthDate: year"],
    )

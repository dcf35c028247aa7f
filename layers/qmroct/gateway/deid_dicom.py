"""De-identify one DICOM file with the PS3.15 Annex E Basic Application Level Confidentiality
Profile (the table in :mod:`qmroct.gateway.profile`), plus one deviation the study needs: the
patient's birth date keeps its year (YYYY0101), so age at acquisition stays usable.

Files that may show identifying text in their pixels are refused (:class:`DeidRefused`): the
profile's attribute rules cannot clean pixels, so such files stay at the clinic, flagged.
"""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID_dictionary

from qmroct.errors import CorruptScan, UnsupportedFormat
from qmroct.gateway.models import DeidRefused, DeidResult, Identity
from qmroct.gateway.profile import (
    BASIC_PROFILE,
    KEPT_UID_KEYWORDS,
    SAFE_PRIVATE_CREATORS,
    first_action,
)
from qmroct.gateway.pseudonyms import PseudonymStore

_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_OPT_PREFIX = "1.2.840.10008.5.1.4.1.1.77.1.5."
_METHOD = "PS3.15 E.1 Basic Profile; birth date: year only"


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
    if sop.startswith(_SECONDARY_CAPTURE_PREFIX) and "BurnedInAnnotation" not in ds:
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


class _Cleaner:
    def __init__(self, pseudonyms: PseudonymStore) -> None:
        self.pseudonyms = pseudonyms
        self.changes: set[str] = set()
        self.retained_private = False

    @staticmethod
    def _safe_private(ds: Dataset, elem: pydicom.DataElement) -> bool:
        tag = elem.tag
        if tag.is_private_creator:
            creator = str(elem.value).strip()
        else:
            owner = ds.get(Tag(tag.group, tag.element >> 8))
            if owner is None:
                return False
            creator = str(owner.value).strip()
        return (tag.group, creator) in SAFE_PRIVATE_CREATORS

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
                    continue
                del ds[tag]
                self.changes.add("private tags removed")
                continue
            group = tag.group
            if 0x5000 <= group <= 0x50FF or (
                0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000)
            ):
                del ds[tag]
                self.changes.add("curves and overlays removed")
                continue
            code = BASIC_PROFILE.get(elem.keyword)
            if code is not None:
                self._apply(ds, elem, first_action(code), name)
            elif elem.VR == "UI" and elem.keyword not in KEPT_UID_KEYWORDS:
                self._apply(ds, elem, "U", name)
            elif elem.VR == "PN":
                self._apply(ds, elem, "Z", name)
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
        elif action == "Z":
            elem.value = [] if elem.VR == "SQ" else ""
        elif action == "D":
            elem.value = _dummy(elem.VR)
        elif action == "U":
            if elem.VM > 1:
                elem.value = [self._uid(v) for v in elem.value]
            elif elem.value:
                elem.value = self._uid(elem.value)
        self.changes.add(f"{name}: {action}")


def _birth_year(value: object) -> str:
    text = str(value or "").strip()
    return f"{text[:4]}0101" if len(text) >= 4 and text[:4].isdigit() else ""


def deidentify_dicom(
    data: bytes, pseudonyms: PseudonymStore, *, name: str = "<bytes>"
) -> DeidResult:
    """Apply the Basic Profile to one DICOM file; return the new bytes and the pseudonymised identity.

    Raises :class:`DeidRefused` for files with (possible) burned-in annotation,
    :class:`UnsupportedFormat` for bytes that are not DICOM and :class:`CorruptScan` for DICOM
    that cannot be parsed.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError as exc:
        raise UnsupportedFormat(name, data[:132][-4:] or data[:16]) from exc
    except Exception as exc:  # pydicom raises many types on truncated data
        raise CorruptScan(name, f"DICOM could not be parsed: {exc}") from exc
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
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), FileMetaDataset) else None
    if meta is not None:
        for elem in list(meta):
            if elem.keyword == "MediaStorageSOPInstanceUID":
                continue
            if (
                elem.tag.is_private
                or elem.keyword.startswith("SourceApplicationEntity")
                or elem.keyword.startswith("SendingApplicationEntity")
                or elem.keyword.startswith("ReceivingApplicationEntity")
            ):
                del meta[elem.tag]
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    ds.PatientID = identity.subject
    ds.PatientName = identity.subject
    ds.PatientBirthDate = birth
    ds.PatientIdentityRemoved = "YES"
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
    ds.save_as(out, enforce_file_format=meta is not None)
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

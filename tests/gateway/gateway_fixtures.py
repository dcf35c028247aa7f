"""Builders shared by the gateway tests: a DICOM full of identifiers, and the byte scanner."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

OPT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"

# Every value here is an identifier that must not survive de-identification.
IDENTIFIERS = {
    "patient_name": "Quixotic^Bartholomew^Zebedee",
    "patient_id": "MRN-77310482",
    "other_id": "NHS-9434765919",
    "birth_date": "19630417",
    "accession": "ACC-55120934",
    "study_uid": "1.2.826.0.1.3680043.8.498.11111111111111111",
    "series_uid": "1.2.826.0.1.3680043.8.498.22222222222222222",
    "sop_uid": "1.2.826.0.1.3680043.8.498.33333333333333333",
    "frame_uid": "1.2.826.0.1.3680043.8.498.44444444444444444",
    "ref_uid": "1.2.826.0.1.3680043.8.498.55555555555555555",
    "referring": "Drummond^Ophelia",
    "operator": "Technician^Wilhelmina",
    "institution": "Saint Expedite Eye Clinic",
    "address": "42 Wallaby Way, Sydney",
    "phone": "+61-2-5550-1234",
    "station": "OCT-ROOM-7-STN",
    "private": "PRIVATE-SECRET-VALUE-888",
    "nested_name": "Nestor^Hieronymus",
    "comments": "patient is the mayor's cousin",
    "study_id": "STUDY-7781",
    "serial": "SN-0099887766",
}


def identified_dicom(*, burned_in: str | None = "NO") -> bytes:
    """An Ophthalmic Tomography file with identifiers everywhere the profile looks."""
    v = IDENTIFIERS
    ds = Dataset()
    ds.SOPClassUID = OPT_SOP_CLASS
    ds.SOPInstanceUID = v["sop_uid"]
    ds.StudyInstanceUID = v["study_uid"]
    ds.SeriesInstanceUID = v["series_uid"]
    ds.FrameOfReferenceUID = v["frame_uid"]
    ds.Modality = "OPT"
    ds.PatientName = v["patient_name"]
    ds.PatientID = v["patient_id"]
    ds.PatientBirthDate = v["birth_date"]
    ds.PatientSex = "F"
    ds.PatientAddress = v["address"]
    ds.PatientTelephoneNumbers = v["phone"]
    ds.OtherPatientIDs = v["other_id"]
    ds.AccessionNumber = v["accession"]
    ds.ReferringPhysicianName = v["referring"]
    ds.OperatorsName = v["operator"]
    ds.InstitutionName = v["institution"]
    ds.InstitutionAddress = v["address"]
    ds.StationName = v["station"]
    ds.StudyID = v["study_id"]
    ds.DeviceSerialNumber = v["serial"]
    ds.PatientComments = v["comments"]
    ds.StudyDate = "20240102"
    ds.Manufacturer = "Heidelberg Engineering"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    # Private block with an identifier.
    block = ds.private_block(0x0009, "ACME OCT 1.0", create=True)
    block.add_new(0x01, "LO", v["private"])
    # Nested: a referenced image and a person inside a sequence inside a sequence.
    ref = Dataset()
    ref.ReferencedSOPClassUID = OPT_SOP_CLASS
    ref.ReferencedSOPInstanceUID = v["ref_uid"]
    inner = Dataset()
    inner.PersonName = v["nested_name"]
    inner.PatientID = v["patient_id"]
    ref.ContentSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([ref])
    person = Dataset()
    person.ObserverType = "PSN"
    person.PersonName = v["nested_name"]
    person.add_new(0x00111001, "LO", v["private"])  # private tag inside a sequence
    ds.add_new(0x00400275, "SQ", Sequence([person]))  # RequestAttributesSequence
    ds.AcquisitionContextSequence = Sequence([])
    ds.Rows, ds.Columns, ds.NumberOfFrames = 16, 12, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(16 * 12 * 2, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = OPT_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = v["sop_uid"]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "CLINIC_AE"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def encodings(text: str) -> list[bytes]:
    """The ways an identifier can appear in bytes: ASCII/UTF-8, UTF-16 both ends, upper and
    lower case, and DICOM PN with its carets replaced by spaces."""
    variants = {text, text.upper(), text.lower(), text.replace("^", " ")}
    found: list[bytes] = []
    for v in variants:
        for enc in ("utf-8", "utf-16-le", "utf-16-be", "latin-1"):
            try:
                found.append(v.encode(enc))
            except UnicodeEncodeError:
                continue
    return found


def surviving(data: bytes, originals: dict[str, str]) -> list[str]:
    """Names of the originals any of whose encodings still occurs anywhere in ``data``."""
    return [name for name, value in originals.items() if any(e in data for e in encodings(value))]

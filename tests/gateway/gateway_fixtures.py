"""Builders shared by the gateway tests: a DICOM full of identifiers, and the byte scanner."""

from __future__ import annotations

import io
import struct

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


# ---------------------------------------------------------------- PHI planted everywhere
# Where a careless clinic or a hostile sender can put an identifier in a DICOM OPT file. Each
# place takes one string; :func:`plant_dicom` puts it there in a valid file from qmroct's writer.
DICOM_PLACES = (
    "patient_name",
    "patient_id",
    "other_ids",
    "reason_for_requested_procedure",
    "text_value_in_unlisted_sequence",
    "text_value_in_kept_sequence",
    "unknown_public_tag",
    "table_listed_comment",
    "operator",
    "private_block",
    "private_claims_safe_creator",
    "private_safe_element_with_text",
    "private_safe_element_wrong_vr",
    "private_safe_creator_other_group",
    "private_in_nested_item",
    "deep_nested_person",
    "file_meta_implementation_version",
    "file_meta_source_ae",
    "file_meta_private_information",
    "preamble",
    "study_description",
    "institution",
)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def plant_dicom(planted: dict[str, str], *, birth_date: str = "19630417") -> bytes:
    """A valid OPT file (qmroct's writer, with its safe private block) carrying each value of
    ``planted`` at the place named by its key (one of :data:`DICOM_PLACES`)."""
    import pydicom
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.dicom_opt import write_opt

    scan = make_phantom("line", seed=1)[0]
    ds = pydicom.dcmread(io.BytesIO(write_opt(scan, patient_id="MRN-PLANT-0001")))
    ds.PatientBirthDate = birth_date
    for place, value in planted.items():
        if place == "patient_name":
            ds.PatientName = value
        elif place == "patient_id":
            ds.PatientID = value
        elif place == "other_ids":
            ds.OtherPatientIDs = value
        elif place == "reason_for_requested_procedure":
            ds.add_new(0x00401002, "LO", value)
        elif place == "text_value_in_unlisted_sequence":
            ds.add_new(0x0040A730, "SQ", Sequence([_item(ValueType="TEXT", TextValue=value)]))
        elif place == "text_value_in_kept_sequence":
            region = ds.get("AnatomicRegionSequence") or Sequence([_item(CodeValue="T-AA610")])
            region[0].TextValue = value
            ds.AnatomicRegionSequence = region
        elif place == "unknown_public_tag":
            ds.add_new(0x0010ABCD, "LO", value)
        elif place == "table_listed_comment":
            ds.PatientComments = value
        elif place == "operator":
            ds.OperatorsName = value
        elif place == "private_block":
            ds.private_block(0x0009, "ACME OCT 1.0", create=True).add_new(0x01, "LO", value)
        elif place == "private_claims_safe_creator":
            # A block whose creator string is the safe one, at an element the block never defines.
            ds.private_block(0x0071, "QMROCT 1.0", create=True).add_new(0x40, "LO", value)
        elif place == "private_safe_element_with_text":
            block = ds.private_block(0x0071, "QMROCT 1.0", create=True)
            block.add_new(0x15, "LO", value)  # "pattern": a defined element, a value it never holds
        elif place == "private_safe_element_wrong_vr":
            block = ds.private_block(0x0071, "QMROCT 1.0", create=True)
            block.add_new(0x19, "LT", value)  # "bscan_um" is FD
        elif place == "private_safe_creator_other_group":
            ds.private_block(0x0073, "QMROCT 1.0", create=True).add_new(0x10, "LO", value)
        elif place == "private_in_nested_item":
            ds.SharedFunctionalGroupsSequence[0].add_new(0x00191001, "LO", value)
        elif place == "deep_nested_person":
            frame = ds.PerFrameFunctionalGroupsSequence[0]
            frame.FrameContentSequence[0].ReferencedImageSequence = Sequence(
                [_item(ReferencedSOPClassUID=OPT_SOP_CLASS, PersonName=value)]
            )
        elif place == "file_meta_implementation_version":
            ds.file_meta.ImplementationVersionName = value[:16]
        elif place == "file_meta_source_ae":
            ds.file_meta.SourceApplicationEntityTitle = value[:16]
        elif place == "file_meta_private_information":
            ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
            ds.file_meta.PrivateInformation = value.encode().ljust(len(value) + len(value) % 2)
        elif place == "preamble":
            ds.preamble = value.encode()[:128].ljust(128, b"\0")
        elif place == "study_description":
            ds.StudyDescription = value
        elif place == "institution":
            ds.InstitutionName = value
        else:
            raise KeyError(place)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


E2E_PLACES = ("e2e_first_name", "e2e_surname", "e2e_patient_id", "e2e_diagnosis")


def e2e_chunk(kind: int, body: bytes) -> bytes:
    """One E2E data chunk: the 60-byte MDbData header (size at 24, type at 52) and its body."""
    header = bytearray(60)
    header[0:8] = b"MDbData\0"
    struct.pack_into("<I", header, 24, len(body))
    struct.pack_into("<I", header, 52, kind)
    return bytes(header) + body


def plant_e2e(planted: dict[str, str]) -> bytes:
    """A minimal E2E file: a patient chunk (type 9: first name at 0, surname at 31, patient id
    at 102) and a diagnosis chunk (type 17), holding the planted values."""
    patient = bytearray(131)
    for place, at, width in (
        ("e2e_first_name", 0, 31),
        ("e2e_surname", 31, 66),
        ("e2e_patient_id", 102, 25),
    ):
        raw = planted.get(place, "").encode()[: width - 1]
        patient[at : at + len(raw)] = raw
    diagnosis = planted.get("e2e_diagnosis", "none").encode() + b"\0"
    return b"CMDb" + bytes(96) + e2e_chunk(9, bytes(patient)) + e2e_chunk(17, diagnosis)

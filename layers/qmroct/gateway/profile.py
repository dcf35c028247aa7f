"""What a de-identified DICOM file may keep: the PS3.15 table as data, and the study's allow-list.

Two lists decide the fate of every element, at any depth:

1. :data:`STUDY_KEEP`, the attributes the study needs (the OPT image, its pixels and geometry,
   the multi-frame functional groups the reader uses, and the Type 1/2 attributes that keep the
   file a valid instance). Anything not on it, public or private, known or unknown, is removed.
2. PS3.15 Annex E Table E.1-1 (``data/ps3.15_table_e1-1.csv``, the standard's own table with
   its source cited in the file): an attribute on the allow-list that the table lists gets the
   table's Basic Profile action. Where the table gives a choice (``X/Z``, ``Z/D``...), the first,
   most removing, option is taken, except that an allow-listed attribute is kept present and
   emptied (``Z``) rather than removed.

Action codes (PS3.15 E.1.1): ``D`` dummy value of the VR, ``Z`` zero-length value, ``X`` remove,
``K`` keep, ``U`` a UID replaced consistently within the set of instances.

Private attributes follow the Retain Safe Private Option (PS3.15 E.3.10) strictly: an element is
kept only when its block's creator and its element offset are both in :data:`SAFE_PRIVATE`, and
its VR, length and value fit what that element is defined to hold. A block whose creator string
merely claims to be a safe one keeps nothing else.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from qmroct.oct.dicom_tags import PRIVATE, PRIVATE_CREATOR, PRIVATE_GROUP
from qmroct.oct.model import IntensityScale, ScanPattern
from qmroct.oct.readers.detect import FORMATS
from qmroct.oct.readers.source import MAX_BSCANS

TABLE_FILE = "ps3.15_table_e1-1.csv"


@cache
def basic_profile() -> dict[str, str]:
    """Table E.1-1: tag as 8 upper-case hex digits (``X`` for a wildcard digit) -> action code."""
    text = resources.files("qmroct.gateway").joinpath("data", TABLE_FILE).read_text("utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {row["tag"]: row["basic"] for row in rows}


def profile_action(tag: int) -> str | None:
    """The Basic Profile action code Table E.1-1 gives this (public) tag, or None if unlisted."""
    table = basic_profile()
    text = f"{tag:08X}"
    code = table.get(text)
    if code is not None:
        return code
    for pattern, action in _wildcards().items():
        if pattern.fullmatch(text):
            return action
    return None


@cache
def _wildcards() -> dict[re.Pattern[str], str]:
    return {
        re.compile(tag.replace("X", "[0-9A-F]")): code
        for tag, code in basic_profile().items()
        if "X" in tag
    }


def first_action(code: str) -> str:
    """The action to apply for a table code: the first, most removing, of the choices."""
    return code.split("/", 1)[0].rstrip("*")


# The attributes the study needs, by DICOM keyword. Grouped by the IOD module they come from
# (PS3.3 A.41 Ophthalmic Tomography Image IOD and the multi-frame functional groups of C.7.6.16).
STUDY_KEEP: frozenset[str] = frozenset(
    {
        # Patient, General Study, General Series (identifiers here are replaced by pseudonyms)
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
        "ReferringPhysicianName", "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality",
        # Frame of Reference, General Equipment, SOP Common
        "FrameOfReferenceUID", "PositionReferenceIndicator", "Manufacturer",
        "ManufacturerModelName", "SoftwareVersions", "SOPClassUID", "SOPInstanceUID",
        "SpecificCharacterSet", "InstanceNumber",
        # Image Pixel
        "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
        "BitsStored", "HighBit", "PixelRepresentation", "PixelData", "PlanarConfiguration",
        "NumberOfFrames", "PixelPaddingValue", "LossyImageCompression",
        "LossyImageCompressionRatio", "LossyImageCompressionMethod", "PresentationLUTShape",
        "RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth",
        # Multi-frame Functional Groups, Multi-frame Dimension
        "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
        "PixelMeasuresSequence", "PixelSpacing", "SliceThickness", "FrameContentSequence",
        "StackID", "InStackPositionNumber", "DimensionIndexValues", "PlanePositionSequence",
        "ImagePositionPatient", "PlaneOrientationSequence", "ImageOrientationPatient",
        "OphthalmicFrameLocationSequence", "ReferenceCoordinates", "OphthalmicImageOrientation",
        "FrameAnatomySequence", "FrameLaterality", "DimensionOrganizationSequence",
        "DimensionOrganizationUID", "DimensionIndexSequence", "DimensionIndexPointer",
        "FunctionalGroupPointer", "ContentDate", "ContentTime", "ConcatenationFrameOffsetNumber",
        "ConcatenationUID", "InConcatenationNumber", "InConcatenationTotalNumber",
        "SOPInstanceUIDOfConcatenationSource",
        # Ophthalmic Tomography Image, Acquisition Parameters, Parameters
        "ImageType", "AcquisitionDateTime", "AcquisitionDuration", "AcquisitionNumber",
        "BurnedInAnnotation", "RecognizableVisualFeatures", "ImageLaterality",
        "AnatomicRegionSequence", "AxialLengthOfTheEye", "HorizontalFieldOfView",
        "EmmetropicMagnification", "IntraOcularPressure", "PupilDilated",
        "RefractiveStateSequence", "SphericalLensPower", "CylinderLensPower", "CylinderAxis",
        "DetectorType", "AcquisitionDeviceTypeCodeSequence", "LightPathFilterTypeStackCodeSequence",
        "IlluminationTypeCodeSequence", "IlluminationWaveLength", "IlluminationPower",
        "IlluminationBandwidth", "DepthSpatialResolution", "MaximumDepthDistortion",
        "AlongScanSpatialResolution", "MaximumAlongScanDistortion", "AcrossScanSpatialResolution",
        "MaximumAcrossScanDistortion", "ReferencedImageSequence", "ReferencedSOPClassUID",
        "ReferencedSOPInstanceUID", "PurposeOfReferenceCodeSequence",
        # Code Sequence Macro (inside the kept sequences)
        "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
        # De-identification, written by the de-identifier itself
        "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    }
)  # fmt: skip

# Kept UI attributes that name a class or a syntax, not an instance: their registered values stay.
CLASS_UID_KEYWORDS: frozenset[str] = frozenset(
    {"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID"}
)


@dataclass(frozen=True)
class SafePrivate:
    """One private element the Retain Safe Private Option keeps: its VR, its longest value in
    bytes and, for strings, the only values it may hold."""

    vr: str
    max_bytes: int
    values: frozenset[str] | None = None


def _choices(*names: str) -> frozenset[str]:
    return frozenset(names)


_PRIVATE_SPEC: dict[str, SafePrivate] = {
    "slope": SafePrivate("FD", 8),
    "scale": SafePrivate("LO", 16, _choices(*(s.value for s in IntensityScale))),
    "no_data": SafePrivate("US", 2),
    "device_quality": SafePrivate("FD", 8 * MAX_BSCANS),
    "device_quality_kind": SafePrivate("LO", 16, _choices("spectralis_q", "topcon_fast_q2")),
    "pattern": SafePrivate("LO", 8, _choices(*(p.value for p in ScanPattern))),
    "ring": SafePrivate("FD", 24),
    "source_format": SafePrivate("LO", 16, _choices(*FORMATS)),
    "fundus_spacing": SafePrivate("FD", 16),
    "bscan_um": SafePrivate("FD", 8),
}

# Retain Safe Private Option (PS3.15 E.3.10): (group, creator) -> element offset -> what fits.
# qmroct's own OPT block holds only the pixel scale, no-data value, scan pattern, ring geometry
# and device quality the readers need.
SAFE_PRIVATE: dict[tuple[int, str], dict[int, SafePrivate]] = {
    (PRIVATE_GROUP, PRIVATE_CREATOR): {
        offset: _PRIVATE_SPEC[key] for key, (offset, _vr) in PRIVATE.items()
    }
}

"""DICOM Ophthalmic Tomography Image Storage (SOP 1.2.840.10008.5.1.4.1.1.77.1.5.4) writer.

Pixels are stored as 16-bit unsigned integers (the OPT IOD allows 8 or 16 bits; it has no float
pixel data and no real-world value mapping). Nothing is rescaled for display: stored value ``k``
means linear value ``k * slope``, where ``slope`` is a power of two recorded in the private block
(:mod:`qmroct.oct.dicom_tags`), so the mapping is exact in float32. The writer picks the smallest
power of two that fits the data's maximum into 0..65534 (65535 marks no-data, also declared as
Pixel Padding Value). Values already on that grid, such as every phantom pixel, round-trip
bit-identically; other float data is rounded to the grid, and the private block says so
(``exact = NO`` in Derivation Description). Display-valued scans (uint8/uint16) use slope 1.

Every Type 1 and Type 2 attribute of the IOD's mandatory modules is written; the functional
group macros the IOD requires are placed once, in the shared or the per-frame groups.
"""

from __future__ import annotations

import io
import math
from datetime import datetime

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from qmroct import __version__
from qmroct.oct.dicom_tags import OPT_SOP_CLASS, PRIVATE, PRIVATE_CREATOR, PRIVATE_GROUP
from qmroct.oct.model import IntensityScale, Scan

NO_DATA = 65535
MAX_STORED = 65534


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue = value
    ds.CodingSchemeDesignator = scheme
    ds.CodeMeaning = meaning
    return ds


def quantise(bscans: np.ndarray, scale: IntensityScale) -> tuple[np.ndarray, float, bool]:
    """(stored uint16, slope, exact): stored * slope reproduces ``bscans`` when exact."""
    finite = np.isfinite(bscans)
    top = float(bscans[finite].max()) if finite.any() else 0.0
    if scale in (IntensityScale.DISPLAY_UINT8, IntensityScale.DISPLAY_UINT16):
        slope = 1.0
    else:
        # Smallest power of two with top / slope <= MAX_STORED; powers of two scale exactly.
        slope = 2.0 ** math.ceil(math.log2(top / MAX_STORED)) if top > 0 else 2.0**-16
    low = float(bscans[finite].min()) if finite.any() else 0.0
    if low < 0:
        raise ValueError(f"negative intensities ({low}) cannot be stored as unsigned OPT pixels")
    scaled = np.where(finite, bscans, 0).astype(np.float64) / slope
    stored = np.rint(scaled)
    exact = bool(np.all(stored[finite] == scaled[finite]))
    stored = np.clip(stored, 0, MAX_STORED).astype(np.uint16)
    stored[~finite] = NO_DATA
    return stored, slope, exact


def write_opt(scan: Scan, *, patient_id: str = "", study_uid: str | None = None) -> bytes:
    """Encode ``scan`` as one multi-frame DICOM OPT instance and return the file's bytes."""
    meta = scan.meta
    n, h, w = scan.shape
    stored, slope, exact = quantise(scan.bscans, meta.scale)
    now = datetime.now()
    acq = (
        datetime.combine(meta.acquisition_date, datetime.min.time())
        if meta.acquisition_date
        else now
    )
    sop_uid = generate_uid()

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = OPT_SOP_CLASS
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 192"
    # SOP common, patient, study, series, equipment
    ds.SOPClassUID = OPT_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = ""
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.StudyDate = acq.strftime("%Y%m%d")
    ds.StudyTime = acq.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.Modality = "OPT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "qmroct"
    ds.ManufacturerModelName = (meta.device or meta.format)[:64]
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = f"qmroct {__version__}"
    ds.PixelPaddingValue = NO_DATA
    # Ophthalmic Tomography Image module
    ds.ImageType = ["DERIVED", "PRIMARY"] if meta.format == "phantom" else ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionDateTime = acq.strftime("%Y%m%d%H%M%S")
    ds.AcquisitionDuration = 0
    ds.AcquisitionNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.InstanceNumber = 1
    # A concatenation of one instance: the module table lists these as Type 1.
    ds.ConcatenationUID = generate_uid()
    ds.SOPInstanceUIDOfConcatenationSource = sop_uid
    ds.InConcatenationNumber = 1
    ds.InConcatenationTotalNumber = 1
    ds.ConcatenationFrameOffsetNumber = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.NumberOfFrames = n
    if not exact:
        ds.DerivationDescription = f"linear values rounded to multiples of {slope!r}; exact = NO"
    # Acquisition parameters (Type 2: present, empty when unknown)
    ds.EmmetropicMagnification = None
    ds.IntraOcularPressure = None
    ds.HorizontalFieldOfView = None
    ds.PupilDilated = None
    ds.RefractiveStateSequence = Sequence()
    ds.AxialLengthOfTheEye = None
    ds.DetectorType = "CCD"
    ds.AcquisitionDeviceTypeCodeSequence = Sequence(
        [_code("392012008", "SCT", "Optical Coherence Tomography Scanner")]
    )
    ds.LightPathFilterTypeStackCodeSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()
    laterality = {"OD": "R", "OS": "L"}.get(meta.laterality or "", "U")
    ds.ImageLaterality = laterality
    retina = _code("5665001", "SCT", "Retina")
    ds.AnatomicRegionSequence = Sequence([retina])
    # Multi-frame dimension: frames are ordered by their position in the stack.
    dim_uid = generate_uid()
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    idx = Dataset()
    idx.DimensionOrganizationUID = dim_uid
    idx.DimensionIndexPointer = pydicom.tag.Tag("InStackPositionNumber")
    idx.FunctionalGroupPointer = pydicom.tag.Tag("FrameContentSequence")
    ds.DimensionIndexSequence = Sequence([idx])
    ds.SharedFunctionalGroupsSequence = Sequence([_shared_groups(scan, laterality)])
    ds.PerFrameFunctionalGroupsSequence = Sequence(_frame_groups(scan, generate_uid()))
    _private_block(ds, scan, slope)
    ds.PixelData = stored.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _shared_groups(scan: Scan, laterality: str) -> Dataset:
    sp = scan.meta.spacing
    g = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [sp.axial_um / 1000, sp.lateral_um / 1000]  # row spacing, column spacing
    pm.SliceThickness = (sp.bscan_um or sp.lateral_um) / 1000
    g.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    # Rows run in depth (z) and columns across the fundus (x): row direction x, column direction z.
    po.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    g.PlaneOrientationSequence = Sequence([po])
    fa = Dataset()
    fa.AnatomicRegionSequence = Sequence([_code("5665001", "SCT", "Retina")])
    fa.FrameLaterality = laterality
    g.FrameAnatomySequence = Sequence([fa])
    return g


def _frame_groups(scan: Scan, fundus_uid: str) -> list[Dataset]:
    """Per-frame position; ``fundus_uid`` names the SLO the B-scan positions refer to."""
    sp = scan.meta.spacing
    positions = scan.meta.bscan_positions
    out = []
    for i in range(scan.shape[0]):
        g = Dataset()
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = i + 1
        fc.DimensionIndexValues = [i + 1]
        g.FrameContentSequence = Sequence([fc])
        pp = Dataset()
        pp.ImagePositionPatient = [0.0, i * (sp.bscan_um or 0.0) / 1000, 0.0]
        g.PlanePositionSequence = Sequence([pp])
        if positions and i < len(positions):
            p = positions[i]
            loc = Dataset()
            loc.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
            loc.ReferencedSOPInstanceUID = fundus_uid
            # (row, column) pairs on the fundus: start then end of the B-scan.
            loc.ReferenceCoordinates = [p.start.y, p.start.x, p.end.y, p.end.x]
            loc.OphthalmicImageOrientation = "LINEAR"
            g.OphthalmicFrameLocationSequence = Sequence([loc])
        out.append(g)
    return out


def _private_block(ds: Dataset, scan: Scan, slope: float) -> None:
    meta = scan.meta
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    values: dict[str, object] = {
        "slope": slope,
        "scale": meta.scale.value,
        "no_data": NO_DATA,
        "pattern": meta.pattern.value,
        "source_format": meta.format,
    }
    if meta.spacing.bscan_um is not None:
        values["bscan_um"] = meta.spacing.bscan_um
    if meta.device_quality:
        values["device_quality"] = [float("nan") if q is None else q for q in meta.device_quality]
        values["device_quality_kind"] = meta.device_quality_kind or ""
    if meta.ring:
        values["ring"] = [meta.ring.center.x, meta.ring.center.y, meta.ring.radius_px]
    if meta.fundus_spacing_um:
        values["fundus_spacing"] = [
            meta.fundus_spacing_um.lateral_um,
            meta.fundus_spacing_um.axial_um,
        ]
    for key, value in values.items():
        offset, vr = PRIVATE[key]
        block.add_new(offset, vr, value)

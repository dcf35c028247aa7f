"""DICOM OPT and Secondary Capture writers, and the .vol writer, through our own readers."""

from __future__ import annotations

import io
import json
import pkgutil

import numpy as np
import pydicom
import pytest
from highdicom._standard_utils import check_required_attributes
from qmroct.oct.phantom import make_phantom
from qmroct.oct.readers import read_scan
from qmroct.oct.writers.dicom_opt import quantise, write_opt
from qmroct.oct.writers.heyex_vol import write_vol
from qmroct.oct.writers.secondary_capture import write_secondary_capture

OPT = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
# Functional group macros that the OPT IOD requires in every frame (shared or per frame).
REQUIRED_GROUPS = (
    "PixelMeasuresSequence",
    "FrameContentSequence",
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "FrameAnatomySequence",
)
FUNCTIONAL_GROUPS_MODULE = "ophthalmic-tomography-image-multi-frame-functional-groups"


def _table(name: str) -> dict:
    return json.loads(pkgutil.get_data("highdicom", f"_standard/{name}.json"))


@pytest.fixture(scope="module")
def opt_volume() -> pydicom.Dataset:
    scan, _, _ = make_phantom("volume", seed=2)
    return pydicom.dcmread(io.BytesIO(write_opt(scan)))


def test_every_type1_and_type2_attribute_of_the_opt_iod(opt_volume: pydicom.Dataset) -> None:
    iod = _table("sop_class_iod_map")[OPT]
    modules = [m["key"] for m in _table("iod_module_map")[iod] if m["usage"] == "M"]
    assert "ophthalmic-tomography-image" in modules and len(modules) >= 14
    for module in modules:
        if module == FUNCTIONAL_GROUPS_MODULE:
            continue  # its macros are conditional per group; checked below
        check_required_attributes(opt_volume, module, recursive=True)
    check_required_attributes(opt_volume, FUNCTIONAL_GROUPS_MODULE, recursive=False)
    shared = opt_volume.SharedFunctionalGroupsSequence[0]
    for frame in opt_volume.PerFrameFunctionalGroupsSequence:
        for group in REQUIRED_GROUPS:
            # A macro lives either in the shared item or in every per-frame item, never both.
            assert (group in shared) != (group in frame), group
            where = shared if group in shared else frame
            base = [
                "SharedFunctionalGroupsSequence"
                if group in shared
                else "PerFrameFunctionalGroupsSequence",
                group,
            ]
            for item in where[group].value:
                check_required_attributes(item, FUNCTIONAL_GROUPS_MODULE, base_path=base)


def test_the_attribute_check_catches_a_missing_attribute(opt_volume: pydicom.Dataset) -> None:
    ds = pydicom.Dataset(opt_volume)
    del ds.DetectorType
    with pytest.raises(AttributeError, match="DetectorType"):
        check_required_attributes(ds, "ophthalmic-tomography-parameters", recursive=False)


def test_opt_values(opt_volume: pydicom.Dataset) -> None:
    ds = opt_volume
    assert ds.SOPClassUID == OPT and ds.Modality == "OPT"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (int(ds.NumberOfFrames), ds.Rows, ds.Columns) == (16, 256, 256)
    assert (ds.BitsAllocated, ds.PixelRepresentation, ds.PhotometricInterpretation) == (
        16,
        0,
        "MONOCHROME2",
    )
    assert ds.LossyImageCompression == "00"
    assert ds.ImageLaterality == "R"
    assert len(ds.PerFrameFunctionalGroupsSequence) == 16


@pytest.mark.parametrize("pattern", ["volume", "line", "ring"])
def test_phantoms_round_trip_bit_identically(pattern: str) -> None:
    scan, _, _ = make_phantom(pattern, seed=5)
    for data, name in ((write_opt(scan), "p.dcm"), (write_vol(scan), "p.vol")):
        back = read_scan(data, name=name)
        assert np.array_equal(back.bscans, scan.bscans), name
        assert back.meta.pattern == scan.meta.pattern
        assert back.meta.spacing.axial_um == pytest.approx(scan.meta.spacing.axial_um)
        assert back.meta.spacing.lateral_um == pytest.approx(scan.meta.spacing.lateral_um)
        assert back.meta.device_quality == pytest.approx(scan.meta.device_quality, abs=1e-4)
        assert len(back.meta.bscan_positions) == scan.meta.n_bscans
        if pattern == "ring":
            assert back.meta.ring.center.x == pytest.approx(scan.meta.ring.center.x, abs=1e-6)
            assert back.meta.ring.radius_px == pytest.approx(scan.meta.ring.radius_px, abs=1e-6)


def test_vol_writer_keeps_device_segmentation_fundus_and_nan() -> None:
    scan, _, truth = make_phantom("line", seed=1)
    scan.bscans[0, 0, :5] = np.nan
    back = read_scan(write_vol(scan), name="p.vol")
    assert np.isnan(back.bscans[0, 0, :5]).all()
    assert np.array_equal(back.fundus, scan.fundus)
    assert np.allclose(back.segmentation["ILM"], truth["ILM"])
    assert np.allclose(back.segmentation["BM"], truth["BM"])


def test_vol_written_here_reads_in_eyepy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from eyepy.io.he.vol_reader import HeVolReader

    scan, _, _ = make_phantom("ring", seed=3)
    p = tmp_path / "ring.vol"
    p.write_bytes(write_vol(scan))
    parsed = HeVolReader(p).parsed_file
    assert parsed.scan_pattern == 2
    assert np.array_equal(parsed.bscans[0].data, scan.bscans[0])


def test_quantisation_is_exact_only_on_the_grid() -> None:
    from qmroct.oct.model import IntensityScale

    on_grid = (np.arange(100, dtype=np.float32) * 2.0**-16).reshape(1, 10, 10)
    stored, slope, exact = quantise(on_grid, IntensityScale.LINEAR)
    assert exact and np.array_equal(stored * np.float32(slope), on_grid)
    off_grid = on_grid + np.float32(1e-7)
    assert quantise(off_grid, IntensityScale.LINEAR)[2] is False
    with pytest.raises(ValueError, match="negative"):
        quantise(-on_grid - 1, IntensityScale.LINEAR)


def _pydicom_sc(rgb: np.ndarray, meta, title: str, uids, now) -> bytes:
    """The same instance built and encoded by pydicom, attribute by keyword."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from qmroct.oct.writers import secondary_capture as sc

    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sc.SC_SOP_CLASS
    fm.MediaStorageSOPInstanceUID = uids[2]
    fm.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    fm.ImplementationClassUID = sc.IMPLEMENTATION_UID
    fm.ImplementationVersionName = sc.IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = fm
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID, ds.SOPInstanceUID = sc.SC_SOP_CLASS, uids[2]
    ds.StudyDate, ds.StudyTime = "", ""
    ds.ContentDate, ds.ContentTime = date, time
    ds.AccessionNumber = ""
    ds.Modality = "OT"
    ds.ConversionType = "DI"
    ds.Manufacturer = "qmroct"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = title
    ds.DerivationDescription = f"quality picture of {meta.source}"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", "", "", ""
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    ds.SoftwareVersions = f"qmroct {__import__('qmroct').__version__}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids[0], uids[1]
    ds.StudyID = ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.PatientOrientation = ["L", "F"]
    ds.Laterality = {"OD": "R", "OS": "L"}[meta.laterality]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_secondary_capture_encodes_as_pydicom_does() -> None:
    from datetime import datetime

    scan, _, _ = make_phantom("line")
    assert scan.meta.laterality in ("OD", "OS")
    rgb = np.random.default_rng(1).integers(0, 255, (41, 61, 3), dtype=np.uint8)  # odd size
    uids, now = ("2.25.1", "2.25.22", "2.25.333"), datetime(2026, 1, 2, 3, 4, 5, 678901)
    ours = write_secondary_capture(rgb, source=scan.meta, title="signal", uids=uids, now=now)
    assert ours == _pydicom_sc(rgb, scan.meta, "signal", uids, now)


def test_secondary_capture_round_trip() -> None:
    scan, _, _ = make_phantom("line")
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    ds = pydicom.dcmread(io.BytesIO(write_secondary_capture(rgb, source=scan.meta, title="signal")))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert np.array_equal(ds.pixel_array, rgb)
    assert ds.SeriesDescription == "signal"
    assert ds.Laterality == {"OD": "R", "OS": "L"}.get(scan.meta.laterality or "", ds.Laterality)
    # Every mandatory module of the SC IOD, by highdicom's tables of the standard.
    iod = _table("sop_class_iod_map")[ds.SOPClassUID]
    modules = [m["key"] for m in _table("iod_module_map")[iod] if m["usage"] == "M"]
    assert {"patient", "general-study", "general-series", "sc-equipment", "image-pixel"} <= set(
        modules
    )
    for module in modules:
        check_required_attributes(ds, module, recursive=True)
    # Odd-sized pixel data is padded to even length and still reads back.
    odd = rgb[:3, :3]
    back = pydicom.dcmread(io.BytesIO(write_secondary_capture(odd, source=None, title="t")))
    assert np.array_equal(back.pixel_array, odd) and "Laterality" not in back
    assert "SpecificCharacterSet" not in back
    # Text beyond ASCII goes as UTF-8, and the instance says so.
    utf8 = write_secondary_capture(odd, source=None, title="Signal µm Ø")
    back = pydicom.dcmread(io.BytesIO(utf8))
    assert back.SpecificCharacterSet == "ISO_IR 192" and back.SeriesDescription == "Signal µm Ø"
    with pytest.raises(ValueError, match="RGB"):
        write_secondary_capture(rgb[..., 0], source=None, title="x")

"""Readers on every real sample file, and typed errors on bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from qmroct.errors import CorruptScan, ScanTooLarge, UnsupportedFormat
from qmroct.oct.model import IntensityScale, ScanPattern
from qmroct.oct.readers import FORMATS, detect_format, read_scan

VOL_LINE = "heidelberg_vol/Willis_B_716_0.vol"
VOL_RING = "heidelberg_vol/Willis_B_716_2.vol"
VOL_EYEPY = "synthetic_fixtures/eyepy_heyex_vol/test_volume.vol"
E2E = "heidelberg_e2e/e2e_minimized.E2E"
FDA = "topcon/fda_minimized.fda"
FDS = "topcon/fds_minimized.fds"
XML_FOLDER = "synthetic_fixtures/eyepy_heyex_xml"
ALL_SAMPLES = (VOL_LINE, VOL_RING, VOL_EYEPY, E2E, FDA, FDS, XML_FOLDER)


@pytest.mark.parametrize("rel", ALL_SAMPLES)
def test_every_sample_reads_to_a_consistent_scan(samples_dir: Path, rel: str) -> None:
    scan = read_scan(samples_dir / rel)
    m = scan.meta
    assert scan.bscans.dtype == np.float32
    assert scan.shape == (m.n_bscans, m.height, m.width)
    assert np.isfinite(scan.bscans).any()
    assert m.format in FORMATS
    assert m.spacing.lateral_um > 0 and m.spacing.axial_um > 0
    for name, rows in scan.segmentation.items():
        assert rows.shape == (m.n_bscans, m.width), name


def test_spectralis_line_scan_facts(samples_dir: Path) -> None:
    scan = read_scan(samples_dir / VOL_LINE)
    m = scan.meta
    assert (m.format, m.pattern, m.scale) == ("heyex_vol", ScanPattern.LINE, IntensityScale.LINEAR)
    assert scan.shape == (1, 496, 768)
    assert m.laterality == "OD"
    assert m.device_quality is not None and m.device_quality[0] == pytest.approx(44.6, abs=0.05)
    assert m.device_quality_kind == "spectralis_q"
    assert scan.fundus is not None and scan.fundus.shape == (768, 768)
    assert m.spacing.axial_um == pytest.approx(3.87, abs=0.01)
    # The line runs across the SLO: 9.08 mm at 11.82 um per SLO pixel.
    p = m.bscan_positions[0]
    assert p.end.x - p.start.x == pytest.approx(768, abs=1)
    assert float(np.nanmax(scan.bscans)) <= 1.0


def test_spectralis_ring_scan_geometry_from_bscan_header(samples_dir: Path) -> None:
    scan = read_scan(samples_dir / VOL_RING)
    m = scan.meta
    assert m.pattern is ScanPattern.RING
    assert m.device_quality[0] == pytest.approx(31.3, abs=0.05)
    assert m.ring is not None
    # Centre = the header's end point in mm over the SLO pixel size; radius 1.8 mm (3.6 mm ring).
    assert m.ring.center.x == pytest.approx(5.58824 / 0.0117154, abs=0.5)
    assert m.ring.center.y == pytest.approx(4.03010 / 0.0117154, abs=0.5)
    assert m.ring.radius_mm == pytest.approx(1.7995, abs=0.001)
    # The circumference equals the B-scan's width in mm: the geometry is self-consistent.
    assert 2 * np.pi * m.ring.radius_mm == pytest.approx(
        768 * m.spacing.lateral_um / 1000, rel=1e-3
    )
    assert {"ILM", "BM", "RNFL"} <= set(scan.segmentation)
    ilm, bm = scan.segmentation["ILM"], scan.segmentation["BM"]
    assert np.nanmedian(bm - ilm) > 40  # the device's retina is tens of pixels thick


def test_spectralis_no_data_becomes_nan(samples_dir: Path) -> None:
    data = bytearray((samples_dir / VOL_LINE).read_bytes())
    first_pixel = 2048 + 768 * 768 + 55296
    data[first_pixel : first_pixel + 8] = struct.pack("<2f", *[np.finfo(np.float32).max] * 2)
    scan = read_scan(bytes(data), name="flt_max.vol")
    assert np.isnan(scan.bscans[0, 0, :2]).all()
    assert np.isfinite(scan.bscans[0, 0, 2])


def test_e2e_decodes_heyex_float16_to_linear(samples_dir: Path) -> None:
    scan = read_scan(samples_dir / E2E)
    assert scan.meta.format == "heyex_e2e"
    assert scan.shape == (1, 496, 512)
    assert scan.meta.scale is IntensityScale.LINEAR
    assert float(np.nanmin(scan.bscans)) >= 0.0 and float(np.nanmax(scan.bscans)) <= 2.0
    assert "lateral" in str(scan.meta.extra["spacing_assumed"])


def test_topcon_fda_with_fast_q2_quality(samples_dir: Path) -> None:
    scan = read_scan(samples_dir / FDA)
    m = scan.meta
    assert (m.format, m.scale) == ("topcon_fda", IntensityScale.DISPLAY_UINT8)
    assert scan.shape == (1, 650, 512)
    assert m.device_quality_kind == "topcon_fast_q2"
    assert m.device_quality == [pytest.approx(38.106, abs=0.01)]
    assert len([k for k in m.extra if k.startswith("topcon_fast_q2_")]) == 6
    assert m.spacing.axial_um == pytest.approx(3.5)
    assert m.laterality == "OS"


def test_topcon_fds_small_volume(samples_dir: Path) -> None:
    scan = read_scan(samples_dir / FDS)
    assert scan.meta.format == "topcon_fds"
    assert scan.meta.scale is IntensityScale.DISPLAY_UINT16
    assert scan.shape == (4, 3, 2)


def test_topcon_works_on_this_numpy(samples_dir: Path) -> None:
    # oct-converter's binary np.fromstring is gone in NumPy >= 2.3; the shim must cover it
    # without changing numpy itself.
    from qmroct.oct.readers import octconverter_compat

    octconverter_compat.install()
    assert np.fromstring is not octconverter_compat._NumpyWithBinaryFromstring.fromstring
    assert read_scan(samples_dir / FDS).shape == (4, 3, 2)


def test_heyex_xml_folder_with_positions_and_layers(samples_dir: Path) -> None:
    scan = read_scan(samples_dir / XML_FOLDER)
    m = scan.meta
    assert m.format == "image_folder" and scan.shape == (10, 40, 50)
    assert m.device_quality is not None and len(m.device_quality) == 10
    assert m.bscan_positions is not None and len(m.bscan_positions) == 10
    assert {"ILM", "BM"} <= set(scan.segmentation)


def test_bytes_input_matches_path_input(samples_dir: Path) -> None:
    path = samples_dir / VOL_RING
    a = read_scan(path)
    b = read_scan(path.read_bytes(), name="ring.vol")
    assert np.array_equal(a.bscans, b.bscans)
    assert b.meta.source == "ring.vol"


def test_json_sidecar_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(tmp_path / f"b{i}.png")
    side = {"files": ["b0.png", "b1.png", "b2.png"], "pattern": "volume",
            "spacing": {"lateral_um": 10, "axial_um": 4, "bscan_um": 100}, "laterality": "OS"}  # fmt: skip
    (tmp_path / "scan.json").write_text(json.dumps(side))
    scan = read_scan(tmp_path)
    assert scan.shape == (3, 20, 30)
    assert scan.meta.scale is IntensityScale.DISPLAY_UINT8
    side["files"] = ["../escape.png"]
    (tmp_path / "scan.json").write_text(json.dumps(side))
    with pytest.raises(CorruptScan, match="not an image inside the folder"):
        read_scan(tmp_path)


# ---- typed errors ----


def test_detect_format_by_magic_not_extension() -> None:
    assert detect_format(b"HSF-OCT-103\x00" + bytes(200), "x.dcm") == "heyex_vol"
    assert detect_format(b"CMDb" + bytes(200)) == "heyex_e2e"
    assert detect_format(b"FOCTFDA" + bytes(200)) == "topcon_fda"
    assert detect_format(b"FOCTFDS" + bytes(200)) == "topcon_fds"
    assert detect_format(bytes(128) + b"DICM" + bytes(10)) == "dicom_opt"
    with pytest.raises(UnsupportedFormat, match="x.vol"):
        detect_format(b"\x89PNG\r\n\x1a\n" + bytes(200), "x.vol")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.vol"
    p.write_bytes(b"")
    with pytest.raises(UnsupportedFormat, match=r"empty\.vol: empty file"):
        read_scan(p)


@pytest.mark.parametrize("rel", (VOL_LINE, E2E, FDA))
def test_truncated_files(samples_dir: Path, rel: str) -> None:
    data = (samples_dir / rel).read_bytes()
    # .vol exports carry 132 trailing bytes after the last B-scan, so cut deeper than that.
    for cut in (len(data) // 2, len(data) - 200, 300):
        with pytest.raises(CorruptScan) as exc:
            read_scan(data[:cut], name=f"cut_{cut}")
        assert exc.value.path == f"cut_{cut}"


def _vol_with(samples_dir: Path, offset: int, fmt: str, value: float | int) -> bytes:
    data = bytearray((samples_dir / VOL_LINE).read_bytes())
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def test_zero_and_absurd_dimensions(samples_dir: Path) -> None:
    with pytest.raises(CorruptScan, match="zero dimension: size_x"):
        read_scan(_vol_with(samples_dir, 12, "<I", 0), name="zero.vol")
    with pytest.raises(CorruptScan, match="absurd header size: n_bscans"):
        read_scan(_vol_with(samples_dir, 16, "<I", 4_000_000_000), name="huge.vol")


def test_header_declaring_more_pixels_than_the_limit_is_refused(samples_dir: Path) -> None:
    # A small file whose header promises 4096 B-scans of 8192 x 8192: a decompression bomb.
    data = _vol_with(samples_dir, 16, "<I", 4096)
    data = bytearray(data)
    struct.pack_into("<II", data, 20, 8192, 0)
    struct.pack_into("<I", data, 12, 8192)
    with pytest.raises(ScanTooLarge, match="would decode to"):
        read_scan(bytes(data), name="bomb.vol", max_bytes=64 * 1024 * 1024)


def test_file_over_the_size_limit(samples_dir: Path) -> None:
    with pytest.raises(ScanTooLarge, match="over the limit of 1024"):
        read_scan(samples_dir / VOL_LINE, max_bytes=1024)
    with pytest.raises(ScanTooLarge):
        read_scan((samples_dir / VOL_LINE).read_bytes(), max_bytes=1024)


def test_nan_filled_scan(samples_dir: Path) -> None:
    data = bytearray((samples_dir / VOL_LINE).read_bytes())
    start = 2048 + 768 * 768 + 55296
    data[start : start + 496 * 768 * 4] = np.full(
        496 * 768, np.finfo(np.float32).max, "<f4"
    ).tobytes()
    with pytest.raises(CorruptScan, match="no-data"):
        read_scan(bytes(data), name="blank.vol")


def test_topcon_chunk_size_past_the_end(samples_dir: Path) -> None:
    data = bytearray((samples_dir / FDA).read_bytes())
    # The first chunk's size field sits after the 15-byte header, the name length and the name.
    name_len = data[15]
    struct.pack_into("<I", data, 16 + name_len, 0x7FFFFFFF)
    with pytest.raises(CorruptScan, match="truncated"):
        read_scan(bytes(data), name="bad.fda")


def test_non_opt_dicom_is_unsupported() -> None:
    import io

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    with pytest.raises(UnsupportedFormat, match="ct.dcm: .*not Ophthalmic Tomography"):
        read_scan(buf.getvalue(), name="ct.dcm")


def test_gzip_payload_reads_like_the_plain_file():
    import gzip

    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    scan, _, _ = make_phantom("line", seed=3)
    raw = write_vol(scan)
    plain = read_scan(raw, name="p.vol")
    packed = read_scan(gzip.compress(raw), name="p.vol")
    assert np.array_equal(np.nan_to_num(plain.bscans), np.nan_to_num(packed.bscans))


def test_gzip_bomb_is_refused_before_it_is_inflated():
    import gzip

    from qmroct.errors import ScanTooLarge

    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MB of zeros in ~64 kB
    with pytest.raises(ScanTooLarge, match="decompresses past the limit"):
        read_scan(bomb, name="bomb.vol", max_bytes=8 << 20)


def test_truncated_gzip_is_corrupt():
    import gzip

    from qmroct.errors import CorruptScan

    with pytest.raises(CorruptScan, match="gzip"):
        read_scan(gzip.compress(b"HSF-OCT-103" + b"\0" * 5000)[:-20], name="cut.vol")


def test_gzip_with_several_members_reads_whole():
    import gzip

    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    raw = write_vol(make_phantom("line", seed=4)[0])
    half = len(raw) // 2
    # What a streaming compressor writes: one gzip member per block, concatenated.
    packed = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert read_scan(packed, name="m.vol").bscans.shape == read_scan(raw, name="m.vol").bscans.shape


def test_ring_shift_is_read_signed(tmp_path: Path) -> None:
    # Spectralis stores a ring's A-scan shift as a signed 32-bit integer: -9, not 4294967287.
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.readers.heyex_vol import BSCAN_HEADER, FILE_HEADER_BYTES
    from qmroct.oct.writers.heyex_vol import write_vol

    scan, _, _ = make_phantom("ring", seed=0)
    data = bytearray(write_vol(scan, patient_id="P", visit_id="V"))
    slo = scan.fundus.shape[0] * scan.fundus.shape[1]
    at = FILE_HEADER_BYTES + slo + BSCAN_HEADER.fields["shift"][1]
    data[at : at + 4] = struct.pack("<i", -9)
    path = tmp_path / "ring.vol"
    path.write_bytes(bytes(data))
    assert read_scan(path).meta.extra["ring_shift_ascans"] == -9

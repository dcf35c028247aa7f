"""De-identification: no original identifier survives in any output byte."""

from __future__ import annotations

import io
import struct
from datetime import date
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from gateway_fixtures import IDENTIFIERS, identified_dicom, surviving
from qmroct.errors import UnsupportedFormat
from qmroct.gateway.deid import deidentify, deidentify_file
from qmroct.gateway.models import DeidRefused
from qmroct.gateway.profile import (
    CLASS_UID_KEYWORDS,
    SAFE_PRIVATE,
    STUDY_KEEP,
    basic_profile,
    profile_action,
)
from qmroct.gateway.pseudonyms import PseudonymStore


@pytest.fixture
def pseudonyms(tmp_path: Path) -> PseudonymStore:
    return PseudonymStore(tmp_path / "pseudonyms.sqlite3")


def test_allow_list_keywords_are_dicom_keywords() -> None:
    from pydicom.datadict import tag_for_keyword

    unknown = [k for k in STUDY_KEEP | CLASS_UID_KEYWORDS if tag_for_keyword(k) is None]
    assert unknown == []


def test_profile_table_is_the_standard_table() -> None:
    table = basic_profile()
    assert len(table) > 600  # Table E.1-1 lists over 600 attributes
    assert profile_action(0x00401002) == "X"  # Reason for the Requested Procedure
    assert profile_action(0x00100010) == "Z" and profile_action(0x00080018) == "U"
    assert profile_action(0x50021234) == "X" and profile_action(0x60023000) == "X"
    assert profile_action(0x00280010) is None  # Rows: not an identifier


def test_safe_private_spec_matches_the_writer() -> None:
    from qmroct.oct.dicom_tags import PRIVATE, PRIVATE_CREATOR, PRIVATE_GROUP

    spec = SAFE_PRIVATE[(PRIVATE_GROUP, PRIVATE_CREATOR)]
    assert {offset: vr for offset, vr in PRIVATE.values()} == {o: s.vr for o, s in spec.items()}


def test_dicom_no_identifier_survives_anywhere(pseudonyms: PseudonymStore) -> None:
    original = identified_dicom()
    assert surviving(original, IDENTIFIERS) == sorted(IDENTIFIERS, key=list(IDENTIFIERS).index)
    result = deidentify(original, pseudonyms, name="id.dcm")
    assert surviving(result.data, IDENTIFIERS) == []
    assert b"1963" in result.data  # the birth year stays


def test_dicom_rules(pseudonyms: PseudonymStore) -> None:
    result = deidentify(identified_dicom(), pseudonyms, name="id.dcm")
    ds = pydicom.dcmread(io.BytesIO(result.data))
    assert ds.PatientBirthDate == "19630101"
    assert ds.PatientID == result.identity.subject == str(ds.PatientName)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert "PatientAddress" not in ds and "OtherPatientIDs" not in ds
    assert ds.AccessionNumber == "" and ds.StudyID == ""
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID.startswith("2.25.")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # class UIDs are kept
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID == ds.SOPClassUID
    assert ds.Rows == 16 and len(ds.PixelData) == 16 * 12 * 2
    assert result.format == "dicom_opt"


def test_dicom_uids_replaced_consistently(pseudonyms: PseudonymStore) -> None:
    a = pydicom.dcmread(io.BytesIO(deidentify(identified_dicom(), pseudonyms).data))
    b = pydicom.dcmread(io.BytesIO(deidentify(identified_dicom(), pseudonyms).data))
    assert a.StudyInstanceUID == b.StudyInstanceUID != IDENTIFIERS["study_uid"]
    assert a.StudyInstanceUID != a.SeriesInstanceUID
    assert a.ReferencedImageSequence[0].ReferencedSOPInstanceUID == pseudonyms.uid(
        IDENTIFIERS["ref_uid"]
    )


@pytest.mark.parametrize("burned", ["YES", None])
def test_dicom_burned_in_annotation_is_flagged(
    pseudonyms: PseudonymStore, burned: str | None
) -> None:
    data = identified_dicom(burned_in=burned)
    if burned is None:  # absent is fine for OPT; a Secondary Capture without NO is suspicious
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        data = out.getvalue()
    with pytest.raises(DeidRefused, match="not uploaded"):
        deidentify(data, pseudonyms, name="burned.dcm")


def _vol_ids(path: Path) -> dict[str, str]:
    head = path.read_bytes()[:2048]

    def cstr(offset: int, width: int) -> str:
        return head[offset : offset + width].split(b"\0", 1)[0].decode()

    ids = {"id": cstr(104, 16), "patient_id": cstr(140, 21)}
    return {k: v for k, v in ids.items() if v}


@pytest.mark.parametrize("name", ["Willis_B_716_0.vol", "Willis_B_716_2.vol"])
def test_real_vol_samples(
    samples_dir: Path, pseudonyms: PseudonymStore, tmp_path: Path, name: str
) -> None:
    src = samples_dir / "heidelberg_vol" / name
    # The samples have DOB 0; give the copy a real one to prove it is cut to the year.
    data = bytearray(src.read_bytes())
    struct.pack_into("<d", data, 164, 23_500.0)  # 1964-05-04 as an OLE date
    real = _vol_ids(src)
    assert set(real) == {"id", "patient_id"}  # the samples carry an exam id and a patient id
    # Distinctive identifiers too: short real ones like "01234" also occur in SLO pixel bytes.
    data[140:161] = b"Willis-PAT-88412".ljust(21, b"\0")
    data[176:200] = b"VISIT-Hieronymus-9".ljust(24, b"\0")
    copy = tmp_path / name
    copy.write_bytes(bytes(data))
    originals = {"patient_id": "Willis-PAT-88412", "visit": "VISIT-Hieronymus-9"}
    out = tmp_path / "out"
    out.mkdir()
    result = deidentify_file(copy, out, pseudonyms)
    written = next(out.iterdir()).read_bytes()
    assert written == result.data and len(written) == len(data)
    assert surviving(written, originals) == []
    for value in real.values():  # the real ids: gone from the header, pixels left as they were
        assert value.encode() not in written[:2048]
        assert written.count(value.encode()) == bytes(data[2048:]).count(value.encode())
    (dob,) = struct.unpack_from("<d", written, 164)
    assert dob == (date(1964, 1, 1) - date(1899, 12, 30)).days
    assert struct.unpack_from("<i", written, 136) == (0,)  # PID
    # Only header bytes changed: pixels and B-scan headers are untouched.
    assert written[2048:] == bytes(data[2048:])
    # The readers still read it.
    from eyepy.io.he.vol_reader import HeVolReader

    parsed = HeVolReader(out / next(out.iterdir()).name).parsed_file
    assert parsed.size_x == struct.unpack_from("<i", data, 12)[0]
    assert parsed.patient_id == result.identity.subject
    assert len(parsed.bscans) == parsed.n_bscans


def test_vol_same_patient_same_subject(samples_dir: Path, pseudonyms: PseudonymStore) -> None:
    a = deidentify((samples_dir / "heidelberg_vol/Willis_B_716_0.vol").read_bytes(), pseudonyms)
    b = deidentify((samples_dir / "heidelberg_vol/Willis_B_716_2.vol").read_bytes(), pseudonyms)
    assert a.identity.subject == b.identity.subject
    assert a.identity.scan != b.identity.scan
    assert a.pattern == "line" and b.pattern == "ring"


def test_e2e_patient_chunk(samples_dir: Path, pseudonyms: PseudonymStore) -> None:
    data = bytearray((samples_dir / "heidelberg_e2e/e2e_minimized.E2E").read_bytes())
    # Append a patient chunk (type 9) carrying identifiers, as full exports have.
    header = bytearray(60)
    header[:8] = b"MDbData\0"
    struct.pack_into("<I", header, 24, 127)
    struct.pack_into("<I", header, 52, 9)
    body = bytearray(127)
    body[0:9] = b"Wolfgang\0"
    body[31:41] = b"Amadeusson"
    struct.pack_into("<I", body, 97, int((2438000 + 14558805) * 64))  # julian day in 1962
    body[101:102] = b"M"
    body[102:115] = b"E2E-PID-31337"
    data += header + body
    result = deidentify(bytes(data), pseudonyms, name="x.e2e")
    assert (
        surviving(result.data, {"first": "Wolfgang", "last": "Amadeusson", "id": "E2E-PID-31337"})
        == []
    )
    assert len(result.data) == len(data)
    (birth,) = struct.unpack_from("<I", result.data, len(data) - 127 + 97)
    from oct_converter.readers.e2e import E2E

    # Read back the way oct-converter's E2E reader does: only the year is left.
    assert str(E2E.julian_to_ymd(None, birth / 64 - 14558805)) == "1962-01-01"


def test_topcon_patient_info(samples_dir: Path, pseudonyms: PseudonymStore) -> None:
    src = samples_dir / "topcon/fda_minimized.fda"
    data = bytearray(src.read_bytes())
    at = data.find(b"@PATIENT_INFO_02") + len(b"@PATIENT_INFO_02") + 4
    data[at : at + 12] = b"TOPCON-77421"
    data[at + 32 : at + 40] = b"Eleanora"
    data[at + 64 : at + 73] = b"Rigbyson\0"
    struct.pack_into("<3H", data, at + 105, 1971, 8, 23)
    result = deidentify(bytes(data), pseudonyms, name=str(src))
    assert (
        surviving(result.data, {"id": "TOPCON-77421", "first": "Eleanora", "last": "Rigbyson"})
        == []
    )
    assert struct.unpack_from("<3H", result.data, at + 105) == (1971, 1, 1)
    assert len(result.data) == len(data)


def test_not_oct_is_refused(pseudonyms: PseudonymStore) -> None:
    with pytest.raises(UnsupportedFormat, match="not an OCT file"):
        deidentify(b"%PDF-1.7 not a scan" * 20, pseudonyms, name="report.pdf")


def test_same_patient_same_pseudonym_across_stores(tmp_path: Path) -> None:
    a = PseudonymStore(tmp_path / "a.sqlite3")
    again = PseudonymStore(tmp_path / "a.sqlite3")  # same site secret beside the table
    other = PseudonymStore(tmp_path / "other" / "b.sqlite3")
    assert a.pseudonym("patient", "X1") == again.pseudonym("patient", "X1")
    assert a.pseudonym("patient", "X1") != other.pseudonym("patient", "X1")
    assert a.pseudonym("patient", "X1") != a.pseudonym("patient", "X2")
    assert again.original("patient", a.pseudonym("patient", "X1")) == "X1"
    assert (a.key_path.stat().st_mode & 0o777) == 0o600


def test_deid_command(tmp_path: Path, samples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qmroct.cli.main import cli

    monkeypatch.setenv("QMROCT_HOME", str(tmp_path / "home"))
    src = samples_dir / "heidelberg_vol/Willis_B_716_0.vol"
    out = tmp_path / "clean.vol"
    res = CliRunner().invoke(cli, ["deid", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and b"01234" not in out.read_bytes()[:2048]
    assert "sub-" in res.output


SAMPLES = [
    "heidelberg_vol/Willis_B_716_0.vol",
    "heidelberg_vol/Willis_B_716_2.vol",
    "heidelberg_e2e/e2e_minimized.E2E",
    "topcon/fda_minimized.fda",
    "topcon/fds_minimized.fds",
]


@pytest.mark.parametrize("rel", SAMPLES)
def test_our_readers_read_deidentified_samples(
    samples_dir: Path, pseudonyms: PseudonymStore, rel: str
) -> None:
    import numpy as np
    from qmroct.oct.readers import read_scan

    data = (samples_dir / rel).read_bytes()
    result = deidentify(data, pseudonyms, name=rel)
    before, after = read_scan(data, name=rel), read_scan(result.data, name=rel)
    assert np.array_equal(before.bscans, after.bscans, equal_nan=True)
    skip = {"source", "acquisition_date"}
    b, a = before.meta.model_dump(exclude=skip), after.meta.model_dump(exclude=skip)
    # The exam's time of day goes with its date (.vol); everything else the readers see stays.
    assert a["extra"].pop("exam_time", None) is None
    b["extra"].pop("exam_time", None)
    assert b == a
    # Acquisition dates go (.vol, as DICOM's Study Date) or keep only their year (Topcon).
    got, was = after.meta.acquisition_date, before.meta.acquisition_date
    assert got is None or (got.year, got.month, got.day) == (was.year, 1, 1)


def test_opt_dicom_keeps_what_the_reader_needs(pseudonyms: PseudonymStore) -> None:
    import numpy as np
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.readers import read_scan
    from qmroct.oct.writers.dicom_opt import write_opt

    scan = make_phantom()[0]
    data = write_opt(scan, patient_id="MRN-55501234")
    result = deidentify(data, pseudonyms, name="phantom.dcm")
    assert surviving(result.data, {"id": "MRN-55501234"}) == []
    ds = pydicom.dcmread(io.BytesIO(result.data))
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113111"]  # Basic Profile + Retain Safe Private
    before, after = read_scan(data, name="a.dcm"), read_scan(result.data, name="a.dcm")
    assert np.array_equal(before.bscans, after.bscans, equal_nan=True)
    assert after.meta.pattern == before.meta.pattern and after.meta.spacing == before.meta.spacing
    assert after.meta.acquisition_date is None  # the profile removes acquisition dates


def test_deid_command_keeps_no_planted_identifier_and_the_birth_year(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway_fixtures import DICOM_PLACES, plant_dicom
    from qmroct.cli.main import cli
    from qmroct.oct.readers import read_scan

    monkeypatch.setenv("QMROCT_HOME", str(tmp_path / "home"))
    planted = {place: f"Phi{i:02d}Quorvex" for i, place in enumerate(DICOM_PLACES)}
    src = tmp_path / "opt.dcm"
    src.write_bytes(plant_dicom(planted, birth_date="19630417"))
    assert surviving(src.read_bytes(), planted) == list(planted)  # every place really holds one
    out = tmp_path / "out.dcm"
    res = CliRunner().invoke(cli, ["deid", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert surviving(out.read_bytes(), planted) == []
    assert not any(value in res.output for value in planted.values())
    ds = pydicom.dcmread(out)
    assert ds.PatientBirthDate == "19630101"
    assert ds.preamble == b"\0" * 128
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113111"]
    scan = read_scan(out)  # still an OPT the readers take, with its safe private values
    assert scan.meta.format == "dicom_opt" and scan.meta.scale.value == "linear"


def test_opt_without_burned_in_annotation_is_not_taken_for_secondary_capture(
    pseudonyms: PseudonymStore,
) -> None:
    from gateway_fixtures import plant_dicom

    ds = pydicom.dcmread(io.BytesIO(plant_dicom({})))
    del ds.BurnedInAnnotation
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    result = deidentify(out.getvalue(), pseudonyms, name="opt.dcm")
    assert result.format == "dicom_opt"


def test_vol_exam_time_and_visit_date_do_not_survive(
    pseudonyms: PseudonymStore, tmp_path: Path
) -> None:
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.readers import read_scan
    from qmroct.oct.writers.heyex_vol import write_vol

    scan = make_phantom("line", seed=2)[0]
    scan.meta.acquisition_date = date(2021, 6, 17)
    data = bytearray(write_vol(scan, patient_id="PAT-Quorvex-1", visit_id="VIS-Quorvex-2"))
    struct.pack_into("<d", data, 200, 44_364.0)  # VisitDate 2021-06-17 as an OLE date
    assert read_scan(bytes(data), name="in.vol").meta.acquisition_date == date(2021, 6, 17)
    exam_time = bytes(data[88:96])
    result = deidentify(bytes(data), pseudonyms, name="in.vol")
    assert result.data[88:96] == b"\0" * 8 and result.data[200:208] == b"\0" * 8
    assert exam_time not in result.data[:2048]
    assert read_scan(result.data, name="out.vol").meta.acquisition_date is None


def _e2e_chunk(kind: int, body: bytes) -> bytes:
    header = bytearray(60)
    header[0:8] = b"MDbData\0"
    struct.pack_into("<I", header, 24, len(body))
    struct.pack_into("<I", header, 52, kind)
    return bytes(header) + body


def test_e2e_timestamps_and_diagnosis_do_not_survive(pseudonyms: PseudonymStore) -> None:
    stamp = struct.pack("<Q", 132_650_000_000_000_000)  # a FILETIME in 2021
    patient = bytearray(131)
    patient[0:10] = b"Quorvexian"
    patient[102:114] = b"PAT-Quorvex7"
    exam = b"\x11" * 16 + stamp
    bscan_meta = b"\x22" * 88 + stamp + b"\x33" * 8
    diagnosis = b"glaucoma, Quorvex family\0\0\0"
    data = (
        b"CMDb"
        + bytes(96)
        + b"".join(
            [
                _e2e_chunk(9, bytes(patient)),
                _e2e_chunk(10005, exam),
                _e2e_chunk(10004, bscan_meta),
                _e2e_chunk(17, diagnosis),
            ]
        )
    )
    result = deidentify(data, pseudonyms, name="synthetic.e2e")
    assert len(result.data) == len(data)
    assert stamp not in result.data and b"Quorvex" not in result.data
    assert b"\x11" * 16 in result.data and b"\x22" * 88 in result.data  # the rest stays

"""Phantom: realistic layout, determinism, and every defect with its truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qmroct.oct.phantom import BANDS, DEFECTS, PhantomTruth, make_phantom, write_phantom
from qmroct.oct.readers import read_scan


def test_deterministic_per_seed() -> None:
    a, ta, ba = make_phantom("volume", defects={"blink": 0.5}, seed=4)
    b, tb, bb = make_phantom("volume", defects={"blink": 0.5}, seed=4)
    c, _, _ = make_phantom("volume", defects={"blink": 0.5}, seed=5)
    assert np.array_equal(a.bscans, b.bscans) and ta == tb
    assert all(np.array_equal(ba[k], bb[k]) for k in ba)
    assert not np.array_equal(a.bscans, c.bscans)


@pytest.mark.parametrize(
    ("pattern", "shape"),
    [("volume", (16, 256, 256)), ("line", (1, 496, 512)), ("ring", (1, 496, 512))],
)
def test_sizes_and_layer_order(pattern: str, shape: tuple[int, int, int]) -> None:
    scan, truth, bounds = make_phantom(pattern)
    assert scan.shape == shape
    assert len(BANDS) - 2 >= 8  # retinal bands between vitreous and sclera
    order = ["ILM", "RNFL", "ONL_top", "ONL_bottom", "BM"]
    for upper, lower in zip(order, order[1:], strict=False):
        assert np.all(bounds[upper] <= bounds[lower] + 1e-4), (upper, lower)
    # Pixels are on the 2**-16 grid, so 16-bit DICOM stores them exactly.
    assert np.array_equal(np.round(scan.bscans * 65536) / 65536, scan.bscans)
    assert scan.fundus is not None and np.array_equal(scan.fundus, np.round(scan.fundus))


def test_paper_volume_size() -> None:
    scan, _, _ = make_phantom("volume", size="paper")
    assert scan.shape == (25, 496, 512)
    assert 14e6 <= scan.bscans.nbytes <= 27e6


def test_reflectivity_profile_is_realistic() -> None:
    scan, _, b = make_phantom("line", seed=1)
    img = scan.bscans[0]
    cols = np.arange(40, 120)  # away from the fovea

    def band_mean(top: str, bottom: str) -> float:
        vals = [img[int(np.ceil(b[top][0, c])) + 1 : int(b[bottom][0, c]) - 1, c] for c in cols]
        return float(np.mean(np.concatenate(vals)))

    rnfl, onl = band_mean("ILM", "RNFL"), band_mean("ONL_top", "ONL_bottom")
    vitreous = float(img[:100].mean())
    rpe = float(np.mean([img[int(b["BM"][0, c]) - 4 : int(b["BM"][0, c]), c] for c in cols]))
    assert rpe > rnfl > onl > vitreous


def test_macular_fovea_is_a_pit_at_the_truth_position() -> None:
    scan, truth, b = make_phantom("line")
    thickness = b["BM"][0] - b["ILM"][0]
    assert truth.fovea_px is not None
    assert abs(int(np.argmin(thickness)) - truth.fovea_px[1]) <= 2
    f = int(truth.fovea_px[1])
    rim = 1500.0 / scan.meta.spacing.lateral_um  # 1.5 mm either side, on the foveal rim
    rim_ilm = 0.5 * (b["ILM"][0, f - int(rim)] + b["ILM"][0, f + int(rim)])
    assert b["ILM"][0, f] > rim_ilm + 10  # the ILM dips (larger row) into the pit


@pytest.mark.parametrize("defect", DEFECTS)
def test_every_defect_changes_the_scan_and_records_physical_units(defect: str) -> None:
    pattern = "ring" if defect == "ring_offset" else "volume"
    clean, _, _ = make_phantom(pattern, seed=3)
    bad, truth, _ = make_phantom(pattern, defects={defect: 0.8}, seed=3)
    assert truth.defects == {defect: 0.8}
    assert not np.array_equal(clean.bscans, bad.bscans)
    assert any(v > 0 for v in truth.physical.values()), truth.physical


def test_defect_truth_details() -> None:
    s, t, _ = make_phantom("volume", defects={"blink": 1.0})
    assert len(t.blink_bscans) == round(1 + 0.25 * 15)
    means = np.nanmean(s.bscans, axis=(1, 2))
    assert means[t.blink_bscans].max() < 0.5 * np.median(means)
    s, t, b = make_phantom("volume", defects={"cutoff_top": 0.6})
    assert t.cut_bscans and b["ILM"].min() < 0
    s, t, b = make_phantom("volume", defects={"tilt": 1.0})
    slope_um = np.polyfit(
        np.arange(256) * s.meta.spacing.lateral_um, b["BM"][0] * s.meta.spacing.axial_um, 1
    )[0]
    assert np.degrees(np.arctan(slope_um)) == pytest.approx(12.0, abs=1.0)
    _, t, _ = make_phantom("ring", defects={"ring_offset": 0.6})
    assert t.ring_offset_ratio == pytest.approx(0.3, abs=1e-6)
    _, t, _ = make_phantom("line", defects={"decentration": 0.5})
    assert t.fovea_offset_um == pytest.approx(500.0)


def test_low_signal_lowers_device_quality() -> None:
    q = [
        np.median(make_phantom("volume", defects={"low_signal": s})[0].meta.device_quality)
        for s in (0, 0.5, 1)
    ]
    assert q[0] > q[1] > q[2]


def test_invalid_defects() -> None:
    with pytest.raises(ValueError, match="unknown defect"):
        make_phantom(defects={"sparkles": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_phantom(defects={"blur": 1.5})


def test_write_phantom_goes_through_the_readers(tmp_path: Path) -> None:
    scan, truth, _ = make_phantom("ring", defects={"ring_offset": 0.4}, seed=9)
    paths = write_phantom(scan, truth, tmp_path)
    assert [p.suffix for p in paths] == [".vol", ".dcm", ".json"]
    for p in paths[:2]:
        assert np.array_equal(read_scan(p).bscans, scan.bscans)
    back = PhantomTruth.model_validate(json.loads(paths[2].read_text()))
    assert back == truth

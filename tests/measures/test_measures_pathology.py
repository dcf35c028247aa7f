"""The pathology flag (OSCAR-IB R) on drusen and macular holes: phantoms, then real B-scans.

Thresholds come from cited figures (see PathologyParams); the real files only check them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qmroct import pictures
from qmroct.measures.runner import run_suite
from qmroct.oct.phantom import make_phantom
from qmroct.oct.readers import read_scan
from qmroct.results import Verdict


def _r(scan):
    out = run_suite(scan, only=["pathology_flag"]).outputs[0]
    return out.values, out.verdicts[0]


def _picture(scan) -> np.ndarray:
    out = run_suite(scan, only=["pathology_flag"]).outputs[0]
    return pictures.from_png(out.picture_png)


def _boxes(rgb: np.ndarray, colour) -> int:
    """Pixels of ``colour`` in vertical runs of at least 8 (box sides), not in plot lines."""
    hit = np.all(rgb == colour, axis=2).astype(np.int8)
    runs = np.zeros_like(hit)
    for r in range(8):
        runs += np.roll(hit, -r, axis=0)
    return int((runs >= 8).sum())


@pytest.mark.parametrize(
    ("defect", "value"), [("drusen", "drusen_height_um"), ("macular_hole", "hole_width_um")]
)
def test_phantom_defect_flags_r_and_its_value_grades_it(defect: str, value: str) -> None:
    clean, _, _ = make_phantom("line", seed=2)
    bad, truth, _ = make_phantom("line", defects={defect: 0.6}, seed=2)
    cv, cverdict = _r(clean)
    bv, bverdict = _r(bad)
    assert cverdict.verdict == Verdict.PASS, cverdict.reason
    assert bverdict.verdict == Verdict.WARN, bverdict.reason
    assert bverdict.graded_by == value
    assert bv[value] > cv[value]
    # Markers only where something was found: the clean picture has no finding box.
    box = pictures.RED if defect == "macular_hole" else pictures.ORANGE
    clean_pic, bad_pic = (_picture(s) for s in (clean, bad))
    assert _boxes(bad_pic, box) > _boxes(clean_pic, box)
    if defect == "macular_hole":
        # The width found is the hole's, within the walls' slope.
        d = truth.physical["hole_diameter_um"]
        assert 0.5 * d <= bv[value] <= 1.6 * d


def _image_scan(src: Path, tmp: Path):
    """One exported B-scan through the image-folder reader, with the README's assumed spacing.

    The exports carry annotations drawn in pure red or black on a grey B-scan; the green channel
    keeps the B-scan and shows the red drawing dark instead of as a bright false layer.
    """
    d = tmp / src.stem
    d.mkdir()
    grey = np.asarray(Image.open(src).convert("RGB"))[..., 1]
    Image.fromarray(grey).save(d / "bscan.png")
    side = {
        "files": ["bscan.png"],
        "spacing": {"lateral_um": 11.7, "axial_um": 3.9},
        "pattern": "line",
    }
    (d / "scan.json").write_text(json.dumps(side))
    return read_scan(d)


def test_real_amd_and_hole_bscans_flag_r_and_normal_vol_scans_do_not(
    samples_dir: Path, tmp_path: Path
) -> None:
    folder = samples_dir / "optovue_pathology"
    files = sorted(folder.glob("*/*.jpg")) + sorted(folder.glob("*/*.png"))
    assert len(files) >= 20
    flagged = {f.name: _r(_image_scan(f, tmp_path))[1].verdict == Verdict.WARN for f in files}
    missed = [k for k, v in flagged.items() if not v]
    # Every one of these is pathology; a flag is a screen, so at least 90% must be caught.
    assert len(missed) <= 0.1 * len(files), missed
    # Only the Willis_B_716 exports are known to be one healthy eye; another .vol in a samples
    # folder (e.g. halirutan's valid.vol, a steep myopic ring with cystoid spaces) may not be.
    for vol in sorted((samples_dir / "heidelberg_vol").glob("Willis_B_716_*.vol")):
        values, verdict = _r(read_scan(vol))
        assert verdict.verdict == Verdict.PASS, (vol.name, verdict.reason)


def test_rpe_floor_stays_under_a_broad_druse() -> None:
    # A drusenoid elevation over a third of the B-scan: the two-sided robust fit takes it in
    # (its residuals widen the band) and bends up into it; the one-sided fit leaves out every
    # point lifted half the flag height above it and stays on the healthy RPE.
    from qmroct.metrics.pathology import rpe_floor

    w = 500
    u = np.linspace(-1, 1, w)
    healthy = 300 + 25 * u**2 + 8 * u**3
    bump = 10.0 * np.clip(1 - ((u - 0.1) / 0.35) ** 2, 0, 1)  # 10 rows tall, 35 % wide
    rng = np.random.default_rng(0)
    rpe = (healthy - bump + rng.normal(0, 0.5, w))[None, :]
    two_sided = rpe_floor(rpe, degree=3)
    one_sided = rpe_floor(rpe, degree=3, lift_tol_px=4.0)
    top = int(np.argmax(bump))
    assert (one_sided - rpe)[0, top] > 9.0
    assert (two_sided - rpe)[0, top] < (one_sided - rpe)[0, top] - 2.0
    # On a healthy RPE both fits agree.
    flat = (healthy + rng.normal(0, 0.5, w))[None, :]
    assert np.max(np.abs(rpe_floor(flat, degree=3, lift_tol_px=4.0) - healthy)) < 1.0

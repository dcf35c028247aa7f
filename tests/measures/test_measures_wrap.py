"""Wrapped A-scans (the retina at the image top, Segmentation.clipped) are read by no measure
but completeness, whose finding the clamp is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from qmroct.measures.context import ScanContext
from qmroct.measures.runner import run_suite
from qmroct.oct.phantom import make_phantom
from qmroct.oct.segmentation import segment


def _values(scan, seg) -> dict[str, dict]:
    return {o.measure: o.values for o in run_suite(scan, segmentation=seg).outputs}


def test_usable_ascans_leave_the_wrapped_ones_out() -> None:
    scan, _, truth = make_phantom("volume", seed=1, wrap=True)
    ctx = ScanContext.build(scan)
    clipped = ctx.segmentation.clipped
    assert clipped.any() and (truth["ILM"] < 0).any()
    assert np.array_equal(ctx.usable_ascans, ~clipped)
    s = ctx.usable_segmentation
    for name in ("ilm", "rnfl", "onl_top", "onl_bottom", "bm"):
        assert np.isnan(getattr(s, name)[clipped]).all(), name
    assert (s.confidence[clipped] == 0).all()
    # The retina and vitreous masks hold no pixel of a wrapped A-scan.
    cols = np.broadcast_to(clipped[:, None, :], ctx.retina.shape)
    assert not ctx.retina[cols].any() and not ctx.vitreous[cols].any()
    # Elsewhere the boundaries are the segmentation's own.
    assert np.array_equal(s.bm[~clipped], ctx.segmentation.bm[~clipped])


@pytest.mark.parametrize(("pattern", "seed"), [("line", 0), ("volume", 2), ("ring", 3)])
def test_no_measure_reads_the_boundaries_of_wrapped_ascans(pattern: str, seed: int) -> None:
    # Whatever the boundaries under the clamp say (they belong to the fold), every value of
    # every measure stays the same: the wrapped A-scans are left out.
    scan, _, _ = make_phantom(pattern, seed=seed, wrap=True)
    seg = segment(scan)
    clipped = seg.clipped
    assert clipped.mean() > 0.02
    h = scan.shape[1]

    def moved(a: np.ndarray, rows: float) -> np.ndarray:
        return np.where(clipped, np.clip(np.nan_to_num(a, nan=rows) + rows, 1, h - 2), a).astype(
            np.float32
        )

    other = dataclasses.replace(
        seg,
        rnfl=moved(seg.rnfl, 20.0),
        onl_top=moved(seg.onl_top, 35.0),
        onl_bottom=moved(seg.onl_bottom, 35.0),
        bm=moved(seg.bm, 45.0),
    )
    assert np.array_equal(other.clipped, clipped)
    a, b = _values(scan, seg), _values(scan, other)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name


def test_completeness_still_counts_the_wrap_as_cut_at_the_top() -> None:
    scan, _, _ = make_phantom("line", seed=0, wrap=True)
    run = run_suite(scan, only=["completeness"])
    clipped = run.context.segmentation.clipped
    out = run.outputs[0]
    assert out.values["cut_top_fraction"] >= round(float(clipped.mean()), 6) > 0
    assert out.verdicts[0].verdict.value == "fail"


@pytest.mark.parametrize(("pattern", "seed"), [("line", 0), ("line", 2), ("volume", 0)])
def test_a_healthy_eye_that_wraps_is_not_flagged_for_drusen(pattern: str, seed: int) -> None:
    # The climb of the eye wall out of the window is no druse: the RPE floor is not fitted
    # through it (before, the wrap read as drusen 100 to 300 µm tall and R warned).
    scan, _, _ = make_phantom(pattern, seed=seed, wrap=True)
    out = run_suite(scan, only=["pathology_flag"]).outputs[0]
    verdict = out.verdicts[0]
    assert verdict.verdict.value == "pass", verdict.reason
    assert "beside a wrap" in verdict.reason
    height = out.values["drusen_height_um"]
    assert height is None or height < 15.0

"""Picture helpers: PNG round trip, overlays where they belong, summary folding."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image
from qmroct import pictures
from qmroct.measures.suite import oscar_ib_summary
from qmroct.measures.verdicts import grade, worst
from qmroct.results import CriterionVerdict, MeasureOutput, Verdict


def test_png_round_trip_and_nan_shown_black():
    img = np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)
    img[0, 0] = np.nan
    rgb = pictures.gray_rgb(img)
    assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]
    back = pictures.from_png(pictures.to_png(rgb))
    assert np.array_equal(back, rgb)


def test_png_is_a_valid_png_any_reader_decodes_to_the_same_pixels():
    rng = np.random.default_rng(5)
    for shape in ((1, 1, 3), (3, 7, 3), (622, 640, 3)):
        rgb = rng.integers(0, 256, size=shape, dtype=np.uint8)
        data = pictures.to_png(rgb)
        im = Image.open(io.BytesIO(data))
        im.verify()  # chunk CRCs and structure, as Pillow checks them
        im = Image.open(io.BytesIO(data))
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(im), rgb)
        # zlib's own check of the image data, independent of Pillow.
        idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
        raw = zlib.decompress(idat)
        assert len(raw) == shape[0] * (1 + 3 * shape[1])
    # The picture a measure makes (uint8 RGB of a float cast) is encoded as it is cast.
    assert pictures.from_png(pictures.to_png(rgb.astype(np.int64))).dtype == np.uint8
    with pytest.raises(ValueError, match="shape"):
        pictures.to_png(np.zeros((4, 4), np.uint8))


def test_draw_rows_marks_the_boundary_row():
    rgb = np.zeros((50, 40, 3), np.uint8)
    out = pictures.draw_rows(rgb, np.full(40, 20.0), pictures.GREEN)
    assert (out[20, 5:35] == pictures.GREEN).all()
    assert (out[10] == 0).all()


def test_background_enhanced_lifts_faint_noise():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.0, 0.05, (40, 40)).astype(np.float32)
    img[20:] = 1.0
    normal = pictures.gray_rgb(img)
    enhanced = pictures.background_enhanced(img)
    assert enhanced[:20].astype(int).sum() > 3 * normal[:20].astype(int).sum()


def test_stack_pads_and_shrinks_to_a_common_width():
    a = np.zeros((30, 320, 3), np.uint8)
    b = np.zeros((30, 1000, 3), np.uint8)
    out = pictures.stack([a, b], width=640, title="t")
    assert out.shape[1] == 640


def test_grade_directions_and_worst():
    assert grade("S", "x", 5, warn=4, fail=2, higher_is_better=True).verdict is Verdict.PASS
    assert grade("S", "x", 3, warn=4, fail=2, higher_is_better=True).verdict is Verdict.WARN
    assert grade("S", "x", 1, warn=4, fail=2, higher_is_better=True).verdict is Verdict.FAIL
    assert grade("O", "x", 0.5, warn=1, fail=2, higher_is_better=False).verdict is Verdict.PASS
    assert (
        grade("O", "x", float("nan"), warn=1, fail=2, higher_is_better=False).verdict
        is Verdict.FAIL
    )
    w = worst("O", [grade("O", "a", 0, warn=1, fail=2, higher_is_better=False),
                    grade("O", "b", 3, warn=1, fail=2, higher_is_better=False)])  # fmt: skip
    assert w.verdict is Verdict.FAIL and "b = 3" in w.reason


def test_summary_fails_when_any_letter_fails():
    def out(name: str, letter: str, verdict: Verdict) -> MeasureOutput:
        v = CriterionVerdict(criterion=letter, verdict=verdict, reason="r")
        return MeasureOutput(measure=name, version="1.0.0", verdicts=[v])

    ok = oscar_ib_summary([out("a", "O", Verdict.PASS), out("b", "S", Verdict.WARN)])
    assert ok.passed and ok.warned_letters == ["S"]
    assert ok.letters["C"].verdict is Verdict.NOT_APPLICABLE
    bad = oscar_ib_summary([out("a", "O", Verdict.PASS), out("c", "O", Verdict.FAIL)])
    assert not bad.passed and bad.failed_letters == ["O"]
    assert bad.letters["O"].reason.startswith("c: ")


def test_micro_sign_and_scale_bars_are_drawn():
    from PIL import Image, ImageDraw

    def ink(text: str) -> int:
        im = Image.new("RGB", (60, 20), (0, 0, 0))
        pictures._text(ImageDraw.Draw(im), (2, 2), text, pictures.WHITE)
        return int(np.asarray(im).sum())

    # The micro sign is a u with a stem: more ink than a plain u, never the font's empty box.
    assert ink("µm") > ink("um")
    blank = np.zeros((200, 400, 3), np.uint8)
    barred = pictures.scale_bar(blank, 10.0, 4.0)
    corner = barred[100:, :200].astype(int).sum()
    assert corner > 0 and barred[:60, 200:].sum() == 0  # only in the lower left corner
    # The depth bar (column 8, up from the bottom) takes at most a sixth of the height: 100 µm
    # of 4 µm rows in a 200-row picture, 50 µm in a 100-row crop.
    for h, bar_um in ((200, 100), (100, 50)):
        barred = pictures.scale_bar(np.zeros((h, 400, 3), np.uint8), 10.0, 4.0)
        rows = np.flatnonzero(barred[:, 8].any(axis=1))
        assert h / 6 >= np.ptp(rows) >= bar_um / 4 - 1, (h, np.ptp(rows))


def test_units_say_micrometres_in_values_and_pictures():
    from qmroct.measures.base import registry

    for name, cls in registry().items():
        for value, doc in getattr(cls, "values_doc", {}).items():
            unit = doc[0]
            assert "um" not in unit.split(), (name, value, unit)
            if value.endswith("_um"):
                assert "µm" in unit, (name, value, unit)
    # The picture font draws the micro sign: "µm" and "um" render differently.
    a = pictures.panel(np.zeros((20, 640, 3), np.uint8), "200 µm")
    b = pictures.panel(np.zeros((20, 640, 3), np.uint8), "200 um")
    assert not np.array_equal(a, b)


def test_markers_only_where_something_was_found():
    rgb = np.zeros((60, 100, 3), np.uint8)
    top, bottom = np.full(100, 20.0), np.full(100, 40.0)
    nothing = pictures.mark_runs(rgb, np.zeros(100, bool), top, bottom, pictures.RED, "hole")
    assert np.array_equal(nothing, rgb)
    found = np.zeros(100, bool)
    found[30:40] = True
    out = pictures.mark_runs(rgb, found, top, bottom, pictures.RED, "hole")
    red = np.all(out == pictures.RED, axis=2)
    cols = np.flatnonzero(red.any(axis=0))
    assert cols.min() >= 28 and cols.max() <= 45  # the box (and its label) around the run
    assert red[:, :25].sum() == 0 and red[:, 50:].sum() == 0
    # A plot marks a graded value only when it is given one.
    y = np.linspace(0, 1, 50)
    plain = pictures.plot([(y, pictures.WHITE, "")], hlines=[(0.5, pictures.RED, "flag")])
    marked = pictures.plot(
        [(y, pictures.WHITE, "")],
        hlines=[(0.5, pictures.RED, "flag")],
        points=[(40, y[40], pictures.ORANGE, "0.8")],
    )
    assert not np.all(plain == pictures.ORANGE, axis=2).any()
    assert np.all(marked == pictures.ORANGE, axis=2).any()


def _draw_rows_reference(rgb, rows, color, *, width=1, scale_y=1.0):
    """The point-by-point loop draw_rows replaced."""
    from PIL import ImageDraw

    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    xs_scale = rgb.shape[1] / max(1, len(rows))
    seg: list[tuple[float, float]] = []
    for j, r in enumerate(rows):
        if np.isfinite(r):
            seg.append(((j + 0.5) * xs_scale, float(r) * scale_y))
        elif seg:
            if len(seg) > 1:
                d.line(seg, fill=color, width=width)
            seg = []
    if len(seg) > 1:
        d.line(seg, fill=color, width=width)
    return np.asarray(im)


def test_draw_rows_draws_what_the_point_by_point_loop_drew():
    rng = np.random.default_rng(9)
    for n, w in ((512, 512), (300, 768), (1, 40), (25, 320)):
        rows = (100 + 30 * np.sin(np.arange(n) / 40) + rng.normal(0, 2, n)).astype(np.float32)
        rows[rng.random(n) < 0.1] = np.nan  # gaps, lone points between them
        rows[: min(3, n)] = np.nan
        rgb = rng.integers(0, 256, size=(200, w, 3), dtype=np.uint8)
        for kw in ({}, {"width": 2, "scale_y": 0.7}):
            want = _draw_rows_reference(rgb, rows, pictures.YELLOW, **kw)
            assert np.array_equal(pictures.draw_rows(rgb, rows, pictures.YELLOW, **kw), want)
    assert np.array_equal(pictures.draw_rows(rgb, np.full(25, np.nan), pictures.RED), rgb)

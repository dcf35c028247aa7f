"""Pictures a clinician reads at a glance: B-scans with overlays, en-face maps and small plots.

Pure drawing with Pillow: arrays in, RGB arrays or PNG bytes out. Measures call these; the
action stores the bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
RED: RGB = (230, 40, 40)
GREEN: RGB = (40, 200, 80)
YELLOW: RGB = (240, 200, 30)
CYAN: RGB = (40, 200, 230)
MAGENTA: RGB = (220, 60, 220)
ORANGE: RGB = (250, 140, 20)
WHITE: RGB = (255, 255, 255)
GREY: RGB = (140, 140, 140)
BG: RGB = (18, 18, 22)

_FONT = ImageFont.load_default()


def _t(text: str) -> str:
    # Text is drawn by _text, which draws the micro sign itself; the degree sign is in the font.
    return text


def _text(d: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: RGB) -> None:
    """Draw ``text``; Pillow's built-in font has no micro sign, so a µ is drawn as a u with the
    long left stem of the Greek letter (µm, never um)."""
    x, y = xy
    for i, part in enumerate(text.split("µ")):
        if i:
            x0, y0, x1, y1 = d.textbbox((x, y), "u", font=_FONT)
            d.text((x, y), "u", fill=fill, font=_FONT)
            d.line([(x0, y0), (x0, y1 + 2)], fill=fill, width=1)
            x += d.textlength("u", font=_FONT)
        if part:
            d.text((x, y), part, fill=fill, font=_FONT)
            x += d.textlength(part, font=_FONT)


def scale_bar(rgb: np.ndarray, lateral_um: float, axial_um: float) -> np.ndarray:
    """Scale bars in the lower left corner of a B-scan: a horizontal one for the A-scan spacing
    (``lateral_um`` per column) and a vertical one for depth (``axial_um`` per row), each a round
    number of µm and labelled. B-scans are not isotropic, so both are needed."""
    h, w = rgb.shape[:2]
    if h < 40 or w < 60 or not (lateral_um > 0 and axial_um > 0):
        return rgb
    im = Image.fromarray(np.ascontiguousarray(rgb))
    d = ImageDraw.Draw(im)
    fits = [v for v in (50, 100, 200, 250, 500, 1000, 2000) if v / lateral_um <= w / 4]
    across = fits[-1] if fits else 50
    # Depth bar at most a sixth of the height: on a picture cropped to the retina a third of
    # its height was as tall as the retina itself. None when not even 20 µm fits.
    deep = next((v for v in (500, 200, 100, 50, 20) if v / axial_um <= h / 6), None)
    x0, y0 = 8, h - 8
    d.line([(x0, y0), (x0 + across / lateral_um, y0)], fill=WHITE, width=2)
    _text(d, (x0 + 4, y0 - 12), f"{across:g} µm", WHITE)
    if deep is not None:
        d.line([(x0, y0), (x0, y0 - deep / axial_um)], fill=WHITE, width=2)
        _text(d, (x0 + 4, y0 - deep / axial_um), f"{deep:g} µm deep", WHITE)
    return np.asarray(im)


#: :func:`panel` enlarges images narrower than PANEL_MIN to PANEL_WIDTH by default.
PANEL_MIN, PANEL_WIDTH = 480, 640


def panel_size(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The image as a default :func:`panel` will show it (small ones enlarged), and the factor:
    drawing text and scale bars after this keeps them as sharp as a panel's title."""
    w = rgb.shape[1]
    if w >= PANEL_MIN:
        return rgb, 1.0
    return resize(rgb, PANEL_WIDTH), PANEL_WIDTH / w


def mark_runs(
    rgb: np.ndarray,
    found: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    color: RGB,
    label: str,
) -> np.ndarray:
    """A box around every run of A-scans where ``found`` is True, from the ``top`` to the
    ``bottom`` rows of the run (NaN ignored), labelled; nothing is drawn where nothing was
    found."""
    cols = np.flatnonzero(np.asarray(found, bool))
    if cols.size == 0:
        return rgb
    im = Image.fromarray(np.ascontiguousarray(rgb))
    d = ImageDraw.Draw(im)
    h = rgb.shape[0]
    xs = rgb.shape[1] / max(1, len(found))
    breaks = np.flatnonzero(np.diff(cols) > 1)
    starts = np.concatenate([[cols[0]], cols[breaks + 1]])
    ends = np.concatenate([cols[breaks], [cols[-1]]])
    label_end = -1.0  # labels of close runs would overprint: only the first is written
    for a, b in zip(starts, ends, strict=True):
        t = top[a : b + 1][np.isfinite(top[a : b + 1])]
        u = bottom[a : b + 1][np.isfinite(bottom[a : b + 1])]
        y0 = max(1.0, float(t.min()) - 6 if t.size else 2.0)
        y1 = min(h - 2.0, float(u.max()) + 6 if u.size else h - 3.0)
        d.rectangle([a * xs - 1, y0, (b + 1) * xs, y1], outline=color, width=2)
        if a * xs > label_end:
            _text(d, (a * xs, max(0.0, y0 - 12)), label, color)
            label_end = a * xs + d.textlength(label, font=_FONT) + 4
    return np.asarray(im)


def gray_rgb(img: np.ndarray, *, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """A display image (NaN shown black) as uint8 RGB, windowed to [lo, hi] (P0.5..P99.5)."""
    a = np.asarray(img, dtype=np.float32)
    ok = np.isfinite(a)
    if lo is None or hi is None:
        v = a[ok]
        p_lo, p_hi = np.percentile(v, [0.5, 99.5]) if v.size else (0.0, 1.0)
        lo = p_lo if lo is None else lo
        hi = p_hi if hi is None else hi
    span = (hi - lo) or 1.0
    g = np.clip((np.where(ok, a, lo) - lo) / span, 0, 1)
    u8 = (g * 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=2)


def background_enhanced(img: np.ndarray) -> np.ndarray:
    """A B-scan windowed on the background (P2..P60, square-root): noise, shadows and ghosts show.

    The MRIQC practice: artefacts live in the background, which a normal window hides.
    """
    a = np.asarray(img, dtype=np.float32)
    v = a[np.isfinite(a)]
    if v.size == 0:
        return gray_rgb(a)
    lo, hi = np.percentile(v, [2, 60])
    g = np.sqrt(np.clip((np.where(np.isfinite(a), a, lo) - lo) / ((hi - lo) or 1.0), 0, 1))
    # A perceptual colour ramp (dark blue, orange, white) makes faint structure readable.
    r = np.clip(1.6 * g, 0, 1)
    gg = np.clip(1.6 * g - 0.5, 0, 1)
    b = np.clip(0.5 - g, 0, 1) + np.clip(2 * g - 1.2, 0, 1)
    return (np.stack([r, gg, b], axis=-1) * 255).astype(np.uint8)


def colormap(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A blue-to-yellow colour map (NaN: dark grey) for en-face maps, uint8 RGB."""
    a = np.asarray(values, dtype=np.float64)
    t = np.clip((np.where(np.isfinite(a), a, lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    stops = np.array([[40, 20, 90], [30, 110, 170], [40, 180, 120], [250, 230, 40]], float)
    pos = t * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    f = (pos - i)[..., None]
    rgb = stops[i] * (1 - f) + stops[i + 1] * f
    rgb[~np.isfinite(a)] = (50, 50, 50)
    return rgb.astype(np.uint8)


def resize(rgb: np.ndarray, width: int, height: int | None = None) -> np.ndarray:
    """Resize to ``width`` (and ``height``, else keep the aspect ratio)."""
    h, w = rgb.shape[:2]
    height = height or max(1, int(round(h * width / w)))
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def draw_rows(
    rgb: np.ndarray, rows: np.ndarray, color: RGB, *, width: int = 1, scale_y: float = 1.0
) -> np.ndarray:
    """Draw a boundary (one row per column, NaN: gap) as a polyline over the image."""
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    r = np.asarray(rows)
    xs_scale = rgb.shape[1] / max(1, len(r))
    xs = ((np.arange(len(r)) + 0.5) * xs_scale).tolist()
    ys = (r.astype(np.float64) * scale_y).tolist()
    # One polyline per run of known rows (a NaN breaks the line); a lone point draws nothing.
    ok = np.concatenate([[False], np.isfinite(r), [False]]).astype(np.int8)
    edges = np.diff(ok)
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if b - a > 1:
            d.line(list(zip(xs[a:b], ys[a:b], strict=True)), fill=color, width=width)
    return np.asarray(im)


def annotate(
    rgb: np.ndarray,
    *,
    marks: Sequence[tuple[float, float, RGB]] = (),
    circles: Sequence[tuple[float, float, float, RGB]] = (),
    lines: Sequence[tuple[float, float, float, float, RGB]] = (),
    boxes: Sequence[tuple[float, float, float, float, RGB]] = (),
    text: Sequence[tuple[float, float, str, RGB]] = (),
) -> np.ndarray:
    """Crosses (x, y), circles (x, y, r), lines, rectangles and labels drawn over an image."""
    im = Image.fromarray(np.ascontiguousarray(rgb))
    d = ImageDraw.Draw(im)
    for x, y, c in marks:
        d.line([(x - 6, y), (x + 6, y)], fill=c, width=2)
        d.line([(x, y - 6), (x, y + 6)], fill=c, width=2)
    for x, y, r, c in circles:
        d.ellipse([x - r, y - r, x + r, y + r], outline=c, width=2)
    for x0, y0, x1, y1, c in lines:
        d.line([(x0, y0), (x1, y1)], fill=c, width=2)
    for x0, y0, x1, y1, c in boxes:
        d.rectangle([x0, y0, x1, y1], outline=c, width=1)
    for x, y, s, c in text:
        _text(d, (x, y), s, c)
    return np.asarray(im)


def plot(
    series: Sequence[tuple[np.ndarray, RGB, str]],
    *,
    width: int = 480,
    height: int = 160,
    title: str = "",
    hlines: Sequence[tuple[float, RGB, str]] = (),
    vlines: Sequence[tuple[float, RGB, str]] = (),
    highlight: Sequence[int] = (),
    ylim: tuple[float, float] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    points: Sequence[tuple[float, float, RGB, str]] = (),
) -> np.ndarray:
    """A small line plot: each series is (y values, colour, label); NaN breaks the line.

    ``hlines`` draws thresholds, ``vlines`` marks x positions (fractional indices), ``highlight``
    marks x indices (e.g. blink B-scans) in red; ``xlabel`` and ``ylabel`` name the axes with
    their units; ``points`` marks graded values (x, y, colour, label) with a ring and the value.
    """
    im = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 44, width - 8, 18, height - 16
    ys = [np.asarray(s, float) for s, _, _ in series]
    allv = np.concatenate(
        [y[np.isfinite(y)] for y in ys]
        + [np.array([v for v, _, _ in hlines]), np.array([v for _, v, _, _ in points])]
    )
    if ylim is None:
        lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
        pad = 0.08 * ((hi - lo) or abs(hi) or 1.0)
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = ylim
    n = max((len(y) for y in ys), default=1)

    def px(i: float, v: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(n - 1, 1))
        y = bottom - (bottom - top) * ((v - lo) / ((hi - lo) or 1.0))
        return x, y

    d.rectangle([left, top, right, bottom], outline=GREY)
    for i in highlight:
        x, _ = px(i, lo)
        d.line([(x, top), (x, bottom)], fill=(120, 30, 30), width=3)
    # Labels of close markers go one text line lower rather than on top of each other.
    taken: list[tuple[float, float, int]] = []
    for i, c, label in sorted(vlines, key=lambda m: m[0]):
        x, _ = px(i, lo)
        d.line([(x, top), (x, bottom)], fill=c, width=1)
        end = x + 2 + d.textlength(_t(label), font=_FONT)
        row = 0
        while any(r == row and a < end and x + 2 < b for a, b, r in taken):
            row += 1
        taken.append((x + 2, end, row))
        _text(d, (x + 2, top + 2 + 11 * row), label, c)
    for v, c, label in hlines:
        _, y = px(0, v)
        d.line([(left, y), (right, y)], fill=c, width=1)
        _text(d, (right - 6 * len(label) - 4, y - 11), label, c)
    for y, (_, c, _) in zip(ys, series, strict=True):
        seg: list[tuple[float, float]] = []
        for i, v in enumerate(y):
            if np.isfinite(v):
                seg.append(px(i, float(v)))
            else:
                if len(seg) > 1:
                    d.line(seg, fill=c, width=2)
                seg = []
        if len(seg) > 1:
            d.line(seg, fill=c, width=2)
        elif len(seg) == 1:
            x0, y0 = seg[0]
            d.ellipse([x0 - 2, y0 - 2, x0 + 2, y0 + 2], fill=c)
    for x0, v, c, label in points:
        x, y = px(x0, v)
        d.ellipse([x - 4, y - 4, x + 4, y + 4], outline=c, width=2)
        tx = min(x + 6, right - d.textlength(label, font=_FONT))
        _text(d, (tx, max(top, y - 12)), label, c)
    d.text((4, top - 2), f"{hi:.3g}", fill=GREY, font=_FONT)
    d.text((4, bottom - 10), f"{lo:.3g}", fill=GREY, font=_FONT)
    if ylabel:
        _text(d, (4, (top + bottom) / 2 - 5), ylabel, GREY)
    _text(d, (left, 3), title, WHITE)
    # Legend right-aligned on the title row, so it never runs over the title.
    x = right
    for _, c, label in reversed(series):
        if label:
            x -= int(d.textlength(_t(label), font=_FONT)) + 12
            _text(d, (x, 3), label, c)
    if xlabel:
        _text(d, (left, bottom + 3), xlabel, GREY)
    return np.asarray(im)


def panel(rgb: np.ndarray, title: str, *, width: int | None = None) -> np.ndarray:
    """An image with a title bar above it, resized to ``width`` (default: small images are
    enlarged to 640 pixels so that a 256-wide B-scan stays readable)."""
    if width is None and rgb.shape[1] < PANEL_MIN:
        width = PANEL_WIDTH
    if width is not None and rgb.shape[1] != width:
        rgb = resize(rgb, width)
    bar = Image.new("RGB", (rgb.shape[1], 16), BG)
    _text(ImageDraw.Draw(bar), (4, 2), title, WHITE)
    return np.concatenate([np.asarray(bar), rgb], axis=0)


def _fit_width(rgb: np.ndarray, width: int) -> np.ndarray:
    """Shrink a wider image to ``width``; centre a narrower one on a dark background."""
    w = rgb.shape[1]
    if w > width:
        return resize(rgb, width)
    if w < width:
        pad = np.zeros((rgb.shape[0], width, 3), np.uint8)
        x0 = (width - w) // 2
        pad[:, x0 : x0 + w] = rgb
        return pad
    return rgb


def stack(panels: Sequence[np.ndarray], *, width: int = 640, title: str = "") -> np.ndarray:
    """Panels one below the other at a common width, with an optional heading."""
    parts = [_fit_width(p, width) for p in panels]
    if title:
        head = Image.new("RGB", (width, 20), (0, 0, 0))
        _text(ImageDraw.Draw(head), (6, 4), title, YELLOW)
        parts.insert(0, np.asarray(head))
    gap = np.full((4, width, 3), 0, np.uint8)
    out: list[np.ndarray] = []
    for p in parts:
        out += [p, gap]
    return np.concatenate(out[:-1], axis=0)


def side_by_side(left: np.ndarray, right: np.ndarray, *, height: int = 240) -> np.ndarray:
    """Two images next to each other at a common height."""

    def fit(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        return np.asarray(
            Image.fromarray(a).resize(
                (max(1, int(w * height / h)), height), Image.Resampling.BILINEAR
            )
        )

    gap = np.zeros((height, 4, 3), np.uint8)
    return np.concatenate([fit(left), gap, fit(right)], axis=1)


#: zlib level of the pictures' PNG: see :func:`to_png`.
PNG_LEVEL = 1


def _chunk(kind: bytes, body: bytes) -> bytes:
    # A PNG chunk: length, type, data, CRC-32 of type and data (PNG spec, ISO 15948, 5.3).
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF)
    )


def to_png(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG bytes (8-bit truecolour, no interlace).

    Written here rather than by Pillow because Pillow always tries every row filter (adaptive
    filtering), which on speckled B-scans gains nothing: measured on the nine pictures of a
    paper-size volume, filter "None" with zlib level 1 takes 0.08 s CPU against Pillow's 0.25 s
    at level 3, for 11% more bytes (2.29 MB against 2.05 MB; levels 3 and 6 cost 2x and 5x the
    CPU for 9% and 12% less). Any PNG reader decodes it; ``from_png`` returns the same pixels.
    """
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"to_png wants an (h, w, 3) picture, not shape {a.shape}")
    h, w, _ = a.shape
    # Each scanline starts with its filter type byte: 0, "None".
    raw = np.empty((h, 1 + 3 * w), np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = a.reshape(h, 3 * w)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", ihdr),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), PNG_LEVEL)),
            _chunk(b"IEND", b""),
        )
    )


def from_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to an RGB uint8 array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

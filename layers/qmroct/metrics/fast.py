"""Vectorised forms of array routines the metrics call many times per scan, with the reference
each one reproduces (tests/measures/test_measures_fast.py compares them on random data with
NaN and on phantoms).

- :func:`nanpercentile_columns`: ``np.nanpercentile(a, q, axis=0)`` (method "linear") with one
  sort of the whole array instead of one partition per column; bit-identical for float32 and
  float64 input.
- :func:`rect_opening_columns`: ``ndimage.binary_opening(mask, ones((1, rows, cols))).any(axis=1)``
  from running counts along each axis: the columns a fully set ``rows x cols`` rectangle
  covers, without the 3-D opening's two passes over every pixel of the volume. Identical.
- :class:`SmoothedRows`: ``ndimage.gaussian_filter`` of a volume along its A-scans and
  B-scans, on the rows a band needs only (with the margin the filter reads). Identical values
  on those rows.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _linear_neighbours(
    virt: np.ndarray, top: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy's method "linear" around the virtual index ``virt`` over ``top + 1`` values: the
    lower and upper neighbour indices (the last value from the top index on, the first below
    index 0) and the weight taken against them, as NumPy computes them."""
    prev = np.floor(virt)
    nxt = prev + 1.0
    above = virt >= top
    below = virt < 0
    prev = np.where(above, -1.0, np.where(below, 0.0, prev))
    nxt = np.where(above, -1.0, np.where(below, 0.0, nxt))
    gamma = virt - prev
    last = np.maximum(top, 0)
    prev_i = np.where(prev < 0, last, prev).astype(np.intp)
    next_i = np.where(nxt < 0, last, nxt).astype(np.intp)
    return prev_i, next_i, gamma


def nanpercentile_columns(a: np.ndarray, q: float) -> np.ndarray:
    """Per column of ``a`` (m, k), the ``q``-th percentile of its non-NaN values, NaN where a
    column has none: ``np.nanpercentile(a, q, axis=0)``, method "linear" (Hyndman & Fan's 7th).

    .. math:: v = q (c - 1),\\quad x_{(\\lfloor v \\rfloor)} + (v - \\lfloor v \\rfloor)
              (x_{(\\lfloor v \\rfloor + 1)} - x_{(\\lfloor v \\rfloor)})

    where ``c`` is the column's count of values and ``x`` its sorted values. The interpolation
    is NumPy's own (its index formula, its rounding in the input's dtype, and the upper-bound
    form for weights of 0.5 and more), so the result equals NumPy's bit for bit.
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"nanpercentile_columns wants a 2-D array, not shape {a.shape}")
    s = np.sort(a, axis=0)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(s), axis=0)
    # NumPy's virtual index for method "linear", written as it writes it.
    virt = (count - 1) * np.true_divide(q, 100)
    # NumPy's neighbours: floor and floor + 1; the last value from the top index on (its
    # index -1), the first below index 0. The weight is taken against those indices.
    prev_i, next_i, gamma = _linear_neighbours(virt, count - 1)
    cols = np.arange(a.shape[1])
    lo, hi = s[prev_i, cols], s[next_i, cols]
    # NumPy's _lerp with a Python-float weight: both products in the input's dtype.
    diff = hi - lo
    dt = s.dtype if np.issubdtype(s.dtype, np.floating) else np.float64
    res = lo + diff * gamma.astype(dt)
    res = np.where(gamma >= 0.5, hi - diff * (1.0 - gamma).astype(dt), res)
    return np.where(count > 0, res, np.nan).astype(dt, copy=False)


def _runs_at_least(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Where a run of ``length`` set elements starts along ``axis`` (False where it would leave
    the array): the erosion by a segment anchored at its first element."""
    m = mask.shape[axis]
    if length <= 1:
        return mask.copy()
    out = np.zeros(mask.shape, bool)
    if length > m:
        return out

    def part(start: int, stop: int) -> tuple[slice, ...]:
        index = [slice(None)] * mask.ndim
        index[axis] = slice(start, stop)
        return tuple(index)

    n = m - length + 1
    if length <= 16:
        # Short runs (a cavity's few pixels): the AND of shifted copies, no counting.
        full = mask[part(0, n)].copy()
        for s in range(1, length):
            full &= mask[part(s, s + n)]
    else:
        c = np.cumsum(mask, axis=axis, dtype=np.int32)
        full = (
            c[part(length - 1, m)]
            - np.concatenate([np.zeros_like(c[part(0, 1)]), c[part(0, n - 1)]], axis=axis)
        ) == length
    out[part(0, n)] = full
    return out


def rect_opening_columns(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Per (B-scan, column) of ``mask`` (n, h, w), whether a ``rows x cols`` rectangle of set
    pixels lying wholly inside the image covers that column: the A-scans the morphological
    opening by that rectangle keeps anything in, i.e.
    ``ndimage.binary_opening(mask, np.ones((1, rows, cols), bool)).any(axis=1)``.

    An opening is the union of the structuring element's translates that fit in the set, so a
    column is kept when some fitting rectangle spans it: find where rectangles fit (runs of
    ``rows`` along the A-scan, then runs of ``cols`` across), reduce over depth, and spread
    each fitting start over the ``cols`` columns it spans.
    """
    if mask.ndim != 3:
        raise ValueError(f"rect_opening_columns wants an (n, h, w) mask, not shape {mask.shape}")
    n, h, w = mask.shape
    if rows > h or cols > w:
        return np.zeros((n, w), bool)
    tall = _runs_at_least(mask, rows, axis=1)
    starts = _runs_at_least(tall, cols, axis=2).any(axis=1)  # (n, w): rectangle's first column
    if cols <= 1:
        return starts
    c = np.cumsum(starts, axis=1, dtype=np.int32)
    c = np.concatenate([np.zeros((n, 1), np.int32), c], axis=1)
    j = np.arange(w)
    lo = np.clip(j - cols + 1, 0, None)
    return (c[:, j + 1] - c[:, lo]) > 0


class SmoothedRows:
    """``ndimage.gaussian_filter(np.nan_to_num(volume, nan=fill).astype(np.float32),
    (0, *sigma))`` for an (n, h, w) volume, computed on demand on the rows asked for only.

    The filter is separable and each output row reads ``radius`` rows either side
    (``int(4 * sigma + 0.5)``, SciPy's default truncation), so filtering rows ``r0 - radius``
    to ``r1 + radius`` gives rows ``r0`` to ``r1`` exactly as the whole volume would (where the
    window meets the image's edge, it is the image's edge: the same reflection). A retina
    band is a fifth to a third of a B-scan's rows, so most of the filter's work is skipped.
    The rows computed are kept; a later request outside them filters the union once more.
    """

    def __init__(self, volume: np.ndarray, fill: float, sigma: tuple[float, float]) -> None:
        self.volume, self.fill, self.sigma = volume, float(fill), sigma
        self.radius = int(4.0 * float(sigma[0]) + 0.5) if sigma[0] > 1e-15 else 0
        self.height = int(volume.shape[1])
        self._img: np.ndarray | None = None
        self._r0 = self._r1 = 0

    @property
    def covered(self) -> tuple[int, int]:
        """The rows smoothed so far, ``(first, end)``; ``(0, 0)`` before any request."""
        return (self._r0, self._r1) if self._img is not None else (0, 0)

    def rows(self, r0: int, r1: int) -> tuple[np.ndarray, int]:
        """``(window, first)``: the smoothed rows ``first`` to ``first + len`` covering at
        least ``[r0, r1)`` (clipped to the image)."""
        r0 = min(max(0, int(r0)), self.height - 1)
        r1 = max(min(self.height, int(r1)), r0 + 1)
        if self._img is None or r0 < self._r0 or r1 > self._r1:
            if self._img is not None:
                r0, r1 = min(r0, self._r0), max(r1, self._r1)
            a0, a1 = max(0, r0 - self.radius), min(self.height, r1 + self.radius)
            part = self.volume[:, a0:a1]
            if np.issubdtype(part.dtype, np.floating):
                part = np.nan_to_num(part, nan=self.fill)
            img = ndimage.gaussian_filter(np.asarray(part, dtype=np.float32), (0.0, *self.sigma))
            self._img, self._r0, self._r1 = img[:, r0 - a0 : r1 - a0], r0, r1
        assert self._img is not None
        return self._img, self._r0

    def band(self, tops: np.ndarray, bottoms: np.ndarray) -> tuple[np.ndarray, int]:
        """The smoothed rows covering every finite ``tops`` to ``bottoms`` (a row either side
        for rounding); the whole image when nothing is known."""
        t = tops[np.isfinite(tops)]
        b = bottoms[np.isfinite(bottoms)]
        if t.size == 0 or b.size == 0:
            return self.rows(0, self.height)
        return self.rows(int(np.floor(t.min())) - 1, int(np.ceil(b.max())) + 2)


def order_statistics(values: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """The ``ks``-th smallest of ``values`` (1-D, no NaN): ``np.partition(values, ks)[ks]``
    without moving every value.

    One pass bins the values into 4096 bins of equal width; binning is monotonic (a larger value
    never lands in a lower bin), so the k-th smallest is the (k - count below its bin)-th of its
    bin, selected among that bin's few values. Exact, in the values' own dtype.
    """
    v = np.ravel(values)
    ks = np.asarray(ks, dtype=np.intp)
    if v.size == 0 or ks.size == 0:
        return v[:0].copy()
    lo, hi = v.min(), v.max()
    if not lo < hi:
        return np.full(ks.shape, lo, dtype=v.dtype)
    bins = 4096
    scale = bins / (float(hi) - float(lo))
    # (v - lo) * scale, each step rounded the same way for every element: monotonic in v.
    idx = np.minimum(((v - lo) * v.dtype.type(scale)).astype(np.intp), bins - 1)
    before = np.concatenate([[0], np.cumsum(np.bincount(idx, minlength=bins))])
    out = np.empty(ks.shape, dtype=v.dtype)
    for i, k in enumerate(ks.ravel()):
        b = int(np.searchsorted(before, k, side="right")) - 1
        members = v[idx == b]
        r = int(k - before[b])
        out.flat[i] = np.partition(members, r)[r]
    return out


def percentiles_float64(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.percentile(values.astype(np.float64), q)`` for a 1-D float array without NaN and an
    array of percentiles ``q``, bit for bit, from :func:`order_statistics` of the values as
    they are (the float64 copy holds the same numbers in the same order)."""
    v = np.ravel(values)
    qf = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    n = v.size
    # NumPy's method "linear": index (n - 1) q, neighbours floor and floor + 1 (the last value
    # from the top index on), weight against them, interpolation in float64.
    virt = (n - 1) * qf
    ip, inx, gamma = _linear_neighbours(virt, n - 1)
    uniq, inv = np.unique(np.concatenate([ip, inx]), return_inverse=True)
    stats = order_statistics(v, uniq).astype(np.float64)[inv]
    a, b = stats[: ip.size], stats[ip.size :]
    diff = b - a
    res = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), res)

"""What the viewer shows, computed once per scan and cached: the B-scans as a windowed 8-bit
volume, the SLO (or an en-face projection when the file has none) with where each B-scan lies,
the segmentation boundaries and the columns where they are missing.

Tiles are PNGs at one of a few widths (the smallest at least as wide as the screen asks for, never
wider than the scan), so a resized window reuses what is cached and a phone gets small images.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from qmroct.metrics.intensity import to_display
from qmroct.oct.model import Scan, ScanMeta
from qmroct.oct.segmentation import CONFIDENT_STEP, Segmentation

TILE_WIDTHS = (256, 384, 512, 768, 1024, 1536, 2048)
#: An edge step under two noise SDs (segmentation confidence below 2/CONFIDENT_STEP) is not told
#: apart from noise at the 95 % level: the defect overlay marks those A-scans as unreliable.
WEAK_EDGE_SD = 2.0


def tile_width(asked: int, native: int) -> int:
    """The cached width serving a request for ``asked`` pixels."""
    for w in TILE_WIDTHS:
        if w >= asked:
            return min(w, native)
    return min(TILE_WIDTHS[-1], native)


def window_u8(vol: np.ndarray) -> np.ndarray:
    """A display volume as uint8, windowed P0.5..P99.5 over the whole volume (NaN black), so
    brightness is comparable between B-scans of one scan."""
    finite = vol[np.isfinite(vol)]
    if finite.size > 2_000_000:
        finite = finite[:: finite.size // 2_000_000 + 1]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    span = float(hi - lo) or 1.0
    g = np.clip((np.nan_to_num(vol, nan=float(lo)) - lo) / span, 0.0, 1.0)
    return (g * 255.0 + 0.5).astype(np.uint8)


def png(u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # Level 1: a B-scan change must stay far below 50 ms; size matters less on a local network.
    Image.fromarray(u8).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class LoadedScan:
    meta: ScanMeta
    volume: np.ndarray  # uint8 (n, h, w)
    fundus: np.ndarray | None  # uint8 (H, W)
    fundus_kind: str  # "slo", "en-face" or ""
    segmentation: Segmentation | None

    def geometry(self) -> dict[str, Any]:
        """B-scan positions in fundus pixels, for the line drawn on the SLO."""
        n, h, w = self.volume.shape
        out: dict[str, Any] = {"n": n, "height": h, "width": w, "kind": self.fundus_kind}
        if self.fundus is None:
            return out
        fh, fw = self.fundus.shape
        out.update(fundus_width=fw, fundus_height=fh)
        if self.fundus_kind == "en-face":
            out["lines"] = [[0, i + 0.5, fw, i + 0.5] for i in range(n)]
        elif self.meta.ring is not None:
            c = self.meta.ring.center
            out["ring"] = [c.x, c.y, self.meta.ring.radius_px]
        elif self.meta.bscan_positions and len(self.meta.bscan_positions) == n:
            out["lines"] = [
                [p.start.x, p.start.y, p.end.x, p.end.y] for p in self.meta.bscan_positions
            ]
        return out

    def overlay(self, i: int, width: int) -> dict[str, Any]:
        """Boundaries of B-scan ``i`` (rows, sampled to at most ``width`` columns) and the column
        ranges where the ILM or BM was not found (the defect overlay)."""
        n, h, w = self.volume.shape
        out: dict[str, Any] = {"width": w, "height": h, "layers": {}, "defects": []}
        seg = self.segmentation
        if seg is None:
            return out
        step = max(1, w // max(16, width))
        cols = list(range(0, w, step))
        for name, arr in seg.as_dict().items():
            row = arr[i]
            out["layers"][name] = [
                None if not np.isfinite(row[c]) else round(float(row[c]), 1) for c in cols
            ]
        out["columns"] = cols
        missing = ~(np.isfinite(seg.ilm[i]) & np.isfinite(seg.bm[i]))
        low = seg.confidence[i] < WEAK_EDGE_SD / CONFIDENT_STEP
        bad = missing | low
        start = None
        for c in range(w + 1):
            on = c < w and bool(bad[c])
            if on and start is None:
                start = c
            elif not on and start is not None:
                out["defects"].append([start, c])
                start = None
        return out


def load(scan: Scan, segmentation: Segmentation | None) -> LoadedScan:
    display = to_display(scan.bscans, scan.meta.scale)
    volume = window_u8(display)
    fundus_kind = ""
    fundus = None
    if scan.fundus is not None and scan.fundus.size:
        fundus = window_u8(scan.fundus.astype(np.float32))
        fundus_kind = "slo"
    elif volume.shape[0] > 1:
        # No SLO in the file: the en-face projection (mean over depth) stands in; row i is
        # B-scan i.
        fundus = window_u8(np.nanmean(display, axis=1))
        fundus_kind = "en-face"
    if segmentation is not None and segmentation.ilm.shape != volume.shape[::2]:
        segmentation = None
    return LoadedScan(
        meta=scan.meta,
        volume=volume,
        fundus=fundus,
        fundus_kind=fundus_kind,
        segmentation=segmentation,
    )


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


class ScanImages:
    """Loaded scans (a few, by LRU) and their encoded tiles (many, by LRU)."""

    def __init__(
        self,
        loader: Callable[[str], LoadedScan],
        *,
        max_scans: int = 6,
        max_tiles: int = 4000,
    ) -> None:
        self._loader = loader
        self._scans = _LRU(max_scans)
        self._tiles = _LRU(max_tiles)
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def scan(self, scan_hash: str) -> LoadedScan:
        got = self._scans.get(scan_hash)
        if got is not None:
            return got
        # One load per scan even when the page asks for several tiles at once.
        with self._lock:
            lock = self._loading.setdefault(scan_hash, threading.Lock())
        with lock:
            got = self._scans.get(scan_hash)
            if got is None:
                got = self._loader(scan_hash)
                self._scans.put(scan_hash, got)
        return got

    def bscan(self, scan_hash: str, i: int, asked_width: int) -> bytes:
        loaded = self.scan(scan_hash)
        n, h, w = loaded.volume.shape
        if not 0 <= i < n:
            raise IndexError(f"B-scan {i} outside 0..{n - 1}")
        tw = tile_width(asked_width, w)
        key = (scan_hash, "b", i, tw)
        got = self._tiles.get(key)
        if got is None:
            img = loaded.volume[i]
            if tw != w:
                th = max(1, round(h * tw / w))
                img = np.asarray(Image.fromarray(img).resize((tw, th), Image.BILINEAR))
            got = png(img)
            self._tiles.put(key, got)
        return got

    def fundus(self, scan_hash: str, asked_width: int) -> bytes | None:
        loaded = self.scan(scan_hash)
        if loaded.fundus is None:
            return None
        fh, fw = loaded.fundus.shape
        tw = tile_width(asked_width, fw)
        key = (scan_hash, "f", tw)
        got = self._tiles.get(key)
        if got is None:
            img = loaded.fundus
            if tw != fw:
                img = np.asarray(
                    Image.fromarray(img).resize((tw, max(1, round(fh * tw / fw))), Image.BILINEAR)
                )
            got = png(img)
            self._tiles.put(key, got)
        return got

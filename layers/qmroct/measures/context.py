"""What every measure needs from a scan, computed once: the display image and the segmentation.

``qmroct measure run`` computes a :class:`ScanContext` once and passes it to every measure as
``inputs["context"]``. In the pipeline, the derive action computes it once per scan and stores
it with :meth:`ScanContext.to_bytes`; each measure action loads it with
:meth:`ScanContext.from_bytes` instead of downloading, decoding and segmenting the scan again.

The stored form is an uncompressed ``.npz`` (no pickle): the display image as float32, exactly
as the measures read it, the boundaries, the fundus image, the device's own segmentation, the
optic-disc mask, the retina checks every measure makes (fraction found, CNR against the
vitreous, usable B-scans), the linear reflectivity image, and the metadata as JSON. Chosen by
measuring a paper-size volume (25 x 496 x 512): zlib gains little on speckle and costs about a
second per volume, and float16 would change the values the measures read.

A measure action loads it without copying (since product version 6): the members of an
uncompressed zip are contiguous ``.npy`` bytes, so each array is a read-only view of the
downloaded object (:class:`_StoredArrays`), its header parsed when the member is first read.
Loading costs ~3 ms instead of the ~25 ms (and 28 MB of fresh memory) ``np.load`` took to
copy every member out. The linear image (``to_linear`` of the display image, float32) is stored
from version 6 on: four measures read it, and each rebuilt it from the display image (~60 ms of
``powf`` per volume), where the derive action now computes it once. The retina and vitreous
masks are not stored: each is ~6 ms to rebuild from the boundaries, less than its 6 MB would
cost every measure to download.

The raw B-scans are not stored (since product version 3): no measure of the suite reads them,
all read the display image, and they were half of the 53 MB every one of the nine measure
activations of a scan downloaded and decoded (about 0.1 s of CPU each, object store and action
together). A measure that does read ``scan.bscans`` gets them from the scan itself on first
access (:class:`StoredScan`, the measure action gives it the scan's presigned URL), the same
reader on the same bytes as the derive action's. Contexts stored by earlier versions (with the
B-scans, without the linear image) still load; what they lack is computed on first use.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qmroct.errors import QmroctError
from qmroct.metrics.contrast import cnr
from qmroct.metrics.disc import DiscRegion, disc_region
from qmroct.metrics.intensity import DISPLAY_MAP, to_display, to_linear
from qmroct.metrics.regions import retina_mask, vitreous_mask
from qmroct.oct.model import Scan, ScanMeta
from qmroct.oct.segmentation import BOUNDARIES, Segmentation, segment

#: Names the stored context's arrays start with, so nothing collides.
_SEG, _DEVICE = "seg_", "device_"

#: The least fraction of A-scans with both ILM and BM found for a retina to count as detected.
MIN_RETINA_FRACTION = 0.2
#: The least retina/vitreous CNR for the "retina" to be tissue rather than boundaries found in
#: noise (pure speckle gives about 0.1; the phantom at its weakest signal about 0.26).
MIN_RETINA_CNR = 0.2


class _StoredArrays(Mapping[str, np.ndarray]):
    """The arrays of an uncompressed npz as read-only views of its bytes, each one's ``.npy``
    header parsed on first access (see the module docstring). A member stored otherwise
    (compressed, or a header version numpy's public readers do not take) is read by
    ``np.load``, as before. Pickled (object) arrays are refused, as ``allow_pickle=False``."""

    #: The fixed part of a zip local file header (APPNOTE.TXT 4.3.7): signature, version,
    #: flags, method, time, date, CRC-32, sizes, then the name's and extra field's lengths.
    _LOCAL = struct.Struct("<4s5H3L2H")

    def __init__(self, data: bytes, source: str) -> None:
        self._data = data
        self._source = source
        self._cache: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            self._members = {
                i.filename.removesuffix(".npy"): i for i in zf.infolist() if not i.is_dir()
            }

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._read(self._members[key])
        return self._cache[key]

    def _read(self, info: zipfile.ZipInfo) -> np.ndarray:
        view = self._view(info) if info.compress_type == zipfile.ZIP_STORED else None
        if view is not None:
            return view
        with np.load(io.BytesIO(self._data), allow_pickle=False) as z:
            return z[info.filename.removesuffix(".npy")]

    def _view(self, info: zipfile.ZipInfo) -> np.ndarray | None:
        fields = self._LOCAL.unpack_from(self._data, info.header_offset)
        if fields[0] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename}: no local file header")
        start = info.header_offset + self._LOCAL.size + fields[-2] + fields[-1]
        end = start + info.file_size
        if end > len(self._data):
            raise ValueError(f"member {info.filename} ends past the end of the file")
        head = io.BytesIO(self._data[start : min(end, start + 65536)])
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            return None
        if dtype.hasobject:
            raise ValueError(f"member {info.filename} holds Python objects (pickle)")
        offset, count = start + head.tell(), int(np.prod(shape, dtype=np.int64))
        if offset + count * dtype.itemsize != end:
            raise ValueError(f"member {info.filename}: {shape} {dtype} is not its size")
        flat = np.frombuffer(self._data, dtype=dtype, count=count, offset=offset)
        return flat.reshape(shape, order="F" if fortran else "C")


class StoredScan(Scan):
    """A scan loaded from a stored context without its raw B-scans: ``bscans`` calls ``load``
    on first access (and checks its shape); ``shape`` answers without it."""

    def __init__(
        self,
        meta: ScanMeta,
        shape: tuple[int, int, int],
        segmentation: dict[str, np.ndarray],
        fundus: np.ndarray | None,
        load: Callable[[], np.ndarray] | None,
        source: str,
    ) -> None:
        # Not Scan.__init__: it would validate the B-scans, which are not here yet.
        self.meta = meta
        self.segmentation = segmentation
        self.fundus = fundus
        self._shape = shape
        self._load = load
        self._source = source
        self._bscans: np.ndarray | None = None

    @property  # type: ignore[override]
    def bscans(self) -> np.ndarray:
        if self._bscans is None:
            if self._load is None:
                raise QmroctError(
                    f"{self._source}: the stored context holds no raw B-scans and there is no "
                    "scan to read them from"
                )
            bscans = np.asarray(self._load(), dtype=np.float32)
            if bscans.shape != self._shape:
                raise QmroctError(
                    f"{self._source}: the scan's B-scans {bscans.shape} do not match its "
                    f"stored context {self._shape}"
                )
            self._bscans = bscans
        return self._bscans

    @bscans.setter
    def bscans(self, value: np.ndarray) -> None:
        self._bscans = value
        self._shape = tuple(value.shape)  # type: ignore[assignment]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape


@dataclass
class ScanContext:
    scan: Scan
    segmentation: Segmentation
    display: np.ndarray = field(repr=False)
    scale_used: str = ""

    @classmethod
    def build(cls, scan: Scan, inputs: dict[str, object] | None = None) -> ScanContext:
        """The context for ``scan``: reuse ``inputs["context"]`` or ``inputs["segmentation"]``."""
        inputs = inputs or {}
        ctx = inputs.get("context")
        if isinstance(ctx, ScanContext) and ctx.scan is scan:
            return ctx
        seg = inputs.get("segmentation")
        if isinstance(seg, bytes | bytearray):
            seg = Segmentation.from_bytes(bytes(seg))
        if not isinstance(seg, Segmentation):
            seg = segment(scan)
        display = to_display(scan.bscans, scan.meta.scale)
        return cls(
            scan=scan, segmentation=seg, display=display, scale_used=DISPLAY_MAP[scan.meta.scale]
        )

    # ---- the stored form (see the module docstring) ----
    def to_bytes(self) -> bytes:
        """The context as an uncompressed npz: what a measure action loads instead of the scan."""
        s = self.segmentation
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(self.scan.meta.model_dump_json()),
            "scale_used": np.array(self.scale_used),
            "display": self.display,
            "disc_mask": self.disc.mask,
            "disc_sources": np.array(list(self.disc.sources), dtype=str),
            # Per-scan facts every measure asks for (has_retina, usable B-scans): once, here.
            "retina_fraction": np.array(self.retina_fraction),
            "retina_cnr": np.array(self.retina_cnr),
            "usable": self.usable,
            **{_SEG + k: getattr(s, k) for k in (*BOUNDARIES, "confidence")},
            **{_DEVICE + k: v for k, v in self.scan.segmentation.items()},
        }
        if self.scan.fundus is not None:
            arrays["fundus"] = self.scan.fundus
        # What four measures read and each rebuilt: once, here (product version 6); not when
        # it is the display image itself (a vendor display map: nothing to compute).
        linear, linear_name = self.linear_and_name
        if linear is not self.display:
            arrays["linear"], arrays["linear_name"] = linear, np.array(linear_name)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @staticmethod
    def is_stored_context(data: bytes) -> bool:
        """Whether ``data`` is a stored context (else, e.g., a segmentation alone)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return "display" in z.files and "meta" in z.files
        except (ValueError, OSError, zipfile.BadZipFile):
            return False

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        source: str = "context",
        bscans: Callable[[], np.ndarray] | None = None,
    ) -> ScanContext:
        """Load a context stored by :meth:`to_bytes`; ``source`` names it in errors;
        ``bscans`` reads the raw B-scans if a measure asks for them (see the module docstring)."""
        try:
            a = _StoredArrays(data, source)
        except (ValueError, OSError, zipfile.BadZipFile, struct.error) as exc:
            raise QmroctError(f"{source}: not a stored scan context: {exc}") from exc
        try:
            return cls._from_arrays(a, source, bscans)
        except (ValueError, OSError, zipfile.BadZipFile, struct.error, KeyError) as exc:
            raise QmroctError(f"{source}: unreadable stored scan context: {exc}") from exc

    @classmethod
    def _from_arrays(
        cls,
        a: Mapping[str, np.ndarray],
        source: str,
        bscans: Callable[[], np.ndarray] | None,
    ) -> ScanContext:
        missing = {"meta", "display", "disc_mask"} - set(a)
        missing |= {_SEG + k for k in (*BOUNDARIES, "confidence")} - set(a)
        if missing:
            raise QmroctError(f"{source}: stored scan context lacks {', '.join(sorted(missing))}")
        display = a["display"]
        if display.ndim != 3:
            raise QmroctError(f"{source}: display must be 3-D (n, h, w), got {display.shape}")
        meta = ScanMeta.model_validate_json(str(a["meta"]))
        # The small arrays are copied (well under 1 MB): a segmentation kept after the context
        # (the web view caches one per scan) must not hold the whole downloaded object alive.
        # The volume-sized ones (display, linear) stay views of it.
        device = {
            k.removeprefix(_DEVICE): np.array(v) for k, v in a.items() if k.startswith(_DEVICE)
        }
        scan: Scan
        if "bscans" in a:  # stored before product version 3
            scan = Scan(meta=meta, bscans=a["bscans"], segmentation=device, fundus=a.get("fundus"))
            if display.shape != scan.bscans.shape:
                raise QmroctError(
                    f"{source}: display {display.shape} does not match bscans {scan.shape}"
                )
        else:
            shape = tuple(int(x) for x in display.shape)
            scan = StoredScan(meta, shape, device, a.get("fundus"), bscans, source)  # type: ignore[arg-type]
        seg = Segmentation(**{k: np.array(a[_SEG + k]) for k in (*BOUNDARIES, "confidence")})
        ctx = cls(scan=scan, segmentation=seg, display=display, scale_used=str(a["scale_used"]))
        # A cached_property is an instance attribute once set: the stored values are reused.
        for name in ("retina_fraction", "retina_cnr"):
            if name in a:
                ctx.__dict__[name] = float(a[name])
        if "usable" in a and a["usable"].shape == (scan.shape[0],):
            ctx.__dict__["usable"] = a["usable"].astype(bool)
        if "linear" in a and a["linear"].shape == display.shape:
            ctx.__dict__["linear_and_name"] = (a["linear"], str(a["linear_name"]))
        ctx.__dict__["disc"] = DiscRegion(
            mask=a["disc_mask"].astype(bool),
            sources=tuple(str(x) for x in a.get("disc_sources", np.array([], dtype=str))),
        )
        return ctx

    @property
    def height(self) -> int:
        return int(self.scan.shape[1])

    @cached_property
    def retina(self) -> np.ndarray:
        """Pixels from the ILM to BM of the usable A-scans (:attr:`usable_ascans`), (n, h, w)."""
        s = self.usable_segmentation
        return retina_mask(self.height, s.ilm, s.bm)

    @cached_property
    def vitreous(self) -> np.ndarray:
        """Pixels above the ILM of the usable A-scans (:attr:`usable_ascans`), (n, h, w)."""
        return vitreous_mask(self.height, self.usable_segmentation.ilm)

    @cached_property
    def linear_and_name(self) -> tuple[np.ndarray, str]:
        """Relative linear reflectivity estimated from the display image, and its map's name."""
        return to_linear(self.display, self.scan.meta.scale)

    @cached_property
    def retina_fraction(self) -> float:
        """Fraction of A-scans where both ILM and BM were found in order."""
        s = self.segmentation
        ok = np.isfinite(s.ilm) & np.isfinite(s.bm) & (s.bm > s.ilm)
        return float(ok.mean())

    @cached_property
    def retina_cnr(self) -> float:
        """CNR of the segmented retina against the vitreous, on up to 8 B-scans."""
        n = self.display.shape[0]
        idx = np.unique(np.linspace(0, n - 1, min(n, 8)).round().astype(int))
        return cnr(self.display[idx], self.retina[idx], self.vitreous[idx])

    @property
    def has_retina(self) -> bool:
        if self.retina_fraction < MIN_RETINA_FRACTION:
            return False
        c = self.retina_cnr
        # Without a vitreous to compare with (retina at the very top), trust the boundaries.
        return not np.isfinite(c) or c >= MIN_RETINA_CNR

    def no_retina_reason(self) -> str:
        if self.retina_fraction < MIN_RETINA_FRACTION:
            return (
                f"no detectable retina: ILM and BM found in {self.retina_fraction:.0%} of A-scans "
                f"(at least {MIN_RETINA_FRACTION:.0%} needed)"
            )
        return (
            f"no detectable retina: the layers found are no brighter than the vitreous "
            f"(CNR {self.retina_cnr:.2f} < {MIN_RETINA_CNR})"
        )

    @cached_property
    def usable(self) -> np.ndarray:
        """B-scans with a retina to measure: boundaries found in half the A-scans and a linear
        level at least half the volume's median (a blink fails both). Shape (n,), bool."""
        n = self.scan.shape[0]
        if n < 3:
            return np.ones(n, dtype=bool)
        s = self.segmentation
        found = (np.isfinite(s.ilm) & np.isfinite(s.bm)).mean(axis=1)
        # Linear level: the display map compresses a blink to a small step.
        level = np.array([np.nanmean(b[::4, ::4] ** 4) for b in self.display])
        return (found >= 0.5) & (level >= 0.5 * np.nanmedian(level))

    @cached_property
    def usable_ascans(self) -> np.ndarray:
        """A-scans whose boundaries a measure may read, (n, w) bool: those of usable B-scans
        (:attr:`usable`; a blink is blink_motion's finding) whose retina does not reach the image
        top (:attr:`Segmentation.clipped`: cut off, or wrapped back as the mirror image in a
        steep myopic eye). On a clipped A-scan the ILM is pinned to row 0 as a marker, the RNFL
        is unknown and the confidence is zero: read as retina, the marker is a retina reaching
        the top row, with the folded tissue inside it (thickness, fluid, a fovea, a tilt that
        are not there). Only completeness reads the marker, as the cut it is (OSCAR-IB O)."""
        return self.usable[:, None] & ~self.segmentation.clipped

    @cached_property
    def usable_segmentation(self) -> Segmentation:
        """The segmentation with every boundary of the A-scans outside :attr:`usable_ascans`
        set to NaN (and their confidence to 0): what every measure reads."""
        keep = self.usable_ascans
        if keep.all():
            return self.segmentation
        s = self.segmentation

        def masked(a: np.ndarray) -> np.ndarray:
            return np.where(keep, a, np.nan).astype(a.dtype, copy=False)

        return Segmentation(
            ilm=masked(s.ilm),
            rnfl=masked(s.rnfl),
            onl_top=masked(s.onl_top),
            onl_bottom=masked(s.onl_bottom),
            bm=masked(s.bm),
            confidence=np.where(keep, s.confidence, 0.0).astype(s.confidence.dtype, copy=False),
        )

    @cached_property
    def disc(self) -> DiscRegion:
        """The optic-disc A-scans (from the SLO or the device's segmentation), which the
        boundary checks leave out: no RPE, BM or ONL to find there."""
        return disc_region(self.scan)

    @cached_property
    def centre_index(self) -> int:
        """The B-scan shown in pictures: the middle one, or the nearest usable one (a blink in
        the middle shows nothing)."""
        mid = self.scan.shape[0] // 2
        ok = self.usable
        if ok[mid] or not ok.any():
            return mid
        candidates = np.flatnonzero(ok)
        return int(candidates[np.argmin(np.abs(candidates - mid))])

"""The optic disc in a B-scan: the A-scans where a layer segmentation has nothing to find.

At the optic nerve head there is no RPE or Bruch's membrane and no outer nuclear layer; the
nerve fibres turn into the cup. Boundary plausibility (OSCAR-IB A) and the BM tilt and ONL
balance (OSCAR-IB B) are not defined there, so the measures leave these A-scans out and report
how many they left out. Two sources, each used when the scan carries it:

- the fundus: the disc found on the SLO (:func:`qmroct.metrics.centration.find_disc`) and the
  fundus position of every A-scan (the B-scan start/end points, or the ring geometry);
- the device's segmentation: Heyex and other vendors leave Bruch's membrane undefined across
  the disc while the ILM goes on, so a long run of A-scans with the device's ILM but no BM marks
  the disc.

The fundus cue needs a compact blob of a disc's size (0.55 to 1.55 times 1.8 mm across),
bright or dark, standing out of the fundus by 2.5 robust SDs, so a fovea or a bright patch is
not taken for the disc; a bright crescent at a dark disc's margin is peripapillary atrophy, not
the disc; on a ring scan the ring's own centre is the prior. A disc cut by the fundus frame is
not found there, and the device's segmentation has to show it.

Citation: optic disc area 0.8 to 5.5 mm², mean 2.7 mm² (about 1.8 mm across) in normal eyes
(Jonas et al., IOVS 1988). Units: masks and fractions of A-scans. Direction: none (a share of
the scan that is not graded, reported next to the verdict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qmroct.metrics.centration import DiscCandidate, disc_candidates
from qmroct.oct.model import Scan, ScanMeta, ScanPattern

#: Mean optic disc diameter (Jonas et al. 1988) and the range of sizes accepted as a disc.
DISC_DIAMETER_UM = 1800.0
DISC_SIZE_RANGE = (0.55, 1.55)
#: How far the disc must stand out of the fundus: peak contrast over the robust SD of the
#: contrast map (a bright or dark blob of the wrong kind, such as the fovea, stays below).
DISC_MIN_CONTRAST_SD = 2.5
#: A rim around the disc edge (peripapillary atrophy, the scleral ring) left out as well.
DISC_MARGIN_UM = 100.0
#: The shortest run of A-scans without the device's BM that counts as the disc.
DEVICE_MIN_RUN_UM = 300.0


@dataclass(frozen=True)
class DiscRegion:
    """The optic-disc A-scans of a scan and how they were found."""

    mask: np.ndarray  # (n, w) bool, True inside the disc
    sources: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        """Fraction of all A-scans inside the disc. Units: fraction."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def any(self) -> bool:
        return bool(self.mask.any())

    def note(self) -> str:
        """The phrase the verdict reasons carry, e.g. 'optic disc excluded (16% of A-scans,
        from the SLO)'; empty when nothing was excluded."""
        if not self.any:
            return ""
        return (
            f"optic disc excluded ({self.fraction:.0%} of A-scans, "
            f"from the {' and the '.join(self.sources)})"
        )


def ascan_fundus_xy(meta: ScanMeta, n: int, w: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Fundus pixel coordinates (x, y) of every A-scan, each of shape (n, w), or None.

    Lines and volumes: A-scan ``j`` of B-scan ``k`` lies at ``start_k + (end_k - start_k)
    j / (w - 1)``. Rings: on the circle of ``meta.ring`` starting at the B-scan's start point,
    turning temporal, superior, nasal, inferior (counter-clockwise on the image for an OS eye,
    clockwise for an OD eye, y pointing down).
    """
    pos = meta.bscan_positions
    if not pos:
        return None
    if meta.pattern is ScanPattern.RING:
        ring = meta.ring
        if ring is None or n != 1:
            return None
        cx, cy, r = ring.center.x, ring.center.y, ring.radius_px
        phi0 = math.atan2(-(pos[0].start.y - cy), pos[0].start.x - cx)
        turn = 1.0 if (meta.laterality or "OD").upper() == "OS" else -1.0
        phi = phi0 + turn * 2.0 * math.pi * np.arange(w) / w
        return (cx + r * np.cos(phi))[None, :], (cy - r * np.sin(phi))[None, :]
    if meta.pattern not in (ScanPattern.LINE, ScanPattern.VOLUME) or len(pos) != n:
        return None
    t = np.arange(w) / max(w - 1, 1)
    sx = np.array([p.start.x for p in pos])[:, None]
    sy = np.array([p.start.y for p in pos])[:, None]
    ex = np.array([p.end.x for p in pos])[:, None]
    ey = np.array([p.end.y for p in pos])[:, None]
    return sx + (ex - sx) * t[None, :], sy + (ey - sy) * t[None, :]


def disc_mask_from_fundus(
    xy: tuple[np.ndarray, np.ndarray],
    centre: tuple[float, float],
    diameter_px: float,
    margin_px: float = 0.0,
) -> np.ndarray:
    """A-scans whose fundus point lies within the disc (radius + ``margin_px``), (n, w) bool.

    .. math:: m_{kj} = \\lVert p_{kj} - c \\rVert \\le D/2 + \\delta
    """
    x, y = xy
    return np.hypot(x - centre[0], y - centre[1]) <= diameter_px / 2.0 + margin_px


def runs_at_least(row: np.ndarray, min_len: int) -> np.ndarray:
    """Keep only the runs of True in a 1-D bool array that are ``min_len`` or longer."""
    out = np.zeros_like(row, dtype=bool)
    padded = np.concatenate([[False], row.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a >= min_len:
            out[a:b] = True
    return out


def disc_mask_from_device(ilm: np.ndarray, bm: np.ndarray, min_run: int) -> np.ndarray:
    """A-scans where the device found the ILM but left BM undefined, in runs of at least
    ``min_run`` A-scans (a vessel shadow or a missed A-scan is shorter), (n, w) bool."""
    gap = np.isfinite(ilm) & ~np.isfinite(bm)
    return np.array([runs_at_least(r, min_run) for r in gap]).reshape(gap.shape)


def plausible_disc(diameter_px: float, expected_px: float, lo: float, hi: float) -> bool:
    """Whether a blob found on the fundus has a disc's size: ``lo <= D / D_expected <= hi``."""
    return expected_px > 0 and lo <= diameter_px / expected_px <= hi


def fundus_disc(scan: Scan) -> DiscCandidate | None:
    """The disc on the scan's SLO, or None: the best of
    :func:`qmroct.metrics.centration.disc_candidates` (both polarities, bright atrophy at a
    dark disc's margin passed over; a ring's own centre as the prior), kept only if it is
    compact, of a disc's size and stands out of the fundus by ``DISC_MIN_CONTRAST_SD``."""
    meta, fundus = scan.meta, scan.fundus
    fs = meta.fundus_spacing_um
    if fundus is None or fs is None or fundus.ndim != 2:
        return None
    expected = DISC_DIAMETER_UM / fs.lateral_um
    if min(fundus.shape) < 2 * expected:
        return None
    ring = meta.ring if meta.pattern is ScanPattern.RING else None
    found = disc_candidates(
        fundus,
        expected_diameter_px=expected,
        prior=(ring.center.x, ring.center.y) if ring else None,
        prior_sigma_px=ring.radius_px if ring else None,
    )
    if not found:
        return None
    best = found[0]
    if not best.plausible or best.z < DISC_MIN_CONTRAST_SD:
        return None
    if not plausible_disc(best.diameter_px, expected, *DISC_SIZE_RANGE):
        return None
    return best


def disc_from_fundus(scan: Scan) -> np.ndarray | None:
    """Disc A-scans from the SLO and the A-scans' fundus positions, or None when the scan does
    not carry them or no disc-sized blob stands out of the fundus (:func:`fundus_disc`)."""
    n, _, w = scan.shape
    xy = ascan_fundus_xy(scan.meta, n, w)
    if xy is None:
        return None
    best = fundus_disc(scan)
    if best is None:
        return None
    fs = scan.meta.fundus_spacing_um
    assert fs is not None  # fundus_disc found a disc, so the scale is known
    return disc_mask_from_fundus(
        xy, (best.x, best.y), best.diameter_px, DISC_MARGIN_UM / fs.lateral_um
    )


def disc_from_device(scan: Scan) -> np.ndarray | None:
    """Disc A-scans from the device's own segmentation (ILM without BM), or None without it."""
    seg = scan.segmentation or {}
    ilm, bm = seg.get("ILM"), seg.get("BM")
    n, _, w = scan.shape
    if ilm is None or bm is None or ilm.shape != (n, w) or bm.shape != (n, w):
        return None
    run = max(3, int(math.ceil(DEVICE_MIN_RUN_UM / scan.meta.spacing.lateral_um)))
    return disc_mask_from_device(ilm, bm, run)


def disc_region(scan: Scan) -> DiscRegion:
    """The optic-disc A-scans of ``scan``: the union of what the SLO and the device's
    segmentation show (see the module docstring); an empty mask when neither shows a disc."""
    n, _, w = scan.shape
    mask = np.zeros((n, w), dtype=bool)
    sources: list[str] = []
    for name, found in (
        ("SLO", disc_from_fundus(scan)),
        ("device segmentation", disc_from_device(scan)),
    ):
        if found is not None and found.any():
            mask |= found
            sources.append(name)
    return DiscRegion(mask, tuple(sources))

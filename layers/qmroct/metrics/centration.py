"""Centration: fovea at the grid centre (macular scans), ring on the disc centre (ring scans)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage


def _nan_smooth(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    num = ndimage.convolve(np.where(ok, values, 0.0), kernel, mode="nearest")
    den = ndimage.convolve(ok.astype(np.float64), kernel, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0.2, num / den, np.nan)


def fovea_position(
    thickness: np.ndarray,
    lateral_um: float,
    bscan_um: float | None,
    *,
    radius_um: float = 300.0,
    central: tuple[float, float] = (0.35, 0.65),
) -> tuple[float, float]:
    """The fovea as the minimum of the smoothed retinal thickness map (the AURA method).

    The thickness map (BM minus ILM, shape (n, w)) is averaged over a disc of ``radius_um``; the
    minimum is searched in the ``central`` fraction of each axis (a line scan: lateral only).
    The minimum is refined to sub-pixel by a parabola through its neighbours on each axis.
    Returns (bscan index, column) as floats; NaN when no thickness is known there.
    Citation: Lang et al., Biomed Opt Express 2013 (AURA tool).
    """
    t = np.asarray(thickness, dtype=np.float64)
    n, w = t.shape
    rx = max(1, int(round(radius_um / lateral_um)))
    ry = int(round(radius_um / bscan_um)) if n > 1 and bscan_um else 0
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    kern = ((xx / rx) ** 2 + ((yy / ry) ** 2 if ry else 0.0) <= 1.0).astype(np.float64)
    smooth = _nan_smooth(t, kern / kern.sum())
    r0, r1 = (int(n * central[0]), int(np.ceil(n * central[1]))) if n > 2 else (0, n)
    c0, c1 = int(w * central[0]), int(np.ceil(w * central[1]))
    roi = smooth[r0:r1, c0:c1]
    if not np.isfinite(roi).any():
        return float("nan"), float("nan")
    k, j = np.unravel_index(np.nanargmin(roi), roi.shape)
    k, j = int(k + r0), int(j + c0)
    # Sub-pixel: the vertex of a parabola through the minimum and its two neighbours, so that a
    # fovea between two B-scans (an even count) reads as centred.
    return k + _vertex(smooth[max(k - 1, 0) : k + 2, j], k), j + _vertex(
        smooth[k, max(j - 1, 0) : j + 2], j
    )


def _vertex(three: np.ndarray, at: int) -> float:
    if three.size != 3 or not np.all(np.isfinite(three)):
        return 0.0
    a, b, c = three
    den = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den > 0 else 0.0


def fovea_offset_um(
    position: tuple[float, float], shape: tuple[int, int], lateral_um: float, bscan_um: float | None
) -> tuple[float, float, float]:
    """Offset of the fovea from the scan centre: (dx, dy, distance) in µm.

    .. math:: d = \\sqrt{((j - \\tfrac{w-1}{2})\\,\\Delta x)^2 + ((k - \\tfrac{n-1}{2})\\,\\Delta y)^2}

    Citation: Pak et al., IOVS 2013 (thickness error significant beyond 200 µm).
    Units: µm. Direction: lower is better.
    """
    k, j = position
    n, w = shape
    dx = (j - (w - 1) / 2.0) * lateral_um
    dy = (k - (n - 1) / 2.0) * (bscan_um or 0.0) if n > 1 else 0.0
    return float(dx), float(dy), float(np.hypot(dx, dy))


#: Disc diameter, in pixels, that find_disc works at: bigger fundus images are block-averaged.
DISC_WORK_PX = 40
#: Peaks of each polarity examined as disc candidates.
DISC_CANDIDATES = 4
#: A candidate's blob must fill at least this share of the disc of its own size centred on its
#: centroid: the disc is a compact oval, peripapillary atrophy a crescent or annulus hugging
#: the disc margin, whose centroid falls in its hollow (beta-zone atrophy is a crescent on the
#: temporal side or a ring around the disc: Jonas, Curr Opin Ophthalmol 2005).
DISC_MIN_FILL = 0.6
#: Blob sizes accepted as a disc, relative to the expected diameter (disc area 0.8 to 5.5 mm²,
#: Jonas et al., IOVS 1988: diameters 0.55 to 1.45 times the mean).
DISC_SIZE_RATIO = (0.5, 1.6)
#: A blob standing out of the fundus by fewer robust SDs of the contrast map is no disc (the
#: fovea or a bright patch stays below).
DISC_MIN_Z = 2.5
#: A bright blob whose centre lies this many summed radii from a dark disc candidate's centre
#: touches its margin: peripapillary atrophy, not the disc (see disc_candidates).
ATROPHY_TOUCH = (0.6, 1.25)


@dataclass(frozen=True)
class DiscCandidate:
    """A disc-sized blob on the fundus: centre and diameter in fundus pixels, ``contrast`` its
    peak local-minus-surround contrast (positive), ``z`` that contrast in robust SDs of the
    contrast map, ``fill`` its compactness (share of the disc of its own size that it covers),
    ``prior`` the weight of its distance from the expected centre, ``atrophy`` whether it was
    taken for peripapillary atrophy at a dark disc's margin, ``score`` what ranks them."""

    x: float
    y: float
    diameter_px: float
    contrast: float
    bright: bool
    z: float
    fill: float
    prior: float
    score: float
    atrophy: bool = False

    @property
    def plausible(self) -> bool:
        """Compact, of a disc's size, standing out of the fundus, and not atrophy."""
        return (
            self.score > 0
            and not self.atrophy
            and self.fill >= DISC_MIN_FILL
            and (self.z >= DISC_MIN_Z)
        )


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _opened_component(raw: np.ndarray, y0: int, x0: int, se: np.ndarray) -> np.ndarray:
    """The connected region of ``raw`` opened with ``se`` that holds ``(y0, x0)``, else that of
    ``raw`` itself, else nothing (a full-size bool mask).

    The same as opening the whole image and labelling it, at the cost of the component's
    bounding box only: opening never joins or leaves a 4-connected component of ``raw`` (a
    pixel survives erosion only if the connected ``se`` around it lies in one component, and
    the dilation of what survives stays inside that component), so ``(y0, x0)``'s opened blob
    is the opened blob of its own component, which the box holds with a margin.
    """
    region = np.zeros(raw.shape, dtype=bool)
    lab, _ = ndimage.label(raw)
    if not lab[y0, x0]:
        return region
    own = lab == lab[y0, x0]
    ys, xs = np.nonzero(own)
    m = max(se.shape) + 1
    y1, y2 = max(0, int(ys.min()) - m), min(raw.shape[0], int(ys.max()) + m + 1)
    x1, x2 = max(0, int(xs.min()) - m), min(raw.shape[1], int(xs.max()) + m + 1)
    opened = ndimage.binary_opening(own[y1:y2, x1:x2], structure=se)
    ol, _ = ndimage.label(opened)
    if ol[y0 - y1, x0 - x1]:
        region[y1:y2, x1:x2] = ol == ol[y0 - y1, x0 - x1]
    else:
        region = own
    return region


def disc_candidates(
    fundus: np.ndarray,
    *,
    expected_diameter_px: float,
    prior: tuple[float, float] | None = None,
    prior_sigma_px: float | None = None,
    bright: bool | None = None,
) -> list[DiscCandidate]:
    """Disc candidates of both polarities on an SLO/fundus image, best first.

    The contrast map is the local mean over a disc-sized box minus the mean of a box three times
    larger, on the image smoothed at an eighth of the disc diameter (the template approach of
    Lalonde et al., IEEE TMI 2001, reduced to box filters). Its strongest local extrema of each
    sign are the candidates: the disc is bright on some SLO images and dark on others (the
    infrared SLO of Spectralis often shows a dark disc inside a bright rim). Each candidate's
    blob is the connected region beyond half its peak contrast. The score is

    .. math:: s = z \\cdot \\mathrm{fill}^2 \\cdot e^{-d^2 / 2\\sigma^2}

    with ``z`` the peak contrast in robust SDs (1.4826 MAD) of the map, ``fill`` the blob's
    compactness and ``d`` the distance from ``prior`` (the ring scan's own centre: the operator
    centres the ring on the disc, so the disc lies near it unless the ring is decentred; sigma
    is the ring radius, so a ring off by half a disc still finds its disc). A blob whose fill is
    under ``DISC_MIN_FILL`` (a crescent or annulus of peripapillary atrophy, bright at the disc
    margin) or whose size is outside ``DISC_SIZE_RATIO`` scores a tenth. With a prior, so does
    a bright blob touching the margin of a compact dark disc-sized blob that stands out
    (``DISC_MIN_Z``) and lies nearer the prior: beta-zone atrophy bares the sclera, which is
    bright on every fundus image, and lies right at the disc margin (Jonas, Curr Opin
    Ophthalmol 2005), while the disc inside it can be dark. Without a prior the rule is not
    applied: next to a bright disc the plain fundus reads as dark against a surround the disc
    raises, and would pass for a dark disc with the real one as its atrophy. A bright disc with
    bright atrophy merges into one bright blob, a little off the disc centre.
    Coordinates are in the input's pixels.
    """
    img = np.nan_to_num(np.asarray(fundus, dtype=np.float64), nan=float(np.nanmedian(fundus)))
    f = max(1, int(round(expected_diameter_px)) // DISC_WORK_PX)
    if f > 1:
        # A disc ~40 px across is found as well as one 150 px across, at a tenth of the cost:
        # search a block-mean copy and map the answer back to full-size pixels.
        img = _block_mean(img, f)

    def back(v: float) -> float:
        return v * f + (f - 1) / 2.0

    d = max(3, int(round(expected_diameter_px / f)))
    sm = ndimage.gaussian_filter(img, sigma=max(1.0, d / 8.0))
    surround = ndimage.uniform_filter(sm, size=3 * d, mode="reflect")
    contrast = ndimage.uniform_filter(sm, size=d, mode="reflect") - surround
    mad = 1.4826 * float(np.median(np.abs(contrast - np.median(contrast))))
    scale = mad if mad > 0 else float(np.std(contrast)) or 1.0
    # No peak within a quarter diameter of the edge, where the boxes see mostly reflection; a
    # disc partly cut by the frame still peaks inside that.
    b = d // 4
    inner = np.zeros(contrast.shape, dtype=bool)
    inner[b : contrast.shape[0] - b, b : contrast.shape[1] - b] = True
    if not inner.any():
        inner[:] = True
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    rs = max(1, d // 8)
    sy, sx = np.mgrid[-rs : rs + 1, -rs : rs + 1]
    se = sx**2 + sy**2 <= rs**2
    out: list[DiscCandidate] = []
    signs = (1.0, -1.0) if bright is None else ((1.0,) if bright else (-1.0,))
    for sign in signs:
        c = np.where(inner, sign * contrast, -np.inf)
        peaks = inner & (c > 0) & (c >= ndimage.maximum_filter(c, size=d, mode="nearest"))
        py, px = np.nonzero(peaks)
        order = np.argsort(c[py, px])[::-1][:DISC_CANDIDATES]
        for y0, x0 in zip(py[order], px[order], strict=True):
            peak = float(c[y0, x0])
            # Opened with a disc a quarter of its diameter across: vessels leaving a dark disc
            # are dark too, and would otherwise join its blob and scatter its shape. A blob
            # thinner than that (a narrow crescent) is kept as it is.
            raw = (sign * (sm - surround)) > peak / 2.0
            region = _opened_component(raw, int(y0), int(x0), se)
            if region.sum() < 3:
                region = (xx - x0) ** 2 + (yy - y0) ** 2 <= (d / 2.0) ** 2
            ys, xs = np.nonzero(region)
            cx, cy = float(xs.mean()), float(ys.mean())
            diam = float(2.0 * np.sqrt(ys.size / np.pi))
            own = (xx - cx) ** 2 + (yy - cy) ** 2 <= (diam / 2.0) ** 2
            fill = float(region[own].mean()) if own.any() else 0.0
            z = peak / scale
            x_full, y_full, diam_full = back(cx), back(cy), diam * f
            w_prior = 1.0
            if prior is not None and prior_sigma_px:
                dist = math.hypot(x_full - prior[0], y_full - prior[1])
                w_prior = math.exp(-0.5 * (dist / prior_sigma_px) ** 2)
            ratio = diam / d
            plausible = fill >= DISC_MIN_FILL and DISC_SIZE_RATIO[0] <= ratio <= DISC_SIZE_RATIO[1]
            score = z * fill**2 * w_prior * (1.0 if plausible else 0.1)
            out.append(
                DiscCandidate(x_full, y_full, diam_full, peak, sign > 0, z, fill, w_prior, score)
            )
    discs = [k for k in out if not k.bright and k.score > 0 and k.fill >= DISC_MIN_FILL]
    discs = [k for k in discs if k.z >= DISC_MIN_Z]
    lo, hi = ATROPHY_TOUCH
    for i, k in enumerate(out):
        if not k.bright or prior is None:
            continue
        for dark in discs:
            reach = (k.diameter_px + dark.diameter_px) / 2.0
            nearer = dark.prior > k.prior
            if nearer and lo * reach <= math.hypot(k.x - dark.x, k.y - dark.y) <= hi * reach:
                out[i] = replace(k, atrophy=True, score=0.1 * k.score)
                break
    out.sort(key=lambda k: k.score, reverse=True)
    return out


def find_disc(
    fundus: np.ndarray,
    *,
    expected_diameter_px: float,
    bright: bool | None = None,
    prior: tuple[float, float] | None = None,
    prior_sigma_px: float | None = None,
) -> tuple[float, float, float, float]:
    """Locate the optic disc on an SLO/fundus image: (x, y, diameter_px, contrast).

    The best of :func:`disc_candidates` (both polarities unless ``bright`` is given; a compact
    disc-sized blob preferred over a crescent of atrophy; near ``prior`` when given). Its
    diameter is the equivalent diameter of its blob. Citation: the template approach of
    Lalonde et al., IEEE TMI 2001, reduced to box filters.
    """
    found = disc_candidates(
        fundus,
        expected_diameter_px=expected_diameter_px,
        prior=prior,
        prior_sigma_px=prior_sigma_px,
        bright=bright,
    )
    if not found:
        c = (np.asarray(fundus).shape[1] - 1) / 2.0, (np.asarray(fundus).shape[0] - 1) / 2.0
        return c[0], c[1], float(expected_diameter_px), 0.0
    best = found[0]
    return best.x, best.y, best.diameter_px, best.contrast


def ring_offset_ratio(
    ring_centre: tuple[float, float], disc_centre: tuple[float, float], disc_diameter: float
) -> float:
    """Ring decentration relative to the disc size.

    .. math:: r = \\frac{\\lVert c_{ring} - c_{disc} \\rVert}{D_{disc}}

    Citation: OCTolyzer (Burke et al., 2025) warns above 0.15. Units: fraction. Direction:
    lower is better.
    """
    if disc_diameter <= 0:
        return float("nan")
    return float(
        np.hypot(ring_centre[0] - disc_centre[0], ring_centre[1] - disc_centre[1]) / disc_diameter
    )

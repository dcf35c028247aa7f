"""Signs of retinal pathology inside the retina, beyond its total thickness.

Intraretinal fluid shows on OCT as round hyporeflective (cystoid) spaces in the inner and outer
nuclear layers, about as dark as the vitreous (e.g. the OCT classification of diabetic macular
oedema, Panozzo et al., Eur J Ophthalmol 2004; cystoid spaces in OCTDL's AMD and DME classes,
Kulyabin et al., Sci Data 2024). The healthy nuclear layers are dark but well above the noise
floor: a pixel region close to the noise floor inside them is fluid, not tissue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qmroct.metrics.regions import band_mask

#: A region darker than this fraction of the way from the noise floor to the local ONL level
#: is a cavity. Healthy ONL speckle, smoothed over a few pixels, stays above about half its level.
CAVITY_LEVEL = 0.25
#: Columns whose ONL stands less than this many noise floors above it cannot show a cavity.
MIN_CONTRAST = 3.0


def cavity_columns(
    linear: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    onl_top: np.ndarray,
    bm: np.ndarray,
    noise: float,
    *,
    min_rows: int,
    min_cols: int,
    rpe_rows: int,
    smooth_px: tuple[float, float] = (1.0, 1.5),
) -> tuple[np.ndarray, np.ndarray]:
    """Per A-scan, whether a hyporeflective cavity lies between ``top`` and ``bottom``.

    ``linear`` (n, h, w) is relative linear reflectivity; ``top``/``bottom`` bound the nuclear
    layers (RNFL lower edge to ELM), ``onl_top`` to ``bottom`` is the ONL whose level is the
    reference, ``bm`` locates the RPE used to normalise each column (a vessel shadow darkens the
    whole column, the RPE with it, so it is no cavity). ``noise`` is the vitreous median.
    Returns ``(cavity, assessable)``, both boolean (n, w): a cavity is a dark region at least
    ``min_rows`` tall and ``min_cols`` wide (a morphological opening: speckle dips of a single
    frame are a pixel or two across, cystoid spaces 50 to 250 µm); a column is assessable where its ONL stands ``MIN_CONTRAST`` noise
    floors above the floor.
    """
    n, h, w = linear.shape
    img = ndimage.gaussian_filter(
        np.nan_to_num(linear, nan=noise).astype(np.float32), (0, *smooth_px)
    )
    onl = band_mask(h, onl_top, bottom)
    rpe = band_mask(h, bm - rpe_rows, bm)
    count = onl.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        onl_col = np.where(count > 0, np.where(onl, img, 0).sum(axis=1) / count, np.nan)
        rpe_col = np.where(rpe, img, 0).max(axis=1)
        ratio = onl_col / np.where(rpe_col > 0, rpe_col, np.nan)
    # The ONL/RPE ratio of the B-scan (a median, so cysts in some columns do not move it), times
    # each column's own RPE: the level the ONL would have in this column without fluid.
    typical = np.full((n, 1), np.nan)
    for b in range(n):
        ok = np.isfinite(ratio[b])
        if ok.any():
            typical[b, 0] = np.median(ratio[b, ok])
    ref = typical * rpe_col
    level = noise + CAVITY_LEVEL * (ref - noise)
    band = band_mask(h, top, bottom)
    dark = band & (img < level[:, None, :])
    opened = ndimage.binary_opening(dark, structure=np.ones((1, min_rows, min_cols), bool))
    cavity = opened.any(axis=1)
    assessable = np.isfinite(ref) & (ref > MIN_CONTRAST * noise)
    return cavity & assessable, assessable

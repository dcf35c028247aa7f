"""Synthetic OCT scans with known, injected defects: the ground truth for every measure.

A phantom is a layered retina rendered in linear reflectivity, like a Spectralis raw export:

- bands from the vitreous down: RNFL, GCL+IPL, INL, OPL, ONL, ELM, myoid zone, EZ, outer
  segments, IZ, RPE/Bruch's membrane, choroid (fading with depth) and sclera, with relative
  reflectivities taken from published Spectralis intensity profiles (RPE > EZ > RNFL > OPL ~ IPL
  > ELM > INL > ONL);
- a foveal pit for macular patterns (inner layers vanish, the ONL thickens), an RNFL following the
  TSNIT double hump for ring scans around the optic disc;
- vessel shadows (vessels are bright in the inner retina and attenuate everything below),
  multiplicative speckle (gamma, as after averaging several frames) and an additive noise floor;
- an SLO fundus image (uint8 values) with an optic disc, vessels and the scan's position on it.

Every pixel is a multiple of 2**-16, so the phantom passes bit-identically through both writers
(.vol float32 and DICOM OPT 16-bit with an exact power-of-two scale). Output is deterministic for
a given pattern, defect set, seed and size.

Anatomy varies with the seed within published normal ranges (:class:`Anatomy`, drawn from its
own random stream so the defects keep theirs): layer thicknesses, the foveal pit, curvature,
a natural tilt, band reflectivities and media clarity, the number and width of the major vessels,
the disc's size and place, and speckle. ``anatomy="fixed"`` gives the reference eye instead.

Sizes: ``small`` (fast tests: volume 16 x 256 x 256 with 7.74 um axial pixels, line and ring
1 x 496 x 512) and ``paper`` (volume 25 x 496 x 512 = 25 MB float32, line and ring 1 x 496 x 768).

Each defect takes a severity in [0, 1]; :data:`DEFECT_DOCS` and the ``_defect_*`` docstrings
give the mapping to physical units, which :class:`PhantomTruth` records in ``physical``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

from qmroct.oct.model import (
    BscanPosition,
    IntensityScale,
    Point,
    RingGeometry,
    Scan,
    ScanMeta,
    ScanPattern,
    Spacing,
)

DEFECTS: tuple[str, ...] = (
    "low_signal",
    "blur",
    "decentration",
    "ring_offset",
    "tilt",
    "cutoff_top",
    "cutoff_bottom",
    "blink",
    "axial_motion",
    "lateral_motion",
    "vignetting",
    "shadowing",
    "layer_artefact",
    "oedema",
    "drusen",
    "macular_hole",
)

DEFECT_DOCS: dict[str, str] = {
    "low_signal": "signal attenuated by 20*s dB against a fixed noise floor (signal_loss_db)",
    "blur": "Gaussian defocus, sigma 3.5*s px on both axes (blur_fwhm_um, axial)",
    "decentration": "fovea moved 1000*s um from the scan centre (fovea_offset_um); macular only",
    "ring_offset": "ring centre moved 0.5*s disc diameters from the disc centre "
    "(ring_offset_ratio, ring_offset_um); ring only",
    "tilt": "retina tilted by 12*s degrees in physical units across the B-scan (tilt_deg)",
    "cutoff_top": "retina raised until the ILM is 60*s um above the image top (top_overshoot_um)",
    "cutoff_bottom": "retina lowered until BM is 60*s um below the image bottom "
    "(bottom_overshoot_um)",
    "blink": "volumes: round(1 + 0.25*s*(n-1)) consecutive B-scans lose all signal (blink_bscans);"
    " one B-scan: 30*s % of the A-scans go dark (blink_fraction)",
    "axial_motion": "volumes: a saccade moves later B-scans by 150*s um axially; one B-scan: a "
    "step of 150*s um at one column (axial_motion_um)",
    "lateral_motion": "volumes: a block of B-scans shifted sideways by 400*s um; one B-scan: the "
    "tissue jumps 400*s um at one column (lateral_motion_um)",
    "vignetting": "edge A-scans lose up to 90*s % of their signal (edge_loss_db at the edge)",
    "shadowing": "a media-opacity shadow over 25*s % of the width attenuates by 90*s % "
    "(shadow_width_um, shadow_loss_db)",
    "layer_artefact": "a bright membrane 25-45 um above the ILM over 20+60*s % of the width of a "
    "third of the B-scans (artefact_fraction); segmentation latches onto it",
    "oedema": "intraretinal fluid: INL, OPL and ONL thickened by a factor 1 + 1.5*s, smoothly "
    "over the macula (oedema_thickening_um at the thickest point), with hyporeflective cystoid "
    "spaces in the INL and ONL, 8*s per mm of B-scan where the swelling is over half its peak "
    "(oedema_cysts); the R criterion's defect",
    "drusen": "macular scans: domes of material between the RPE and Bruch's membrane lift the RPE "
    "and the retina above it; about 1 + 3*s per B-scan crossing the macula, each U(0.7, 1) * "
    "(63 + 437*s) um wide (the Beckman sizes: 63 um is where drusen start to count, over "
    "125 um they are large) and 0.12 to 0.25 times as tall as wide (drusen_height_um, the "
    "tallest; drusen_count); an R defect",
    "macular_hole": "macular scans: a full-thickness macular hole, every layer from the ILM to "
    "the photoreceptors missing over a minimum diameter of (150 + 450*s) * U(0.85, 1.15) um "
    "at the fovea (IVTS small <= 250, medium to 400, large above), its rim thickened by up "
    "to 50*s % (hole_diameter_um); an R defect",
}

QUANTUM = 2.0**-16
MAX_VALUE = 65534 * QUANTUM
NOISE_FLOOR = 2.0e-3  # mean linear intensity of the vitreous (noise only)
SPECKLE_LOOKS = 4.0
FAZ_RADIUS_UM = 250.0  # foveal avascular zone: no vessel comes closer to the foveal centre
BRANCH_END_UM = 2800.0  # perifoveal branches leave the arcades about this far from the fovea
BRANCH_SHADOW = 0.45  # peak attenuation under a branch (the major vessels take 0.7)  # gamma shape: speckle after averaging about four independent frames

# Band name, reflectivity (linear), thickness in um away from the fovea; inner bands thin at the
# fovea (pit), ONL and photoreceptors thicken. Order is depth order.
BANDS: tuple[tuple[str, float], ...] = (
    ("vitreous", 0.0),
    ("RNFL", 0.30),
    ("GCL_IPL", 0.09),
    ("INL", 0.045),
    ("OPL", 0.14),
    ("ONL", 0.025),
    ("ELM", 0.10),
    ("myoid", 0.04),
    ("EZ", 0.35),
    ("OS", 0.08),
    ("IZ", 0.20),
    ("RPE_BM", 0.45),
    ("choroid", 0.12),
    ("sclera", 0.015),
)
TRUE_BOUNDARIES = {"ILM": 1, "RNFL": 2, "ONL_top": 5, "ONL_bottom": 6, "BM": 12}


class Anatomy(BaseModel):
    """One healthy eye's anatomy, drawn per seed within published normal ranges.

    Each field cites where its range comes from; draws are normal with the cited SD, clipped at
    +-2 SD, unless a uniform range is named. The reference eye (``Anatomy()``) is the mean.
    """

    retina_scale: float = Field(
        1.0,
        description="all retinal layers; SD 8%: Spectralis central subfield 270 +- 22 um "
        "(Grover et al., Ophthalmology 2009)",
    )
    layer_scales: tuple[float, ...] = Field(
        (1.0,) * 5,
        description="GCL+IPL, INL, OPL, ONL, photoreceptors each; SD 6% (Ooto et al., IOVS 2011, "
        "normal layer thicknesses by Spectralis segmentation, CV 5-10%)",
    )
    rnfl_scale: float = Field(
        1.0,
        description="RNFL; SD 10%: mean peripapillary RNFL 97.2 +- 9.7 um "
        "(Bendschneider et al., IOVS 2010)",
    )
    pit_radius_um: float = Field(
        450.0,
        description="foveal pit (Gaussian sigma); SD 15%: pit diameter and depth vary by about "
        "15% between healthy eyes (Wagner-Schuman et al., IOVS 2011; Dubis et al., IOVS 2012)",
    )
    pit_depth: float = Field(
        1.0, description="fraction of the inner layers missing at the foveal centre; U(0.85, 1)"
    )
    curvature_scale: float = Field(
        1.0,
        description="sag of the posterior pole across the scan, U(0.5, 1.8) times 120 um over "
        "6 mm: emmetropic to moderately myopic eyes (steeper in myopia, Kuo et al., IOVS 2016)",
    )
    tilt_deg: float = Field(
        0.0,
        description="natural tilt of the retina, U(-2, 2) degrees: healthy eyes imaged with a "
        "centred beam (Uji et al., TVST 2017 find errors only beyond 13 degrees)",
    )
    reflectivity: tuple[float, ...] = Field(
        (1.0,) * 13,
        description="per band, below the vitreous; SD 10% (inter-subject band intensity "
        "variation in normative Spectralis profiles, e.g. Chen et al., IOVS 2013)",
    )
    media_gain_db: float = Field(
        0.0,
        description="media clarity, U(-2, 2) dB: healthy eyes span a few dB of Spectralis Q "
        "(Balk et al., PLoS One 2012: Q of good scans 25 to 35 dB)",
    )
    vessel_count: int = Field(6, description="major vessels leaving the disc, 4 to 8")
    vessel_width_um: tuple[float, float] = Field(
        (70.0, 150.0),
        description="range of major vessel widths, um: arcade vessels near the disc are 100 to "
        "150 um (Hubbard et al., Ophthalmology 1999, central retinal artery/vein equivalents)",
    )
    vessel_shadow: float = Field(
        0.7, description="peak attenuation under a major vessel, U(0.55, 0.8)"
    )
    disc_diameter_um: float = Field(
        1800.0,
        description="optic disc; 1880 +- 260 um vertically (Jonas et al., IOVS 1988: disc area "
        "2.69 +- 0.70 mm2), drawn with SD 200 um",
    )
    disc_distance_um: float = Field(
        3900.0,
        description="fovea to disc centre along the horizontal, U(3750, 4050) um (fovea-disc "
        "distance about 4.4 +- 0.4 mm in 3D, Jonas et al., PLoS One 2015)",
    )
    speckle_looks: float = Field(
        SPECKLE_LOOKS,
        description="gamma shape of the speckle, U(3, 6): ART averaging of a few frames",
    )

    @classmethod
    def draw(cls, seed: int) -> Anatomy:
        """The anatomy of seed ``seed``; its own stream, so defect draws do not change."""
        rng = np.random.default_rng([seed, 11])

        def normal(sd: float, mean: float = 1.0) -> float:
            return float(mean + sd * np.clip(rng.standard_normal(), -2.0, 2.0))

        return cls(
            retina_scale=normal(0.08),
            layer_scales=tuple(normal(0.06) for _ in range(5)),
            rnfl_scale=normal(0.10),
            pit_radius_um=normal(0.15 * 450.0, 450.0),
            pit_depth=float(rng.uniform(0.85, 1.0)),
            curvature_scale=float(rng.uniform(0.5, 1.8)),
            tilt_deg=float(rng.uniform(-2.0, 2.0)),
            reflectivity=tuple(normal(0.10) for _ in range(13)),
            media_gain_db=float(rng.uniform(-2.0, 2.0)),
            vessel_count=int(rng.integers(4, 9)),
            vessel_width_um=(70.0, float(rng.uniform(120.0, 150.0))),
            vessel_shadow=float(rng.uniform(0.55, 0.8)),
            disc_diameter_um=normal(200.0, 1850.0),
            disc_distance_um=float(rng.uniform(3750.0, 4050.0)),
            speckle_looks=float(rng.uniform(3.0, 6.0)),
        )


class PhantomTruth(BaseModel):
    """Everything known about a phantom: what was injected, where, and in which units."""

    pattern: str
    seed: int
    size: str
    defects: dict[str, float] = Field(default_factory=dict, description="severity 0..1")
    physical: dict[str, float] = Field(
        default_factory=dict, description="the same defects in physical units (see names)"
    )
    fovea_px: tuple[float, float] | None = Field(None, description="(bscan index, column)")
    scan_center_px: tuple[float, float] | None = Field(None, description="(bscan index, column)")
    fovea_offset_um: float | None = None
    disc_center: tuple[float, float] | None = Field(None, description="SLO (x, y) px")
    disc_diameter_px: float | None = None
    disc_bright: bool = Field(True, description="the disc brighter than the fundus on the SLO")
    atrophy_width_um: float = Field(0.0, description="peripapillary atrophy, widest point")
    wrapped: list[list[int]] = Field(
        default_factory=list, description="per B-scan, the A-scans whose ILM is above the image"
    )
    ring_center: tuple[float, float] | None = Field(None, description="SLO (x, y) px")
    ring_offset_ratio: float | None = None
    blink_bscans: list[int] = Field(default_factory=list)
    blink_columns: list[int] = Field(default_factory=list, description="dark A-scans, one B-scan")
    cut_bscans: list[int] = Field(default_factory=list, description="B-scans with retina cut")
    tilt_deg: float = 0.0
    axial_shift_px: list[float] = Field(default_factory=list, description="per B-scan")
    lateral_shift_px: list[float] = Field(default_factory=list, description="per B-scan")
    motion_column: int | None = Field(None, description="column of the jump in one B-scan")
    shadow_columns: list[int] = Field(default_factory=list)
    vessel_columns: list[int] = Field(default_factory=list, description="natural vessel shadows")
    artefact_bscans: list[int] = Field(default_factory=list)
    cyst_columns: list[list[int]] = Field(
        default_factory=list, description="per B-scan, the A-scans crossing a cystoid space"
    )
    druse_columns: list[list[int]] = Field(
        default_factory=list, description="per B-scan, the A-scans whose RPE a druse lifts > 10 um"
    )
    hole_columns: list[list[int]] = Field(
        default_factory=list, description="per B-scan, the A-scans inside a macular hole"
    )
    anatomy: Anatomy = Field(default_factory=Anatomy, description="this seed's healthy eye")
    noise_floor: float = NOISE_FLOOR
    signal_gain: float = 1.0
    spacing_um: tuple[float, float, float | None] = Field(
        (1.0, 1.0, None), description="lateral, axial, between B-scans"
    )


@dataclass(frozen=True)
class _Geometry:
    n: int
    h: int
    w: int
    lateral_um: float
    axial_um: float
    bscan_um: float | None
    slo: int
    slo_um: float


def _geometry(pattern: str, size: str) -> _Geometry:
    if size not in ("small", "paper"):
        raise ValueError(f"size must be 'small' or 'paper', not {size!r}")
    slo = 384 if size == "small" else 768
    slo_um = 8900.0 / slo  # 30 degree field
    if pattern == "volume":
        n, h, w, axial = (16, 256, 256, 7.74) if size == "small" else (25, 496, 512, 3.87)
        return _Geometry(n, h, w, 6000.0 / w, axial, 6000.0 / (n - 1), slo, slo_um)
    w = 512 if size == "small" else 768
    if pattern == "line":
        return _Geometry(1, 496, w, 9000.0 / w, 3.87, None, slo, slo_um)
    if pattern == "ring":
        return _Geometry(1, 496, w, 2 * math.pi * 1730.0 / w, 3.87, None, slo, slo_um)
    raise ValueError(f"pattern must be line, ring or volume, not {pattern!r}")


def make_phantom(
    pattern: str = "volume",
    *,
    defects: dict[str, float] | None = None,
    seed: int = 0,
    size: str = "small",
    anatomy: str = "natural",
    repeat: int = 0,
    disc_polarity: str = "bright",
    atrophy: bool = False,
    wrap: bool = False,
) -> tuple[Scan, PhantomTruth, dict[str, np.ndarray]]:
    """Make a phantom scan, its truth, and its true boundaries.

    Returns ``(scan, truth, boundaries)``; ``boundaries`` maps "ILM", "RNFL" (its lower edge),
    "ONL_top", "ONL_bottom" and "BM" to float32 rows of shape (n, w), where a boundary at row
    ``z`` means the band below it starts at ``z`` (pixel ``r`` covers ``[r - 0.5, r + 0.5)``).
    Defect names are those of :data:`DEFECTS`, severities in [0, 1]. ``anatomy`` is
    ``"natural"`` (each seed its own healthy eye, :meth:`Anatomy.draw`) or ``"fixed"`` (the
    reference eye for every seed). ``repeat`` > 0 images the same eye again: same anatomy and
    vessels, new speckle and noise (and new random placement of any defect), as a repeat scan
    of one eye seconds later; it measures test-retest.

    Eye options (each drawn per seed from its own stream, so the rest of the phantom keeps its
    random numbers): ``disc_polarity`` "bright" (the default), "dark" (the disc darker than the
    fundus, as on many infrared SLO images) or "natural" (either, per seed); ``atrophy`` adds
    beta-zone peripapillary atrophy, a bright crescent at the disc margin on the SLO
    (:meth:`_Builder._atrophy`); ``wrap`` raises part of the retina above the image top, where
    it folds back as the mirror image of Fourier-domain OCT (:meth:`_Builder._wrap_lift`, :meth:`_Builder._fold`), as in
    myopic eyes.
    """
    if anatomy not in ("natural", "fixed"):
        raise ValueError(f"anatomy must be 'natural' or 'fixed', not {anatomy!r}")
    if disc_polarity not in ("bright", "dark", "natural"):
        raise ValueError(f"disc_polarity must be bright, dark or natural, not {disc_polarity!r}")
    defects = dict(defects or {})
    for name, sev in defects.items():
        if name not in DEFECTS:
            raise ValueError(f"unknown defect {name!r}; known: {', '.join(DEFECTS)}")
        if not 0.0 <= float(sev) <= 1.0:
            raise ValueError(f"severity of {name} must be in [0, 1], got {sev}")
    g = _geometry(pattern, size)
    rng = np.random.default_rng(seed if repeat == 0 else [seed, 1000 + repeat])
    truth = PhantomTruth(
        pattern=pattern,
        seed=seed,
        size=size,
        defects={k: float(v) for k, v in defects.items()},
        spacing_um=(g.lateral_um, g.axial_um, g.bscan_um),
        anatomy=Anatomy.draw(seed) if anatomy == "natural" else Anatomy(),
    )
    sev = {k: float(defects.get(k, 0.0)) for k in DEFECTS}
    builder = _Builder(pattern, g, sev, rng, truth)
    builder.eye(disc_polarity, atrophy, wrap)
    return builder.build()


class _Builder:
    """Renders one phantom; each ``_defect_*`` method documents its physical mapping."""

    def __init__(
        self, pattern: str, g: _Geometry, sev: dict[str, float], rng: np.random.Generator,
        truth: PhantomTruth,
    ) -> None:  # fmt: skip
        self.pattern, self.g, self.sev, self.rng, self.truth = pattern, g, sev, rng, truth
        self.phys: dict[str, float] = {}
        self.anat = truth.anatomy

    def eye(self, disc_polarity: str, atrophy: bool, wrap: bool) -> None:
        """Draw the eye options of :func:`make_phantom` from their own stream."""
        rng = np.random.default_rng([self.truth.seed, 17])
        bright = rng.uniform() < 0.5 if disc_polarity == "natural" else disc_polarity == "bright"
        # The default bright disc keeps its historical contrast; a dark disc on an infrared
        # SLO is a shallower dip (the cup and the vessel trunk are dark, the rim is not).
        self.disc_gain = 90.0 if bright else -float(rng.uniform(35.0, 60.0))
        self.truth.disc_bright = bool(bright)
        self.atrophy = atrophy
        self.atrophy_rng = np.random.default_rng([self.truth.seed, 18])
        self.wrap = wrap
        self.wrap_rng = np.random.default_rng([self.truth.seed, 19])

    # ---- geometry on the fundus (um, fundus frame, origin at the SLO centre, y down) ----
    def _sample_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Fundus coordinates (um) of every A-scan, each (n, w), plus scan layout on the SLO."""
        g = self.g
        if self.pattern == "ring":
            self.disc_um = np.array([0.0, 0.0])
            s = self.sev["ring_offset"]
            disc_d_um = self.anat.disc_diameter_um
            angle = self.rng.uniform(0, 2 * math.pi)
            offset = 0.5 * s * disc_d_um
            self.ring_c_um = self.disc_um + offset * np.array([math.cos(angle), math.sin(angle)])
            self.phys["ring_offset_ratio"] = 0.5 * s
            self.phys["ring_offset_um"] = offset
            self.disc_d_um = disc_d_um
            self.fovea_um = np.array(
                [-self.anat.disc_distance_um, 300.0]
            )  # temporal (left, OD), inside the SLO field
            phi = math.pi - 2 * math.pi * np.arange(g.w) / g.w  # T, S, N, I
            x = self.ring_c_um[0] + 1730.0 * np.cos(phi)
            y = self.ring_c_um[1] - 1730.0 * np.sin(phi)
            return x[None, :], y[None, :]
        self.fovea_um = np.array([0.0, 0.0])
        self.disc_um = np.array([self.anat.disc_distance_um, -300.0])  # nasal (OD), in the SLO
        self.disc_d_um = self.anat.disc_diameter_um
        s = self.sev["decentration"]
        angle = self.rng.uniform(0, 2 * math.pi) if self.pattern == "volume" else 0.0
        off = 1000.0 * s * np.array([math.cos(angle), math.sin(angle)])
        self.phys["fovea_offset_um"] = float(np.hypot(*off))
        # The scan stays at the SLO centre; the eye (fovea and disc) moves under it.
        self.fovea_um = self.fovea_um + off
        self.disc_um = self.disc_um + off
        xs = (np.arange(g.w) - (g.w - 1) / 2) * g.lateral_um
        if self.pattern == "line":
            return xs[None, :], np.zeros((1, g.w))
        ys = (np.arange(g.n) - (g.n - 1) / 2) * (g.bscan_um or 0.0)
        return np.broadcast_to(xs, (g.n, g.w)).copy(), np.repeat(ys[:, None], g.w, axis=1)

    # ---- layer thicknesses (um) at fundus points ----
    def _thicknesses(self, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        r_f = np.hypot(x - self.fovea_um[0], y - self.fovea_um[1])
        pit = np.exp(-0.5 * (r_f / self.anat.pit_radius_um) ** 2)  # 1 at the foveal centre
        a = self.anat
        ls = [v * a.retina_scale for v in a.layer_scales]
        deep = a.pit_depth * pit  # inner layers missing at the centre
        d_disc = np.hypot(x - self.disc_um[0], y - self.disc_um[1])
        ang = np.arctan2(-(y - self.disc_um[1]), x - self.disc_um[0])  # 0 = nasal, pi/2 = superior
        tsnit = 95.0 - 35.0 * np.cos(2 * ang)  # thick superior/inferior, thin nasal/temporal
        rnfl = 22.0 + tsnit * np.clip(1730.0 / np.maximum(d_disc, 900.0), 0, 2) ** 1.2 * 0.8
        rnfl = rnfl * (1 - deep) * a.rnfl_scale * a.retina_scale
        gcl = (45.0 + 40.0 * np.exp(-(((r_f - 1100.0) / 700.0) ** 2))) * (1 - deep) * ls[0]
        inl = 35.0 * (1 - 0.95 * deep) * ls[1]
        opl = 30.0 * (1 - 0.7 * deep) * ls[2]
        onl = (75.0 + 35.0 * pit) * ls[3]
        s = self.sev["oedema"]
        if s:
            # Macular oedema: fluid swells the inner nuclear to outer nuclear layers, most
            # around the fovea; physical: the largest added thickness in um.
            swell = 1.0 + 1.5 * s * np.exp(-0.5 * (r_f / 1500.0) ** 2)
            added = (inl + opl + onl) * (swell - 1.0)
            inl, opl, onl = inl * swell, opl * swell, onl * swell
            self.phys["oedema_thickening_um"] = float(np.max(added)) if added.size else 0.0
        pr = ls[4]  # photoreceptor bands together
        bands = [rnfl, gcl, inl, opl, onl, 6.0 + 0 * pit, (20.0 + 5 * pit) * pr, (12.0 + 2 * pit) * pr,
                 (25.0 + 10 * pit) * pr, 8.0 + 0 * pit, 22.0 + 0 * pit, 250.0 + 0 * pit]  # fmt: skip
        self._defect_macular_hole(bands, r_f)
        self.druse_um = self._defect_drusen(x, y)
        # A druse lifts the RPE and everything above it; the RPE band is drawn this much
        # thicker here and its lower part repainted as druse material after rendering.
        bands[10] = bands[10] + self.druse_um
        return bands

    def _defect_macular_hole(self, bands: list[np.ndarray], r_f: np.ndarray) -> None:
        """A full-thickness macular hole: every band from the ILM to the interdigitation zone
        is missing within a minimum diameter of (150 + 450*s) * U(0.85, 1.15) um around the
        fovea, with walls sloping over a quarter of the radius, and the rim's nuclear layers
        swollen by up to 50*s % (the cuff of intraretinal fluid around a hole). Macular scans
        only. physical: ``hole_diameter_um``.
        """
        s = self.sev["macular_hole"]
        self.hole_keep = np.ones_like(r_f)
        if s <= 0 or self.pattern == "ring":
            self.phys["hole_diameter_um"] = 0.0
            return
        rng = np.random.default_rng([self.truth.seed, 14])
        diameter = (150.0 + 450.0 * s) * rng.uniform(0.85, 1.15)
        radius = diameter / 2
        keep = np.clip((r_f - radius) / (0.25 * radius + 20.0), 0, 1)
        rim = 1.0 + 0.5 * s * np.exp(-0.5 * ((r_f - radius) / 300.0) ** 2) * (r_f > radius)
        for i in range(10):  # RNFL .. IZ
            bands[i] = bands[i] * keep * (rim if i in (2, 3, 4) else 1.0)
        self.hole_keep = keep
        self.phys["hole_diameter_um"] = float(diameter)

    def _defect_drusen(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Drusen: domes between the RPE and Bruch's membrane, returned as the RPE's lift in um.

        About 1 + 3*s drusen (Poisson) per B-scan crossing the central 3 mm, centred on the
        B-scan, each U(0.7, 1) * (63 + 437*s) um wide (Beckman classification, Ferris et al.,
        Ophthalmology 2013: drusen count from 63 um, large over 125 um) and 0.12 to 0.25 times
        as tall as wide (the low domes of convex drusen, Khanifar et al., Ophthalmology 2008). Macular scans
        only; their own stream. physical: ``drusen_height_um`` (the tallest), ``drusen_count``.
        """
        s = self.sev["drusen"]
        lift = np.zeros_like(x, dtype=np.float64)
        if s <= 0 or self.pattern == "ring":
            self.phys["drusen_height_um"] = 0.0
            self.phys["drusen_count"] = 0.0
            return lift
        rng = np.random.default_rng([self.truth.seed, 15])
        fx, fy = self.fovea_um
        tallest, count = 0.0, 0
        for b in range(x.shape[0]):
            yb = float(y[b, 0])
            if abs(yb - fy) > 1400.0:
                continue
            half_span = math.sqrt(1500.0**2 - (yb - fy) ** 2)
            for _ in range(max(1, int(rng.poisson(1.0 + 3.0 * s)))):
                width = rng.uniform(0.7, 1.0) * (63.0 + 437.0 * s)
                height = width * rng.uniform(0.12, 0.25)
                cx = fx + rng.uniform(-half_span, half_span)
                cy = yb + rng.uniform(-0.2, 0.2) * width
                r = np.hypot(x - cx, y - cy) / (width / 2)
                lift = np.maximum(lift, height * np.clip(1.0 - r**2, 0, 1) ** 0.7)
                tallest, count = max(tallest, height), count + 1
        self.phys["drusen_height_um"] = float(tallest)
        self.phys["drusen_count"] = float(count)
        return lift

    def build(self) -> tuple[Scan, PhantomTruth, dict[str, np.ndarray]]:
        g = self.g
        x, y = self._sample_points()
        n = g.n
        x = np.broadcast_to(x, (n, g.w)).copy()
        y = np.broadcast_to(y, (n, g.w)).copy()
        self._defect_lateral_motion(x)
        thick_um = self._thicknesses(x, y)
        # ILM depth: a gently curved retina placed in the upper third of the window.
        xc = (np.arange(g.w) - (g.w - 1) / 2) / max(g.w - 1, 1)
        curve_um = 120.0 * (2 * xc) ** 2 if self.pattern != "ring" else 40.0 * np.cos(
            4 * math.pi * np.arange(g.w) / g.w)  # fmt: skip
        curve_um = curve_um * self.anat.curvature_scale
        xs_um = (np.arange(g.w) - (g.w - 1) / 2) * g.lateral_um
        natural_tilt = math.tan(math.radians(self.anat.tilt_deg)) * xs_um
        total_um = sum(t for t in thick_um[:-1])
        # Bruch's membrane is the smooth anchor; the ILM sits a retina's thickness above it, so
        # the thinner fovea shows as a pit.
        bm_um = 0.30 * g.h * g.axial_um + 330.0 + np.broadcast_to(curve_um, (n, g.w))
        bm_um = bm_um + natural_tilt[None, :] + self._defect_tilt()
        bm_um = bm_um + self._defect_axial_motion()
        ilm_um = self._defect_cutoff(bm_um - total_um, bm_um)
        ilm_um = ilm_um - self._wrap_lift(ilm_um)
        tops = [ilm_um]
        for t in thick_um:
            tops.append(tops[-1] + t)
        bounds = np.stack(tops) / g.axial_um  # (n_bands - 1, n, w) rows, ILM first
        image = self._render(bounds)
        self._paint_drusen(image, bounds)
        self._defect_cysts(image, bounds, x, y)
        image = self._vessels(image, bounds, x, y)
        self._defect_layer_artefact(image, bounds)
        self._fold(image, bounds)
        image = self._defect_blur(image)
        looks = self.anat.speckle_looks
        image *= self.rng.gamma(looks, 1.0 / looks, image.shape).astype(np.float32)
        gain = self._gain_map(image.shape)
        image *= gain
        image += self.rng.exponential(NOISE_FLOOR, image.shape).astype(np.float32)
        image = (np.round(np.clip(image, 0, MAX_VALUE) / QUANTUM) * QUANTUM).astype(np.float32)

        truth_bounds = {k: bounds[i - 1].astype(np.float32) for k, i in TRUE_BOUNDARIES.items()}
        self._finish_truth(truth_bounds, x, y)
        scan = self._scan(image, truth_bounds)
        self.truth.physical = self.phys
        return scan, self.truth, truth_bounds

    # ---- rendering ----
    def _render(self, bounds: np.ndarray) -> np.ndarray:
        """Anti-aliased bands: each pixel holds the area-weighted reflectivity it covers."""
        g = self.g
        rows = np.arange(g.h, dtype=np.float32)[None, :, None]
        refl = [0.0] + [r * f for (_, r), f in zip(BANDS[1:], self.anat.reflectivity, strict=True)]
        image = np.zeros((g.n, g.h, g.w), np.float32)
        for k in range(bounds.shape[0]):
            below = np.clip(rows + 0.5 - bounds[k][:, None, :].astype(np.float32), 0, 1)
            image += np.float32(refl[k + 1] - refl[k]) * below
        # Choroid fades with depth below BM (scattering losses); sclera stays dim.
        bm = bounds[TRUE_BOUNDARIES["BM"] - 1][:, None, :]
        depth_um = (rows - bm) * g.axial_um
        fade = np.where(depth_um > 0, np.exp(-np.clip(depth_um, 0, None) / 180.0), 1.0)
        image *= fade.astype(np.float32)
        # Mild overall attenuation with depth below the ILM.
        ilm = bounds[0][:, None, :]
        image *= np.exp(-np.clip(rows - ilm, 0, None) * g.axial_um / 2500.0).astype(np.float32)
        return image

    def _vessels(self, image: np.ndarray, bounds: np.ndarray, x: np.ndarray, y: np.ndarray):
        """Retinal vessels: bright in the inner retina, shadows below (natural, not a defect)."""
        g = self.g
        # Vessels are anatomy: their own stream, so a repeat scan of the eye has the same ones.
        rng = np.random.default_rng([self.truth.seed, 12])
        # Vessel centrelines as fundus lines through the disc at random angles.
        k = self.anat.vessel_count
        angles = rng.uniform(0, 2 * math.pi, k)
        widths = rng.uniform(*self.anat.vessel_width_um, k)
        self.vessel_angles = angles
        atten = np.ones((g.n, g.w), np.float32)
        for a, wd in zip(angles, widths, strict=True):
            # distance of each A-scan's fundus point from the line through the disc at angle a
            d = np.abs((x - self.disc_um[0]) * math.sin(a) - (y - self.disc_um[1]) * math.cos(a))
            ahead = (x - self.disc_um[0]) * math.cos(a) + (y - self.disc_um[1]) * math.sin(a) > 0
            core = np.exp(-0.5 * (d / (wd / 2)) ** 2) * ahead
            atten *= (1 - self.anat.vessel_shadow * core).astype(np.float32)
        for a, wd in self._branches():
            atten *= (1 - BRANCH_SHADOW * self._branch_core(x, y, a, wd)).astype(np.float32)
        self.vessel_mask = atten < 0.6
        rows = np.arange(g.h)[None, :, None]
        ilm, rnfl_bottom = bounds[0][:, None, :], bounds[1][:, None, :]
        below = rows > rnfl_bottom + 4
        image[:] = np.where(below, image * atten[:, None, :], image)
        vessel_band = (rows >= ilm + 1) & (rows <= rnfl_bottom + 4)
        image[:] = np.where(vessel_band & (atten[:, None, :] < 0.8), image * 1.3, image)
        self.vessel_atten = atten
        return image

    def _branches(self) -> list[tuple[float, float]]:
        """Perifoveal branches of the vascular arcades: (angle, width um) of each.

        Smaller vessels reach the macula from the superior and inferior arcades and converge on
        the fovea, ending at the foveal avascular zone; none cross the horizontal raphe. They
        give the en-face image the vessel texture that a lateral saccade breaks between
        neighbouring B-scans. They are drawn from their own stream, so the rest of the phantom
        keeps its random numbers.
        """
        if not hasattr(self, "branch_list"):
            rng = np.random.default_rng([self.truth.seed, 7])
            per_side = 7
            base = np.linspace(math.radians(35), math.radians(145), per_side)
            angles = np.concatenate([base, base + math.pi])
            angles = angles + rng.uniform(-0.08, 0.08, angles.size)
            widths = rng.uniform(35.0, 60.0, angles.size)
            self.branch_list = [(float(a), float(w)) for a, w in zip(angles, widths, strict=True)]
        return self.branch_list

    def _branch_core(self, x: np.ndarray, y: np.ndarray, a: float, wd: float) -> np.ndarray:
        """Profile (0..1) of one perifoveal branch at fundus points (um)."""
        dx, dy = x - self.fovea_um[0], y - self.fovea_um[1]
        d = np.abs(dx * math.sin(a) - dy * math.cos(a))
        along = dx * math.cos(a) + dy * math.sin(a)
        span = np.clip((along - FAZ_RADIUS_UM) / 60.0, 0, 1) * np.clip(
            (BRANCH_END_UM - along) / 200.0, 0, 1
        )
        return np.exp(-0.5 * (d / (wd / 2)) ** 2) * span

    def _gain_map(self, shape: tuple[int, int, int]) -> np.ndarray:
        """Signal gain per pixel from low signal, blink, vignetting and shadowing."""
        n, _h, w = shape
        gain = np.ones((n, 1, w), np.float32)
        gain *= np.float32(10 ** (self.anat.media_gain_db / 20.0))
        gain *= self._defect_low_signal()
        gain *= self._defect_vignetting(w)[None, None, :]
        gain *= self._defect_shadowing(w)[None, None, :]
        gain *= self._defect_blink(n, w)
        return gain

    # ---- defects ----
    def _defect_low_signal(self) -> np.float32:
        """Signal loss of 20*s dB (gain 10**(-2 s)) against an unchanged noise floor.

        physical: ``signal_loss_db`` = 20 s. At s = 1 the retina's brightest band is about
        3 dB above the noise floor.
        """
        s = self.sev["low_signal"]
        self.phys["signal_loss_db"] = 20.0 * s
        self.truth.signal_gain = 10 ** (-2.0 * s)
        return np.float32(self.truth.signal_gain)

    def _defect_blur(self, image: np.ndarray) -> np.ndarray:
        """Defocus: Gaussian PSF with sigma 3.5*s px laterally and axially, energy preserved.

        physical: ``blur_fwhm_um`` = 2.355 * 3.5 s * axial pixel size (um).
        """
        s = self.sev["blur"]
        sigma = 3.5 * s
        self.phys["blur_fwhm_um"] = 2.355 * sigma * self.g.axial_um
        if sigma <= 0:
            return image
        return ndimage.gaussian_filter(image, sigma=(0, sigma, sigma), mode="nearest")

    def _defect_tilt(self) -> np.ndarray:
        """Retina tilted by 12*s degrees across each B-scan, in physical units.

        Rows rise by tan(angle) * lateral distance; physical: ``tilt_deg`` = 12 s.
        """
        s = self.sev["tilt"]
        deg = 12.0 * s
        self.phys["tilt_deg"] = deg
        # The truth is the retina's whole tilt: this defect's plus the eye's natural tilt.
        slope = math.tan(math.radians(deg)) + math.tan(math.radians(self.anat.tilt_deg))
        self.truth.tilt_deg = math.degrees(math.atan(slope))
        xs = (np.arange(self.g.w) - (self.g.w - 1) / 2) * self.g.lateral_um
        return (math.tan(math.radians(deg)) * xs)[None, :]

    def _defect_axial_motion(self) -> np.ndarray:
        """Volumes: from a random B-scan on, the retina sits 150*s um deeper (a saccade),
        plus +-10*s um jitter per B-scan. One B-scan: a step of 150*s um at one column.

        physical: ``axial_motion_um`` = 150 s (the largest jump).
        """
        s = self.sev["axial_motion"]
        g = self.g
        step = 150.0 * s
        self.phys["axial_motion_um"] = step
        shift = np.zeros((g.n, g.w))
        if s <= 0:
            self.truth.axial_shift_px = [0.0] * g.n
            return shift
        if g.n > 1:
            k = int(self.rng.integers(g.n // 3, 2 * g.n // 3 + 1))
            per = np.where(np.arange(g.n) >= k, step, 0.0)
            per += self.rng.uniform(-10 * s, 10 * s, g.n)
            shift += per[:, None]
        else:
            col = int(self.rng.integers(g.w // 3, 2 * g.w // 3))
            self.truth.motion_column = col
            shift[:, col:] += step
        self.truth.axial_shift_px = [float(v) for v in shift[:, 0] / g.axial_um]
        return shift

    def _defect_lateral_motion(self, x: np.ndarray) -> None:
        """Volumes: a block of B-scans sees tissue 400*s um to the side (a saccade during the
        scan, repeating or skipping tissue). One B-scan: the tissue jumps 400*s um at one column.

        physical: ``lateral_motion_um`` = 400 s. Modifies the fundus x of the A-scans in place.
        """
        s = self.sev["lateral_motion"]
        g = self.g
        shift_um = 400.0 * s
        self.phys["lateral_motion_um"] = shift_um
        per = np.zeros(g.n)
        if s > 0:
            if g.n > 1:
                k = int(self.rng.integers(1, g.n - 3))
                per[k : k + 3] = shift_um
                x += per[:, None]
            else:
                col = int(self.rng.integers(g.w // 3, 2 * g.w // 3))
                self.truth.motion_column = col
                x[:, col:] += shift_um
        self.truth.lateral_shift_px = [float(v / g.lateral_um) for v in per]

    def _defect_cutoff(self, ilm_um: np.ndarray, bm_um: np.ndarray) -> np.ndarray:
        """Raise the retina until the ILM's highest point is 60*s um above the image top
        (``cutoff_top``), or lower it until BM's deepest point is 60*s um below the bottom
        (``cutoff_bottom``). Severity 0 leaves the placement unchanged.

        physical: ``top_overshoot_um`` / ``bottom_overshoot_um`` = 60 s.
        """
        g = self.g
        st, sb = self.sev["cutoff_top"], self.sev["cutoff_bottom"]
        self.phys["top_overshoot_um"] = 60.0 * st
        self.phys["bottom_overshoot_um"] = 60.0 * sb
        out = ilm_um
        if st > 0:
            out = out - (ilm_um.min() + 60.0 * st)
        if sb > 0:
            bottom = g.h * g.axial_um
            out = out + (bottom + 60.0 * sb - (bm_um - ilm_um + out).max())
        return out

    def _wrap_lift(self, ilm_um: np.ndarray) -> np.ndarray:
        """Myopic wrap: a smooth rise of the retina (um, added height) that lifts its ILM
        U(40, 200) um above the image top at its peak, centred at a random A-scan within the
        middle 70% of the B-scan and U(5, 12) % of its width wide (Gaussian sigma); the same in
        every B-scan of a volume. A steep posterior pole (a staphyloma in high myopia) brings
        the retina out of the top of the window, where the image folds back.

        physical: ``wrap_overshoot_um`` (how far the ILM rises above the top).
        """
        g = self.g
        if not self.wrap:
            self.phys["wrap_overshoot_um"] = 0.0
            return np.zeros_like(ilm_um)
        rng = self.wrap_rng
        over = float(rng.uniform(40.0, 200.0))
        centre = float(rng.uniform(0.15, 0.85)) * (g.w - 1)
        sigma = float(rng.uniform(0.05, 0.12)) * g.w
        bump = np.exp(-0.5 * ((np.arange(g.w) - centre) / sigma) ** 2)[None, :]
        j = int(round(centre))
        lift = (ilm_um[:, j : j + 1] + over) * bump
        self.phys["wrap_overshoot_um"] = over
        return lift

    def _fold(self, image: np.ndarray, bounds: np.ndarray) -> None:
        """Fold the tissue above the image top back into it, mirrored about the top edge: the
        complex-conjugate (mirror) image of Fourier-domain OCT, which shows tissue beyond the
        zero-delay line upside down (Wojtkowski et al., Opt Express 2002). Truth: ``wrapped``.
        """
        g = self.g
        self.truth.wrapped = [[int(c) for c in np.flatnonzero(r < 0)] for r in bounds[0]]
        top = float(np.min(bounds[0]))
        if not self.wrap or top >= 0:
            return
        pad = min(g.h, int(math.ceil(-top)) + 2)
        above = self._render(bounds + pad)[:, :pad, :]
        # Vessel shadows fall on the folded tissue as well.
        above *= getattr(self, "vessel_atten", np.ones((g.n, g.w), np.float32))[:, None, :]
        image[:, :pad, :] += above[:, ::-1, :]

    def _defect_blink(self, n: int, w: int) -> np.ndarray:
        """Volumes: round(1 + 0.25*s*(n-1)) consecutive B-scans keep only the noise floor.
        One B-scan: 30*s % of its A-scans (a contiguous block) go dark.

        physical: ``blink_bscans`` (count) or ``blink_fraction``.
        """
        s = self.sev["blink"]
        gain = np.ones((n, 1, w), np.float32)
        if s <= 0:
            self.phys["blink_bscans" if n > 1 else "blink_fraction"] = 0.0
            return gain
        if n > 1:
            count = int(round(1 + 0.25 * s * (n - 1)))
            start = int(self.rng.integers(1, n - count))
            gain[start : start + count] = 0.0
            self.truth.blink_bscans = list(range(start, start + count))
            self.phys["blink_bscans"] = float(count)
        else:
            width = max(1, int(round(0.30 * s * w)))
            start = int(self.rng.integers(0, w - width))
            gain[:, :, start : start + width] = 0.0
            self.truth.blink_columns = list(range(start, start + width))
            self.phys["blink_fraction"] = width / w
        return gain

    def _defect_vignetting(self, w: int) -> np.ndarray:
        """Edge darkening: gain 1 - 0.9*s*|u|**4, u = -1..1 across the B-scan.

        physical: ``edge_loss_db`` = -10 log10(1 - 0.9 s) at the outermost A-scans.
        """
        s = self.sev["vignetting"]
        u = np.linspace(-1, 1, w)
        self.phys["edge_loss_db"] = float(-10 * math.log10(1 - 0.9 * s))
        return (1 - 0.9 * s * u**4).astype(np.float32)

    def _defect_shadowing(self, w: int) -> np.ndarray:
        """A media-opacity shadow: 25*s % of the A-scans, attenuated by 90*s %, full depth.

        physical: ``shadow_width_um`` and ``shadow_loss_db`` = -10 log10(1 - 0.9 s).
        """
        s = self.sev["shadowing"]
        gain = np.ones(w, np.float32)
        width = int(round(0.25 * s * w))
        self.phys["shadow_width_um"] = width * self.g.lateral_um
        self.phys["shadow_loss_db"] = float(-10 * math.log10(1 - 0.9 * s))
        if width > 0:
            start = int(self.rng.integers(w // 8, w - width - w // 8 + 1))
            cols = np.arange(start, start + width)
            # Soft edges over a few A-scans, as a floater's shadow has.
            gain[cols] = 1 - 0.9 * s
            gain = ndimage.gaussian_filter1d(gain, 2.0, mode="nearest")
            self.truth.shadow_columns = [int(c) for c in cols]
        return gain

    def _defect_cysts(
        self, image: np.ndarray, bounds: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> None:
        """Cystoid spaces of macular oedema: fluid as dark as the vitreous in the INL and ONL.

        Where the swelling is over half its peak, 8*s cysts per mm of B-scan (Poisson), each an
        ellipse 50 to 250 um wide and up to 70% of its band's height (cystoid macular oedema
        on OCT: round hyporeflective spaces of the inner and outer nuclear layers). Drawn from
        their own stream. physical: ``oedema_cysts`` (count).
        """
        s = self.sev["oedema"]
        g = self.g
        self.truth.cyst_columns = [[] for _ in range(g.n)]
        if s <= 0:
            self.phys["oedema_cysts"] = 0.0
            return
        rng = np.random.default_rng([self.truth.seed, 13])
        r_f = np.hypot(x - self.fovea_um[0], y - self.fovea_um[1])
        zone = np.exp(-0.5 * (r_f / 1500.0) ** 2) > 0.5
        rows = np.arange(g.h, dtype=np.float32)[:, None]
        cols = np.arange(g.w)
        count = 0
        for b in range(g.n):
            inside = np.flatnonzero(zone[b])
            if inside.size == 0:
                continue
            k = rng.poisson(8.0 * s * inside.size * g.lateral_um / 1000.0)
            hit: set[int] = set()
            for _ in range(k):
                jc = int(rng.choice(inside))
                top_i, bot_i = (2, 3) if rng.uniform() < 0.5 else (4, 5)  # INL or ONL
                top, bot = bounds[top_i][b, jc], bounds[bot_i][b, jc]
                half_h = 0.35 * (bot - top) * rng.uniform(0.5, 1.0)
                if half_h < 1.0:
                    continue
                zc = (top + bot) / 2
                half_w = rng.uniform(25.0, 125.0) / g.lateral_um
                d = ((cols[None, :] - jc) / half_w) ** 2 + ((rows - zc) / half_h) ** 2
                mask = np.clip((1.0 - d) * 4.0, 0, 1).astype(np.float32)  # soft rim
                image[b] *= 1.0 - mask
                hit.update(int(c) for c in np.flatnonzero(mask.max(axis=0) > 0.5))
                count += 1
            self.truth.cyst_columns[b] = sorted(hit)
        self.phys["oedema_cysts"] = float(count)

    def _paint_drusen(self, image: np.ndarray, bounds: np.ndarray) -> None:
        """Druse material under the lifted RPE: medium reflectivity, 30% of the RPE's (most
        drusen are homogeneous and of medium internal reflectivity, Khanifar et al. 2008)."""
        lift = self.druse_um / self.g.axial_um
        self.truth.druse_columns = [
            [int(c) for c in np.flatnonzero(row > 10.0)] for row in self.druse_um
        ]
        self.truth.hole_columns = [
            [int(c) for c in np.flatnonzero(row < 0.5)] for row in self.hole_keep
        ]
        if not lift.any():
            return
        rows = np.arange(self.g.h, dtype=np.float32)[None, :, None]
        bm = bounds[TRUE_BOUNDARIES["BM"] - 1][:, None, :]
        top = bm - lift[:, None, :]
        frac = np.clip(rows + 0.5 - top, 0, 1) - np.clip(rows + 0.5 - bm, 0, 1)
        image *= (1.0 - 0.7 * frac).astype(np.float32)

    def _defect_layer_artefact(self, image: np.ndarray, bounds: np.ndarray) -> None:
        """A bright membrane (1.4x the RNFL) 25-45 um above the ILM, over 20+60*s % of the
        width of a third of the B-scans (all of one B-scan). Edge-based ILM detectors latch onto
        it, so their ILM jumps by the gap: the segmentation fails detectably.

        physical: ``artefact_fraction`` of the A-scans covered in the affected B-scans.
        """
        s = self.sev["layer_artefact"]
        g = self.g
        self.phys["artefact_fraction"] = 0.0 if s <= 0 else 0.2 + 0.6 * s
        if s <= 0:
            return
        k = max(1, g.n // 3)
        first = int(self.rng.integers(0, g.n - k + 1))
        width = int(round((0.2 + 0.6 * s) * g.w))
        start = int(self.rng.integers(0, g.w - width + 1))
        gap_um = self.rng.uniform(25.0, 45.0)
        rows = np.arange(g.h, dtype=np.float32)[:, None]
        for b in range(first, first + k):
            top = bounds[0][b, start : start + width] - gap_um / g.axial_um
            thick = max(2.0, 12.0 / g.axial_um)
            band = np.clip(rows + 0.5 - top, 0, 1) - np.clip(rows + 0.5 - top - thick, 0, 1)
            image[b, :, start : start + width] += 1.4 * BANDS[1][1] * band
        self.truth.artefact_bscans = list(range(first, first + k))

    # ---- truth and scan ----
    def _finish_truth(self, bounds: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> None:
        g, t = self.g, self.truth
        t.vessel_columns = sorted({int(c) for c in np.nonzero(self.vessel_mask.any(axis=0))[0]})
        t.cut_bscans = [
            b
            for b in range(g.n)
            if bounds["ILM"][b].min() < 0.5 or bounds["BM"][b].max() > g.h - 0.5
        ]
        slo_c = (g.slo - 1) / 2
        to_px = lambda p: (slo_c + p[0] / g.slo_um, slo_c + p[1] / g.slo_um)  # noqa: E731
        t.disc_center = to_px(self.disc_um)
        t.disc_diameter_px = self.disc_d_um / g.slo_um
        if self.pattern == "ring":
            t.ring_center = to_px(self.ring_c_um)
            t.ring_offset_ratio = float(np.hypot(*(self.ring_c_um - self.disc_um)) / self.disc_d_um)
            return
        t.scan_center_px = ((g.n - 1) / 2, (g.w - 1) / 2)
        t.fovea_offset_um = float(np.hypot(*self.fovea_um))
        # Fovea in scan coordinates: column along x, B-scan index along y (fractional).
        col = (self.fovea_um[0] / g.lateral_um) + (g.w - 1) / 2
        row = (self.fovea_um[1] / g.bscan_um) + (g.n - 1) / 2 if g.bscan_um else 0.0
        t.fovea_px = (float(row), float(col))

    def _fundus(self) -> np.ndarray:
        """SLO image (integer grey values 0..255): background, disc, vessels, darker macula."""
        g = self.g
        yy, xx = np.mgrid[0 : g.slo, 0 : g.slo].astype(np.float32)
        c = (g.slo - 1) / 2
        xu, yu = (xx - c) * g.slo_um, (yy - c) * g.slo_um
        img = 110 + 10 * np.cos(xu / 1500.0) * np.cos(yu / 1700.0)
        r_f = np.hypot(xu - self.fovea_um[0], yu - self.fovea_um[1])
        img -= 25 * np.exp(-0.5 * (r_f / 700.0) ** 2)
        r_d = np.hypot(xu - self.disc_um[0], yu - self.disc_um[1])
        disc = np.clip((self.disc_d_um / 2 - r_d) / 40.0 + 0.5, 0, 1)
        img += self.disc_gain * disc
        img += self._atrophy(xu, yu, r_d)
        for a in self.vessel_angles:
            d = np.abs((xu - self.disc_um[0]) * math.sin(a) - (yu - self.disc_um[1]) * math.cos(a))
            ahead = (xu - self.disc_um[0]) * math.cos(a) + (yu - self.disc_um[1]) * math.sin(a)
            img -= 45 * np.exp(-0.5 * (d / 45.0) ** 2) * (ahead > self.disc_d_um / 2)
        for a, wd in self._branches():
            img -= 25 * self._branch_core(xu, yu, a, wd)
        img += self.rng.normal(0, 3, img.shape)
        return np.clip(np.round(img), 0, 255).astype(np.float32)

    def _atrophy(self, xu: np.ndarray, yu: np.ndarray, r_d: np.ndarray) -> np.ndarray:
        """Beta-zone peripapillary atrophy on the SLO: a bright crescent (bared sclera, U(40,
        70) grey levels over the fundus) from the disc margin outwards, widest towards the
        fovea (temporal, where myopic atrophy lies) and tapering over a circumferential extent
        of U(90, 240) degrees around a direction within 30 degrees of temporal. Its widest
        point is U(200, 700) um: beta-zone widths in highly myopic eyes run from 0.20 to 2.05 mm
        on cSLO (Biometric features of PPA-beta in high myopia, 61 eyes, cSLO and EDI SD-OCT),
        cut at 700 um so that the crescent stays inside the 3.46 mm ring of a centred ring scan.

        Returns the grey levels to add; truth: ``atrophy_width_um``.
        """
        if not self.atrophy:
            return np.zeros_like(xu)
        rng = self.atrophy_rng
        width = float(rng.uniform(200.0, 700.0))
        extent = math.radians(float(rng.uniform(90.0, 240.0)))
        gain = float(rng.uniform(40.0, 70.0))
        fx, fy = self.fovea_um - self.disc_um
        towards = math.atan2(fy, fx) + math.radians(float(rng.uniform(-30.0, 30.0)))
        ang = np.arctan2(yu - self.disc_um[1], xu - self.disc_um[0]) - towards
        ang = np.angle(np.exp(1j * ang))  # -pi..pi around the crescent's middle
        taper = np.clip(np.cos(np.clip(ang / (extent / 2), -1, 1) * math.pi / 2), 0, 1)
        outer = self.disc_d_um / 2 + width * taper
        inside = np.clip((r_d - self.disc_d_um / 2) / 40.0 + 0.5, 0, 1)
        within = np.clip((outer - r_d) / 40.0 + 0.5, 0, 1) * (taper > 0.05)
        self.truth.atrophy_width_um = width
        return gain * inside * within

    def _scan(self, image: np.ndarray, bounds: dict[str, np.ndarray]) -> Scan:
        g = self.g
        slo_c = (g.slo - 1) / 2
        if self.pattern == "ring":
            cx, cy = (slo_c + v / g.slo_um for v in self.ring_c_um)
            r_px = 1730.0 / g.slo_um
            positions = [BscanPosition(start=Point(x=cx - r_px, y=cy), end=Point(x=cx, y=cy))]
            ring = RingGeometry(center=Point(x=cx, y=cy), radius_px=r_px, radius_mm=1.73)
        else:
            half = (g.w - 1) / 2 * g.lateral_um / g.slo_um
            ys = (np.arange(g.n) - (g.n - 1) / 2) * (g.bscan_um or 0.0) / g.slo_um + slo_c
            positions = [
                BscanPosition(start=Point(x=slo_c - half, y=float(v)), end=Point(x=slo_c + half, y=float(v)))
                for v in ys
            ]  # fmt: skip
            ring = None
        # Device quality like Spectralis' Q: retinal signal over the noise floor, in dB.
        retina = np.zeros(g.n)
        for b in range(g.n):
            top = np.clip(np.nan_to_num(bounds["ILM"][b]), 0, g.h - 1).astype(int)
            bot = np.clip(np.nan_to_num(bounds["BM"][b]), 0, g.h - 1).astype(int)
            mask = (np.arange(g.h)[:, None] >= top) & (np.arange(g.h)[:, None] < bot)
            vals = image[b][mask]
            retina[b] = float(vals.mean()) if vals.size else NOISE_FLOOR
        quality = [
            round(float(10 * math.log10(max(r, 1e-9) / NOISE_FLOOR) * 2.5), 2) for r in retina
        ]
        meta = ScanMeta(
            source=f"phantom:{self.pattern}:{self.truth.seed}",
            format="phantom",
            pattern=ScanPattern(self.pattern),
            scale=IntensityScale.LINEAR,
            spacing=Spacing(lateral_um=g.lateral_um, axial_um=g.axial_um, bscan_um=g.bscan_um),
            n_bscans=g.n,
            height=g.h,
            width=g.w,
            laterality="OD",
            device="qmroct phantom",
            acquisition_date=date(2024, 1, 1),
            device_quality=quality,
            device_quality_kind="phantom_snr_q",
            fundus_spacing_um=Spacing(lateral_um=g.slo_um, axial_um=g.slo_um),
            bscan_positions=positions,
            ring=ring,
            extra={"field_size_slo_deg": 30},
        )
        device_seg = {"ILM": bounds["ILM"], "BM": bounds["BM"], "RNFL": bounds["RNFL"]}
        return Scan(meta=meta, bscans=image, segmentation=device_seg, fundus=self._fundus())


def write_phantom(
    scan: Scan, truth: PhantomTruth, out_dir: Path, *, formats: tuple[str, ...] = ("vol", "dcm")
) -> list[Path]:
    """Write the phantom as ``phantom.vol`` and/or ``phantom.dcm`` plus ``truth.json``.

    Returns the written paths, truth last. Both files read back through
    :func:`qmroct.oct.readers.read_scan` to the same pixels.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"phantom_{truth.pattern}_{truth.seed}"
    paths: list[Path] = []
    for fmt in formats:
        if fmt == "vol":
            from qmroct.oct.writers.heyex_vol import write_vol

            p = out_dir / f"{stem}.vol"
            # Synthetic identifiers, so phantoms pass the gateway like a clinic's files do.
            p.write_bytes(write_vol(scan, patient_id=f"PHANTOM{truth.seed}", visit_id=stem))
        elif fmt == "dcm":
            from qmroct.oct.writers.dicom_opt import write_opt

            p = out_dir / f"{stem}.dcm"
            p.write_bytes(write_opt(scan, patient_id=f"PHANTOM{truth.seed}"))
        else:
            raise ValueError(f"unknown phantom format {fmt!r} (vol, dcm)")
        paths.append(p)
    t = out_dir / f"{stem}.truth.json"
    t.write_text(json.dumps(truth.model_dump(), indent=2))
    paths.append(t)
    return paths

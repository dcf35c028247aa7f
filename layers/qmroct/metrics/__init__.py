"""Quality metrics for retinal OCT: small pure functions of arrays, no I/O.

Each function documents its formula, citation, units and direction. Measures
(:mod:`qmroct.measures`) compose them into OSCAR-IB verdicts and pictures.

Catalogue (direction in brackets):

- ``histogram.quality_index``: QI, intensity range times tissue-to-signal ratio of the B-scan
  histogram; catches weak signal (Stein 2006) [higher is better].
- ``histogram.mtci``: maximum tissue contrast index, tissue extent over noise extent of the
  histogram (Huang 2012, per-device constant) [higher is better].
- ``contrast.snr_db``: mean retina over vitreous noise, dB [higher is better].
- ``contrast.cnr``: retina/vitreous contrast over pooled spread [higher is better].
- ``sharpness.edge_width_px``: width of the ILM edge; catches poor focus [lower is better].
- ``completeness.cut_top_fraction`` / ``cut_bottom_fraction``: retina touching the image edge
  [lower is better].
- ``motion.blink_bscans``: dark B-scans outside the Tukey fences [fewer is better];
  ``motion.axial_motion_px``: ILM jumps between B-scans [lower is better];
  ``motion.lateral_shifts`` / ``lateral_motion_px``: en-face rows registered against the
  fundus along each B-scan line, largest displacement [lower is better].
- ``centration.fovea_position`` / ``fovea_offset_um``: fovea from the scan centre, AURA-like
  [lower is better]; ``centration.find_disc`` / ``ring_offset_ratio``: ring on the disc
  [lower is better].
- ``geometry.tilt_deg``: Bruch's membrane tilt [closer to 0 is better];
  ``geometry.thickness_range``: total thickness percentiles [inside the normal range].
- ``illumination.*``: A-scan signal CV, edge/centre ratio, weakest of 16 sectors, dark
  fraction, B-scan gain CV [see each]; ``left_right_ratio``: ONL balance [higher is better].
- ``plausibility.*``: segmentation gaps, order violations, jumps, edge strength P5, disagreement
  with the device's segmentation [see each].
- ``disc.disc_region``: the optic-disc A-scans (from the SLO or the device's segmentation),
  which plausibility and tilt/ONL balance leave out [a share, no direction].

Intensity metrics run on a display scale (:mod:`qmroct.metrics.intensity`); NaN (no data) and
zero padding are excluded before any histogram index, and the scale used is recorded.
"""

"""A per-scan HTML report in the MRIQC manner: the OSCAR-IB summary, every value with its unit
and direction, every measure's picture inline, a background-enhanced B-scan, and the version and
code digest of every measure. One self-contained file (pictures as data URIs)."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

import numpy as np

from qmroct import __version__, pictures
from qmroct.measures.base import get_measure
from qmroct.measures.context import ScanContext
from qmroct.measures.suite import OscarIbSummary
from qmroct.results import MeasureOutput

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222;max-width:1100px}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:3px 8px;
font-size:.9em;text-align:left} th{background:#eee}
.pass{background:#d8f3dc}.warn{background:#fff3bf}.fail{background:#ffc9c9}
.not_applicable{background:#e9ecef;color:#555} img{max-width:100%;border:1px solid #ccc}
.meta td:first-child{font-weight:600} small{color:#666}
"""


def _img(rgb_or_png: np.ndarray | bytes, alt: str) -> str:
    png = rgb_or_png if isinstance(rgb_or_png, bytes) else pictures.to_png(rgb_or_png)
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _device_quality(values: list[float | None] | None, kind: str | None) -> str | None:
    q = [v for v in values or [] if v is not None]
    if not q:
        return None
    return f"{kind}: mean {np.mean(q):.1f} over {len(q)} B-scan(s), min {min(q):.1f}"


def _fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def render_html(
    ctx: ScanContext,
    outputs: list[MeasureOutput],
    summary: OscarIbSummary,
    *,
    digests: dict[str, str] | None = None,
) -> str:
    """The report as one HTML string."""
    meta = ctx.scan.meta
    e = html.escape
    rows = []
    for label, value in (
        ("source", meta.source),
        ("format", meta.format),
        ("device", meta.device),
        ("pattern", meta.pattern.value),
        ("size", f"{meta.n_bscans} × {meta.height} × {meta.width}"),
        (
            "spacing",
            f"lateral {meta.spacing.lateral_um:.2f} µm, axial {meta.spacing.axial_um:.2f} µm"
            + (f", B-scan {meta.spacing.bscan_um:.1f} µm" if meta.spacing.bscan_um else ""),
        ),
        ("stored scale / display map", f"{meta.scale.value} / {ctx.scale_used}"),
        ("device quality", _device_quality(meta.device_quality, meta.device_quality_kind)),
        ("laterality", meta.laterality),
    ):
        rows.append(f"<tr><td>{e(label)}</td><td>{_fmt(value)}</td></tr>")
    letters = "".join(
        f'<tr class="{v.verdict.value}"><td>{c}</td><td>{v.verdict.value}</td><td>{e(v.reason)}</td></tr>'
        for c, v in summary.letters.items()
    )
    overall = "PASS" if summary.passed else f"FAIL ({', '.join(summary.failed_letters)})"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>qmroct: {e(meta.source)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>OCT quality report: {e(meta.source)}</h1>",
        f"<p><b>OSCAR-IB overall: {overall}</b> <small>generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f" by qmroct {__version__}</small></p>",
        f'<table class="meta">{"".join(rows)}</table>',
        "<h2>OSCAR-IB criteria</h2><table><tr><th>letter</th><th>verdict</th><th>reason</th></tr>"
        f"{letters}</table>",
        "<h2>Background-enhanced B-scan</h2><p><small>Windowed on the background (P2 to P60): "
        "noise, shadows, ghosts and wrap-around show here.</small></p>",
        _img(pictures.background_enhanced(ctx.display[ctx.centre_index]), "background-enhanced"),
    ]
    for out in outputs:
        m = get_measure(out.measure)
        doc = {**getattr(m, "common_values_doc", {}), **getattr(m, "values_doc", {})}
        digest = (digests or {}).get(out.measure, "")
        vals = "".join(
            f"<tr><td>{e(k)}</td><td>{_fmt(v)}</td><td>{e(doc.get(k, ('', '', ''))[0])}</td>"
            f"<td>{e(doc.get(k, ('', '', ''))[1])}</td><td>{e(doc.get(k, ('', '', ''))[2])}</td></tr>"
            for k, v in out.values.items()
        )
        verdicts = "".join(
            f'<tr class="{v.verdict.value}"><td>{v.criterion}</td><td>{v.verdict.value}</td>'
            f"<td>{e(v.reason)}</td></tr>"
            for v in out.verdicts
        )
        parts += [
            f"<h2 id='{e(out.measure)}'>{e(out.measure)} <small>version {e(out.version)}"
            f"{' · code ' + digest.removeprefix('sha256:')[:12] if digest else ''}</small></h2>",
            f"<p>{e((type(m).__doc__ or '').strip())}</p>",
            f"<table><tr><th>letter</th><th>verdict</th><th>reason</th></tr>{verdicts}</table>",
            "<table><tr><th>value</th><th></th><th>unit</th><th>direction</th><th>meaning</th></tr>"
            f"{vals}</table>",
        ]
        if out.notes:
            parts.append("<p><small>" + e("; ".join(out.notes)) + "</small></p>")
        if out.picture_png:
            parts.append(_img(out.picture_png, out.measure))
    parts.append("</body></html>")
    return "\n".join(parts)

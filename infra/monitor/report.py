"""A monitor report: per-component CPU and memory over time, with marked spans (the phases of
a benchmark, or user actions), as an HTML page with plots and as JSON.

Tables follow the layout of published per-container resource studies: for each span and
component, the average and peak CPU (100 % = one core) and the average and peak memory.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from qmroct.monitor.sampler import ComponentSample

if TYPE_CHECKING:
    from qmroct.embedded.bench import PaperFigures


class Span(BaseModel):
    """A named interval on the monitor's clock (UNIX seconds)."""

    label: str
    start: float
    end: float
    group: str = Field("", description="what kind of span: phase, or a user role")


class PhaseComparison(BaseModel):
    """One phase of a run beside the same phase of a reference run (e.g. a published one)."""

    phase: str
    seconds: float
    reference_seconds: float
    reference: str


class SpanUsage(BaseModel):
    span: str
    group: str
    component: str
    seconds: float
    cpu_avg_percent: float
    cpu_peak_percent: float
    rss_avg_mb: float
    rss_peak_mb: float
    samples: int


class MonitorReport(BaseModel):
    start: float
    end: float
    components: list[str]
    spans: list[Span]
    usage: list[SpanUsage]
    phases: list[PhaseComparison] = Field(default_factory=list)


def read_spans(path: Path | None) -> list[Span]:
    if path is None or not path.exists():
        return []
    return [Span.model_validate(s) for s in json.loads(path.read_text(encoding="utf-8"))]


def summarise(samples: list[ComponentSample], spans: list[Span]) -> MonitorReport:
    """Average and peak use per component inside each span, and over the whole run (span
    ``all``). A tick belongs to a span when its sample time falls inside it; the first tick of
    a run has no rate and is left out."""
    if not samples:
        return MonitorReport(start=0, end=0, components=[], spans=spans, usage=[])
    t0 = min(s.t for s in samples)
    t1 = max(s.t for s in samples)
    rated = [s for s in samples if s.t > t0]
    whole = Span(label="all", start=t0, end=t1, group="run")
    usage: list[SpanUsage] = []
    for span in [whole, *spans]:
        by_comp: dict[str, list[ComponentSample]] = defaultdict(list)
        for s in rated:
            if span.start <= s.t <= span.end:
                by_comp[s.component].append(s)
        for comp, rows in sorted(by_comp.items()):
            cpu = [r.cpu_percent for r in rows]
            rss = [r.rss_bytes / 2**20 for r in rows]
            usage.append(
                SpanUsage(
                    span=span.label,
                    group=span.group,
                    component=comp,
                    seconds=round(span.end - span.start, 2),
                    cpu_avg_percent=round(sum(cpu) / len(cpu), 1),
                    cpu_peak_percent=round(max(cpu), 1),
                    rss_avg_mb=round(sum(rss) / len(rss), 1),
                    rss_peak_mb=round(max(rss), 1),
                    samples=len(rows),
                )
            )
    comps = sorted({s.component for s in samples})
    return MonitorReport(start=t0, end=t1, components=comps, spans=spans, usage=usage)


def _plot_png(samples: list[ComponentSample], spans: list[Span]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(s.t for s in samples)
    series: dict[str, list[ComponentSample]] = defaultdict(list)
    for s in samples:
        series[s.component].append(s)
    fig, (ax_cpu, ax_mem) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, dpi=100)
    # 20 distinct colours, then dashed lines: a stack has about 16 components.
    colours = plt.get_cmap("tab20").colors
    for i, (comp, rows) in enumerate(sorted(series.items())):
        t = [r.t - t0 for r in rows]
        style = {"color": colours[i % 20], "linestyle": "-" if i < 20 else "--", "linewidth": 1.2}
        ax_cpu.plot(t, [r.cpu_percent for r in rows], label=comp, **style)
        ax_mem.plot(t, [r.rss_bytes / 2**20 for r in rows], label=comp, **style)
    palette = plt.get_cmap("Pastel1")
    for i, span in enumerate(spans):
        for ax in (ax_cpu, ax_mem):
            ax.axvspan(span.start - t0, span.end - t0, color=palette(i % 9), alpha=0.35, lw=0)
        ax_cpu.annotate(
            span.label,
            xy=(span.start - t0, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -12 - 10 * (i % 3)),
            textcoords="offset points",
            fontsize=8,
        )
    ax_cpu.set_ylabel("CPU (%, 100 = one core)")
    ax_mem.set_ylabel("resident memory (MB)")
    ax_mem.set_xlabel("time since the monitor started (s)")
    ax_cpu.grid(alpha=0.3)
    ax_mem.grid(alpha=0.3)
    ax_cpu.legend(fontsize=8, ncol=3, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(
    samples: list[ComponentSample],
    spans: list[Span],
    out_dir: Path,
    title: str = "qmroct monitor",
    extra: dict[str, object] | None = None,
    phases: list[PhaseComparison] | None = None,
) -> MonitorReport:
    """Write ``report.html`` (plots and tables), ``report.json`` and ``monitor.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = summarise(samples, spans)
    report.phases = list(phases or [])
    payload = report.model_dump()
    if extra:
        payload["extra"] = extra
    (out_dir / "report.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    img = ""
    if samples:
        png = _plot_png(samples, spans)
        (out_dir / "monitor.png").write_bytes(png)
        img = (
            '<img alt="CPU and memory per component over time" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        )
    head = (
        "<tr><th>span</th><th>component</th><th>s</th><th>CPU avg %</th>"
        "<th>CPU peak %</th><th>memory avg MB</th><th>memory peak MB</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(u.span)}</td><td>{html.escape(u.component)}</td>"
        f"<td>{u.seconds:.1f}</td><td>{u.cpu_avg_percent:.1f}</td><td>{u.cpu_peak_percent:.1f}</td>"
        f"<td>{u.rss_avg_mb:.0f}</td><td>{u.rss_peak_mb:.0f}</td></tr>"
        for u in report.usage
    )
    extra_html = ""
    if report.phases:
        extra_html += (
            "<h2>Phases beside the reference</h2><table><tr><th>phase</th><th>here (s)</th>"
            "<th>reference (s)</th><th>reference</th><th>ratio</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(p.phase)}</td><td>{p.seconds:.1f}</td>"
                f"<td>{p.reference_seconds:.0f}</td><td>{html.escape(p.reference)}</td>"
                f"<td>x{p.reference_seconds / max(p.seconds, 1e-9):.0f} faster</td></tr>"
                for p in report.phases
            )
            + "</table>"
        )
    if extra:
        extra_html += "<h2>Figures</h2><pre>" + html.escape(json.dumps(extra, indent=2)) + "</pre>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:72em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}td:nth-child(-n+2){{text-align:left}}
img{{max-width:100%}}</style></head><body><h1>{html.escape(title)}</h1>
<p>Sampled every second; CPU is user+system time per wall time (100 % is one core), memory the
sum of resident set sizes of each component's processes. Shaded spans are marked phases or
user actions.</p>{img}<h2>Use per span and component</h2><table>{head}{rows}</table>{extra_html}
</body></html>"""
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return report


def paper_report(figures: PaperFigures, out_dir: Path) -> MonitorReport:
    """The monitor's series of a ``qmroct bench paper`` run, with its upload and quality
    phases marked and set beside the QMROCT paper's phases for the same workload."""
    from qmroct.monitor.exporters import read_csv

    spans = [
        Span(label="upload", start=figures.started_at, end=figures.uploaded_at, group="phase"),
        Span(label="quality", start=figures.uploaded_at, end=figures.finished_at, group="phase"),
    ]
    ref = "QMROCT paper (3 measures, 4 VMs)"
    phases = [
        PhaseComparison(
            phase="upload",
            seconds=figures.upload_s,
            reference_seconds=figures.paper_upload_s,
            reference=ref,
        ),
        PhaseComparison(
            phase="quality",
            seconds=figures.quality_s,
            reference_seconds=figures.paper_quality_s,
            reference=ref,
        ),
        PhaseComparison(
            phase="end to end",
            seconds=figures.end_to_end_s,
            reference_seconds=figures.paper_end_to_end_s,
            reference=ref,
        ),
    ]
    return write_report(
        read_csv(out_dir / "monitor.csv"),
        spans,
        out_dir,
        title=f"qmroct bench paper: {figures.scans} volumes, {figures.megabytes:.0f} MB",
        extra=figures.model_dump(),
        phases=phases,
    )

"""``qmroct demo``: synthetic scans through the whole pipeline, and a table of what came out.

The scans are phantoms with known, injected defects. They go through the gateway's own upload
path into the ingest bucket; from there the events, the triggers and the actions do the work.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from qmroct.embedded.stack import EmbeddedStack, Idle, StackOptions
from qmroct.storage.ledger import JobState

# A cycle of scan patterns and injected defects: a clean scan of each pattern, then defects that
# the suite should flag. Severity is the phantom's 0..1 scale.
DEMO_PLAN: tuple[tuple[str, dict[str, float]], ...] = (
    ("volume", {}),
    ("line", {}),
    ("ring", {}),
    ("volume", {"low_signal": 0.7}),
    ("line", {"blur": 0.7}),
    ("volume", {"blink": 0.6}),
    ("line", {"tilt": 0.7}),
    ("volume", {"decentration": 0.6}),
    ("ring", {"ring_offset": 0.7}),
    ("line", {"cutoff_top": 0.6}),
    ("volume", {"vignetting": 0.7}),
    ("line", {"layer_artefact": 0.8}),
)


class DemoScan(BaseModel):
    key: str
    scan_hash: str
    pattern: str
    injected: dict[str, float]
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)


class DemoReport(BaseModel):
    scans: list[DemoScan]
    measures: list[str]
    failed: int
    failures: list[str] = Field(default_factory=list)
    seconds: float
    home: str


def make_demo_scans(
    n: int, out: Path, *, seed: int = 7
) -> list[tuple[Path, str, dict[str, float]]]:
    """Write ``n`` phantom scans into ``out``; returns (file, pattern, defects) per scan."""
    from qmroct.oct.phantom import make_phantom, write_phantom

    made = []
    for i in range(n):
        pattern, defects = DEMO_PLAN[i % len(DEMO_PLAN)]
        scan, truth, _ = make_phantom(pattern, defects=defects, seed=seed + i, size="small")
        folder = out / f"scan{i:03d}"
        paths = write_phantom(scan, truth, folder, formats=("vol",))
        made.append((paths[0], pattern, defects))
    return made


def run_demo(
    n_scans: int = 6,
    *,
    home: Path | None = None,
    cap: int = 4,
    timeout_s: float = 900.0,
    progress: Callable[[str], None] | None = None,
) -> DemoReport:
    from qmroct.gateway.pseudonyms import PseudonymStore
    from qmroct.gateway.state import GatewayState
    from qmroct.gateway.upload import Uploader

    say = progress or (lambda _msg: None)
    started = time.monotonic()
    home = home or Path(tempfile.mkdtemp(prefix="qmroct-demo-"))
    work = home / "inbox"
    work.mkdir(parents=True, exist_ok=True)
    with EmbeddedStack(home, StackOptions(cap=cap)) as stack:
        ledger, _, _ = stack.require()
        store = stack.role_store("gateway")
        published = stack.publish_suite()
        say(f"published {len(published)} measures: {', '.join(published)}")
        n_measures = len(published) or len(ledger.catalog.active_measures())
        stack.wait_published(n_measures)
        say(f"making {n_scans} phantom scans")
        made = make_demo_scans(n_scans, work)
        gw = home / "gateway"
        gw.mkdir(exist_ok=True)
        uploader = Uploader(
            store,
            PseudonymStore(gw / "pseudonyms.sqlite3"),
            GatewayState(gw / "state.sqlite3"),
            project="DEMO",
        )
        summary = uploader.upload_paths([p for p, _, _ in made])
        by_source = {o.source: o for o in summary.outcomes}
        say(f"uploaded {len(summary.outcomes)} files through the gateway")

        last: list[tuple[int, int, int, int]] = []

        def show(s: Idle) -> None:
            now = (s.done, s.in_flight, s.queued, s.pending_events)
            if last and last[-1] == now:
                return
            last.append(now)
            say(
                f"\rjobs done {s.done}, in flight {s.in_flight}, queued {s.queued}, "
                f"events pending {s.pending_events}  [{s.seconds:.0f} s]"
            )

        final = stack.wait_idle(
            timeout_s=timeout_s, expect_jobs=n_scans * n_measures, progress=show
        )
        say("\n")
        scans: list[DemoScan] = []
        failures: list[str] = []
        measures = sorted(m.name for m in ledger.catalog.active_measures())
        for path, pattern, defects in made:
            outcome = by_source.get(str(path))
            if outcome is None or outcome.status not in ("uploaded", "duplicate"):
                why = outcome.reason if outcome else "not uploaded"
                failures.append(f"{path.name}: upload {why}")
                continue
            recs = ledger.catalog.find_scans(outcome.key) if outcome.key else []
            scan_hash = recs[0].scan_hash if recs else (outcome.sha256 or "")
            entry = DemoScan(
                key=outcome.key or "", scan_hash=scan_hash, pattern=pattern, injected=defects
            )
            for r in ledger.results(scan_hash):
                entry.results[r.measure] = {
                    "version": r.version,
                    "status": r.status.value,
                    "values": r.values,
                    "verdicts": [v.model_dump(mode="json") for v in r.verdicts],
                    "failure": r.failure,
                }
                if r.status.value == "failed":
                    failures.append(f"{entry.key}: {r.measure} failed: {r.failure}")
            for m in measures:
                if m not in entry.results:
                    failures.append(f"{entry.key}: no result for {m}")
            scans.append(entry)
        if not final.idle:
            failures.append(f"pipeline not idle after {timeout_s:.0f} s: {final.model_dump()}")
        for job in ledger.jobs(state=JobState.DEAD):
            failures.append(f"job {job.key} dead: {job.last_error}")
    return DemoReport(
        scans=scans,
        measures=measures,
        failed=len(failures),
        failures=failures,
        seconds=round(time.monotonic() - started, 1),
        home=str(home),
    )


# The value per measure the table shows while every letter passes, first one present; a warn or
# fail shows the value that decided it instead. The JSON has all of them.
HEADLINE: dict[str, tuple[str, ...]] = {
    "signal": ("peak_snr_db",),
    "sharpness": ("ilm_edge_width_um",),
    "completeness": ("bscans_cut",),
    "blink_motion": ("blink_count",),
    "centration": ("fovea_offset_um", "ring_offset_ratio"),
    "segmentation": ("bm_jump_fraction", "gap_fraction"),
    "illumination": ("signal_cv",),
    "beam_placement": ("tilt_deg",),
    "pathology_flag": ("thickness_p50_um",),
}


def format_table(report: DemoReport) -> str:
    short = {"pass": "ok", "warn": "warn", "fail": "FAIL", "not_applicable": "n/a"}
    cols = report.measures
    header = ["scan", "pattern", "injected"] + cols
    rows = [header]
    for s in report.scans:
        injected = ",".join(f"{k}={v}" for k, v in s.injected.items()) or "clean"
        row = [s.key.rsplit("/", 2)[-2] if "/" in s.key else s.key, s.pattern, injected]
        for m in cols:
            r = s.results.get(m)
            if r is None:
                row.append("missing")
                continue
            if r["status"] != "ok":
                row.append(r["status"])
                continue
            verdicts = [short.get(v["verdict"], v["verdict"]) for v in r["verdicts"]]
            worst = next((w for w in ("FAIL", "warn", "ok") if w in verdicts), "n/a")
            deciding = next(
                (
                    v.get("graded_by")
                    for v in r["verdicts"]
                    if short.get(v["verdict"]) == worst and worst in ("FAIL", "warn")
                ),
                None,
            )
            value = _headline(m, r["values"], deciding)
            row.append(f"{value} {worst}")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _headline(measure: str, values: dict[str, Any], deciding: str | None = None) -> str:
    """`key=value` for the table: the deciding value of a warn or fail, else the headline one."""
    keys = ((deciding,) if deciding else ()) + HEADLINE.get(measure, ())
    key = next((k for k in keys if k in values), None)
    if key is None:
        return "-"
    v = values[key]
    return f"{key}={v:.3g}" if isinstance(v, float) else f"{key}={v}"

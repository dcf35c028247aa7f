"""Commands of the OCT data layer: ``scan info``, ``phantom`` and ``bench reader``."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import click
from qmroct.errors import ScanError


def _parse_defects(items: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected NAME=SEVERITY", param_hint="--defect")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: severity is not a number", param_hint="--defect"
            ) from None
    return out


def _median_time(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""

    @groups["scan"].command("info")
    @click.argument("file", type=click.Path(exists=True, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="print the metadata model as JSON")
    def scan_info(file: Path, as_json: bool) -> None:
        """Read FILE (or a folder of B-scan images) and print its metadata."""
        from qmroct.oct.readers import read_scan

        try:
            scan = read_scan(file)
        except ScanError as exc:
            raise click.ClickException(str(exc)) from None
        meta = scan.meta
        if as_json:
            click.echo(meta.model_dump_json(indent=2))
            return
        click.echo(f"{meta.source}")
        click.echo(f"  format      {meta.format} ({meta.device or 'unknown device'})")
        click.echo(
            f"  pattern     {meta.pattern.value}, {meta.n_bscans} x {meta.height} x {meta.width}"
        )
        sp = meta.spacing
        click.echo(f"  pixel (um)  lateral {sp.lateral_um:.2f}, axial {sp.axial_um:.2f}, "
                   f"between B-scans {sp.bscan_um if sp.bscan_um is not None else '-'}")  # fmt: skip
        click.echo(f"  scale       {meta.scale.value}")
        click.echo(f"  laterality  {meta.laterality or '-'}; date {meta.acquisition_date or '-'}")
        if meta.device_quality:
            q = [v for v in meta.device_quality if v is not None]
            if q:
                click.echo(f"  quality     {meta.device_quality_kind}: min {min(q):.1f}, "
                           f"median {statistics.median(q):.1f}, max {max(q):.1f}")  # fmt: skip
        if meta.ring:
            c = meta.ring.center
            click.echo(
                f"  ring        centre ({c.x:.1f}, {c.y:.1f}) px, radius {meta.ring.radius_px:.1f} px"
            )
        if scan.segmentation:
            click.echo(f"  device seg  {', '.join(sorted(scan.segmentation))}")
        if scan.fundus is not None:
            click.echo(f"  fundus      {scan.fundus.shape[1]} x {scan.fundus.shape[0]}")

    @cli.command("phantom")
    @click.option("--pattern", type=click.Choice(["line", "ring", "volume"]), default="volume")
    @click.option(
        "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True
    )
    @click.option("--defect", "defects", multiple=True, metavar="NAME=SEVERITY",
                  help="inject a defect with severity 0..1 (repeatable)")  # fmt: skip
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option(
        "--size", type=click.Choice(["small", "paper"]), default="small", show_default=True
    )
    @click.option("--format", "formats", multiple=True, type=click.Choice(["vol", "dcm"]),
                  help="files to write (default: both)")  # fmt: skip
    def phantom(
        pattern: str, out_dir: Path, defects: tuple[str, ...], seed: int, size: str,
        formats: tuple[str, ...],
    ) -> None:  # fmt: skip
        """Write a synthetic OCT scan with known defects (.vol, DICOM OPT and truth JSON)."""
        from qmroct.oct.phantom import DEFECTS, make_phantom, write_phantom

        parsed = _parse_defects(defects)
        unknown = sorted(set(parsed) - set(DEFECTS))
        if unknown:
            raise click.BadParameter(
                f"unknown defect(s) {', '.join(unknown)}; known: {', '.join(DEFECTS)}",
                param_hint="--defect",
            )
        try:
            scan, truth, _ = make_phantom(pattern, defects=parsed, seed=seed, size=size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--defect") from None
        for path in write_phantom(scan, truth, out_dir, formats=formats or ("vol", "dcm")):
            click.echo(str(path))

    @groups["bench"].command("hostile")
    @click.option("--limit-mb", type=int, default=64, show_default=True, help="reader size limit")
    @click.option("--timeout", "timeout_s", type=float, default=20.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def bench_hostile(limit_mb: int, timeout_s: float, as_json: bool) -> None:
        """Read every file of the hostile corpus in its own process: outcome, time, peak RSS.

        Exits non-zero when a file gives a traceback, hangs, or passes the time or memory
        budget (peak RSS over the idle worker's at most 3 x limit + 32 MiB).
        """
        from qmroct.oct.hostile import MIB, build_corpus, rss_budget, run_corpus

        limit = limit_mb * MIB
        budget = rss_budget(limit) / MIB
        click.echo(f"building the corpus (limit {limit_mb} MiB) ...", err=True)
        cases = build_corpus(limit)

        def show(r) -> None:  # noqa: ANN001
            if not as_json:
                flag = r.problem(budget, timeout_s) or ""
                click.echo(
                    f"{r.name[:40]!r:44} {r.outcome:18} {r.seconds:6.2f} s "
                    f"{r.over_idle_mib:7.1f} MiB  {flag}"
                )

        with tempfile.TemporaryDirectory() as tmp:
            idle, results = run_corpus(cases, tmp, limit=limit, timeout_s=timeout_s, on_result=show)
        problems = [r for r in results if r.problem(budget, timeout_s)]
        figures = {
            "files": len(results),
            "idle_worker_mib": idle,
            "rss_budget_over_idle_mib": budget,
            "max_over_idle_mib": max(r.over_idle_mib for r in results),
            "max_seconds": max(r.seconds for r in results),
            "timeout_s": timeout_s,
            "problems": len(problems),
        }
        if as_json:
            click.echo(json.dumps({**figures, "results": [r.model_dump() for r in results]}))
        else:
            click.echo(" ".join(f"{k}={v}" for k, v in figures.items()))
        if problems:
            raise SystemExit(1)

    @groups["bench"].command("reader")
    @click.option("--json", "as_json", is_flag=True)
    @click.option("--runs", type=int, default=5, show_default=True)
    def bench_reader(as_json: bool, runs: int) -> None:
        """Time reading a 25 MB .vol volume (target < 0.3 s), segmenting it, and making phantoms."""
        from qmroct.oct.phantom import make_phantom
        from qmroct.oct.readers import read_scan
        from qmroct.oct.segmentation import segment
        from qmroct.oct.writers.dicom_opt import write_opt
        from qmroct.oct.writers.heyex_vol import write_vol

        scan, _, _ = make_phantom("volume", size="paper")
        with tempfile.TemporaryDirectory() as tmp:
            vol = Path(tmp) / "paper.vol"
            vol.write_bytes(write_vol(scan))
            dcm = Path(tmp) / "paper.dcm"
            dcm.write_bytes(write_opt(scan))
            figures = {
                "volume_shape": list(scan.shape),
                "vol_file_mb": round(vol.stat().st_size / 1e6, 2),
                "read_vol_s": _median_time(lambda: read_scan(vol), runs),
                "read_dicom_s": _median_time(lambda: read_scan(dcm), runs),
                "segment_s": _median_time(lambda: segment(scan), runs),
                "phantom_small_volume_s": _median_time(lambda: make_phantom("volume"), runs),
                "phantom_paper_volume_s": _median_time(
                    lambda: make_phantom("volume", size="paper"), max(1, runs // 2)
                ),
                "runs": runs,
                "target_read_s": 0.3,
            }
        if as_json:
            click.echo(json.dumps(figures, indent=2))
            return
        for key, value in figures.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            click.echo(f"{key:24s} {shown}")

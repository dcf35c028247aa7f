"""Commands of the measure suite: measure run/list/docs, validate, bench measures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click


def _run(file: Path, measures: tuple[str, ...], as_json: bool, report: Path | None) -> None:
    from qmroct.errors import QmroctError
    from qmroct.measures.action import code_digest
    from qmroct.measures.base import get_measure
    from qmroct.measures.runner import run_suite
    from qmroct.oct.readers import read_scan

    try:
        scan = read_scan(file, name=file.name)
        run = run_suite(scan, only=list(measures) or None)
    except QmroctError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyError as exc:  # an unknown measure name; the message lists the known ones
        raise click.ClickException(str(exc.args[0])) from exc
    digests = {o.measure: code_digest(get_measure(o.measure)) for o in run.outputs}
    if report is not None:
        from qmroct.report import render_html

        report.mkdir(parents=True, exist_ok=True)
        stem = file.name.replace(".", "_")
        for o in run.outputs:
            if o.picture_png:
                (report / f"{stem}_{o.measure}.png").write_bytes(o.picture_png)
        (report / f"{stem}_report.html").write_text(
            render_html(run.context, run.outputs, run.summary, digests=digests), encoding="utf-8"
        )
    if as_json:
        doc = {
            "scan": str(file),
            "format": scan.meta.format,
            "pattern": scan.meta.pattern.value,
            "device": scan.meta.device,
            "oscar_ib": run.summary.model_dump(mode="json"),
            "measures": {
                o.measure: {**o.model_dump(mode="json"), "code_digest": digests[o.measure]}
                for o in run.outputs
            },
            "cpu_s": {k: round(v, 4) for k, v in run.cpu_s.items()},
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{file}  ({scan.meta.format}, {scan.meta.pattern.value}, {scan.shape})")
    for o in run.outputs:
        verdicts = ", ".join(f"{v.criterion}:{v.verdict.value}" for v in o.verdicts)
        click.echo(f"\n{o.measure} {o.version}  [{verdicts}]")
        for v in o.verdicts:
            click.echo(f"  {v.criterion} {v.verdict.value}: {v.reason}")
        for k, val in o.values.items():
            click.echo(f"  {k} = {val}")
    s = run.summary
    click.echo("\nOSCAR-IB: " + " ".join(f"{c}={v.verdict.value}" for c, v in s.letters.items()))
    click.echo("overall: " + ("PASS" if s.passed else f"FAIL ({', '.join(s.failed_letters)})"))
    if report is not None:
        click.echo(f"report and pictures in {report}")


def _validate(as_json: bool, quick: bool, samples: Path | None, seeds: int | None) -> None:
    from qmroct.measures.validation import (
        GRADER_SEVERITY,
        SIGNAL_VALUES,
        ordering_on_samples,
        retest,
        sweep,
    )

    t0 = time.time()

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            click.echo(f"phantoms {done}/{total} ({time.time() - t0:.0f} s)", err=True)

    result = sweep(quick=quick, seeds=seeds, progress=progress)
    root = samples or _default_samples()
    ordering = ordering_on_samples(root) if root else []
    repeats = retest(eyes=2 if quick else 6)
    if as_json:
        # Keyed by measure name only; the fail severity and its reason travel with each probe
        # and the real-sample ordering with the signal measure it checks.
        doc = {name: mv.model_dump(mode="json") for name, mv in result.items()}
        for pattern, rows in repeats.items():
            for row in rows:
                entry = doc.setdefault(row.graded_by.partition(".")[0], {})
                entry.setdefault("test_retest", []).append(
                    {"pattern": pattern, **row.model_dump(mode="json")}
                )
        if "signal" in doc:
            doc["signal"]["ordering_real_samples"] = [c.model_dump(mode="json") for c in ordering]
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(
        f"phantom sweep ({'quick' if quick else 'full'}); every seed a different healthy eye; "
        "AUC of clean against the severity a grader fails, 95% bootstrap interval"
    )
    click.echo(f"{'measure':16} {'AUC':>6} {'95% CI':>13} {'monotonic':>9}")
    for name, mv in result.items():
        if mv.auc is None:
            click.echo(f"{name:16} {'n/a':>6}  {mv.note}")
            continue
        lo, hi = mv.auc_ci95 or (float("nan"), float("nan"))
        click.echo(f"{name:16} {mv.auc:6.3f} [{lo:.2f}, {hi:.2f}] {str(mv.monotonic):>9}")
        for p in mv.probes:
            curve = " ".join(
                f"{s:g}:{v:.3g}" for s, v in zip(p["severities"], p["response"], strict=True)
            )
            a_lo, a_hi = p["auc_ci95"]
            click.echo(
                f"    {p['defect']:15} {p['value']} ({p['direction']}): {curve}\n"
                f"    {'':15} fail at {p['fail_severity']:g}: AUC {p['auc']:.3f} "
                f"[{a_lo:.2f}, {a_hi:.2f}], n {p['n_clean']}+{p['n_defect']}; "
                f"{GRADER_SEVERITY[p['defect']].why}"
            )
    click.echo("\ncross-talk: fraction flagged (warn/fail) at each defect's fail severity")
    for name, mv in result.items():
        hits = {d: r for d, r in mv.cross_talk.items() if r - (mv.clean_flag_rate or 0) >= 0.5}
        shown = ", ".join(f"{d} {r:.2f}" for d, r in hits.items()) or "none"
        click.echo(f"  {name:16} clean {mv.clean_flag_rate:.2f}; flagged: {shown}")
        for d, why in mv.expected_cross_talk.items():
            click.echo(f"      {d}: expected ({why})")
        if mv.unexpected_cross_talk:
            click.echo(f"      UNEXPECTED: {', '.join(mv.unexpected_cross_talk)}")
    click.echo("\ntest-retest: repeat scans of the same phantom eyes (new speckle and noise)")
    for pattern, rows in repeats.items():
        for row in rows:
            click.echo(
                f"  {pattern:6} {row.letter} {row.graded_by:40} max {row.max_relative_difference:.1%}"
                f"  median {row.median_relative_difference:.1%}  ({row.eyes} eyes)"
            )
    click.echo("\nreal samples: signal values against the device quality (same device kind)")
    for c in ordering:
        for s in c.scans:
            vals = " ".join(f"{k}={s[k]:.3g}" for k in SIGNAL_VALUES if s[k] is not None)
            click.echo(f"  [{c.kind}] {s['scan']}: device {s['device_quality']:.1f}; {vals}")
        verdict = ", ".join(f"{k} {'agrees' if ok else 'DISAGREES'}" for k, ok in c.agrees.items())
        click.echo(f"  [{c.kind}] order: {verdict or 'only one scan of this kind'}")
    click.echo(f"\n({time.time() - t0:.0f} s)")


def _default_samples() -> Path | None:
    import os

    env = os.environ.get("QMROCT_SAMPLES")
    repo = Path(__file__).resolve().parents[2]
    candidates = [Path(env)] if env else []
    candidates += [repo.parent / "shared" / "data" / "oct-samples"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _bench(as_json: bool) -> None:
    from qmroct.measures.runner import run_suite
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.segmentation import segment

    scan, _, _ = make_phantom("volume", size="paper", seed=0)
    t = time.process_time()
    seg = segment(scan)
    seg_s = time.process_time() - t
    runs = [run_suite(scan, segmentation=seg) for _ in range(3)]
    cpu = {k: min(r.cpu_s[k] for r in runs) for k in runs[0].cpu_s}
    total = sum(cpu.values())
    doc = {
        "volume": list(scan.shape),
        "megabytes": round(scan.bscans.nbytes / 1e6, 1),
        "segmentation_cpu_s": round(seg_s, 3),
        "cpu_s": {k: round(v, 4) for k, v in cpu.items()},
        "suite_cpu_s": round(total, 3),
        "target_s": 2.0,
        "meets_target": total < 2.0,
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"phantom volume {doc['volume']} ({doc['megabytes']} MB); best of 3, CPU seconds")
    for k, v in cpu.items():
        click.echo(f"  {k:16} {v:7.3f}")
    click.echo(
        f"  {'suite total':16} {total:7.3f}  (target < 2 s: {'met' if total < 2 else 'MISSED'})"
    )
    click.echo(f"  {'segment() input':16} {seg_s:7.3f}  (derived product, computed once per scan)")


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    measure, bench = groups["measure"], groups["bench"]

    @measure.command("run")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--measure", "measures", multiple=True, help="only this measure (repeatable)")
    @click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
    @click.option(
        "--report",
        type=click.Path(file_okay=False, path_type=Path),
        help="write the pictures and an HTML report to this folder",
    )
    def run_cmd(file: Path, measures: tuple[str, ...], as_json: bool, report: Path | None) -> None:
        """Run the quality measures on one OCT file (the same code as the actions)."""
        _run(file, measures, as_json, report)

    @measure.command("list")
    @click.option("--json", "as_json", is_flag=True)
    def list_cmd(as_json: bool) -> None:
        """List the measures: version, OSCAR-IB letters and parameters."""
        from qmroct.measures.base import get_measure
        from qmroct.measures.runner import measure_names

        rows = []
        for name in measure_names():
            m = get_measure(name)
            rows.append({
                "name": m.name,
                "version": m.version,
                "criteria": list(m.criteria),
                "params": m.Params().model_dump(mode="json"),
            })  # fmt: skip
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
            click.echo(f"{r['name']:16} {r['version']:7} {''.join(r['criteria']):3} {params}")

    @measure.command("docs")
    def docs_cmd() -> None:
        """Print docs/measures.md, generated from the code's docstrings."""
        from qmroct.measures.docs import render_markdown

        sys.stdout.write(render_markdown())

    @cli.command("validate")
    @click.option("--json", "as_json", is_flag=True, help="JSON keyed by measure name")
    @click.option(
        "--quick", is_flag=True, help="6 seeds, severities notice/fail/1 (the run tests use)"
    )
    @click.option("--seeds", type=int, help="phantom eyes per severity (default 6 quick, 16 full)")
    @click.option(
        "--samples",
        type=click.Path(file_okay=False, path_type=Path),
        help="real OCT samples folder (default: $QMROCT_SAMPLES or ../shared/data/oct-samples)",
    )
    def validate_cmd(as_json: bool, quick: bool, samples: Path | None, seeds: int | None) -> None:
        """Validate the measures: phantom defect sweep over healthy eyes of natural anatomical
        variation (response, AUC with 95% CI at the severity a grader fails, cross-talk) and
        the ordering of the real samples by the signal measures. Progress goes to stderr."""
        _validate(as_json, quick, samples, seeds)

    @bench.command("measures")
    @click.option("--json", "as_json", is_flag=True)
    def bench_cmd(as_json: bool) -> None:
        """CPU time of each measure on a 25 MB phantom volume (target: suite under 2 s)."""
        _bench(as_json)

"""Commands of the measure suite: measure run/list/docs, bench measures (validate: validate_cmds)."""

from __future__ import annotations

import json
import sys
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


def _bench(as_json: bool, file: Path | None, repeats: int) -> None:
    from qmroct.errors import QmroctError
    from qmroct.measures.bench import suite_costs

    try:
        doc = suite_costs(file, repeats=repeats, progress=lambda m: click.echo(m, err=True))
    except QmroctError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(doc.model_dump_json(indent=2))
        return
    for line in doc.lines():
        click.echo(line)


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

    @bench.command("measures")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    @click.option(
        "--file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="an OCT file to measure (default: the paper-size phantom volume, as .vol)",
    )
    @click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True)
    def bench_cmd(as_json: bool, file: Path | None, repeats: int) -> None:
        """CPU of the suite per scan: reading, segmentation, context, shared state, and each
        measure in the suite and alone (as one action from a stored context), its PNG apart.
        Best of --repeats; progress goes to stderr."""
        _bench(as_json, file, repeats)

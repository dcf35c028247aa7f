"""``qmroct monitor``: sample every component's CPU, memory and I/O once a second."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click


def _parse_pids(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        label, sep, pid = v.partition("=")
        if not sep or not label or not pid.isdigit():
            raise click.BadParameter(
                f"{v!r}: expected LABEL=PID, e.g. web=12345", param_hint="--pid"
            )
        out[label] = int(pid)
    return out


@click.group(invoke_without_command=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the stack's folder (its stack.json names the process); default: every running "
    "embedded stack, found by its containers",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="seconds between samples",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, None),
    default=None,
    help="stop after this many seconds (default: until Ctrl-C or SIGTERM)",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="append the time series to this CSV file (one row per component per tick)",
)
@click.option(
    "--prometheus",
    "prom_port",
    type=click.IntRange(0, 65535),
    default=None,
    help="serve /metrics in Prometheus' text format on this port (0: any free port)",
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="address of the Prometheus endpoint"
)
@click.option(
    "--pid",
    "pids",
    multiple=True,
    metavar="LABEL=PID",
    help="also sample this process and its descendants under LABEL (repeatable)",
)
@click.option("--quiet", is_flag=True, help="no status line per tick")
@click.pass_context
def monitor(
    ctx: click.Context,
    home: Path | None,
    interval: float,
    duration: float | None,
    csv_path: Path | None,
    prom_port: int | None,
    bind: str,
    pids: tuple[str, ...],
    quiet: bool,
) -> None:
    """Sample every component of the stack once a second: CPU, memory, bytes read and written.

    Components: `stack` (the `qmroct up` process: REST API, object store, event queue),
    `action:<name>` (the warm containers of each action, the scheduler among them),
    `postgresql`, `web`, and any --pid you add. Writes a CSV time series (--csv) and serves a
    Prometheus endpoint (--prometheus) that an existing Prometheus can scrape. `qmroct monitor
    report` turns the CSV into an HTML report with plots.

    \b
    Examples:
      qmroct monitor --csv monitor.csv --prometheus 9464
      qmroct monitor --home .qmroct --duration 60 --csv run.csv --quiet
    """
    if ctx.invoked_subcommand is not None:
        return
    from qmroct.monitor.exporters import CsvSink, PrometheusCollector, serve_prometheus, status_line
    from qmroct.monitor.sampler import Sampler, run

    sampler = Sampler(home=home, extra=_parse_pids(pids))
    sinks = []
    csv_sink = CsvSink(csv_path) if csv_path is not None else None
    if csv_sink is not None:
        sinks.append(csv_sink)
    if prom_port is not None:
        collector = PrometheusCollector()
        _server, port = serve_prometheus(collector, prom_port, bind)
        sinks.append(collector)
        click.echo(f"Prometheus metrics at http://{bind}:{port}/metrics", err=True)
    tty = sys.stderr.isatty()
    if not quiet:

        def show(samples: list) -> None:
            line = status_line(samples)
            if tty:
                click.echo("\r\033[K" + line[:200], err=True, nl=False)
            else:
                click.echo(line, err=True)

        sinks.append(show)

    stopping = {"now": False}

    def on_term(_sig: int, _frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    ticks = 0
    try:
        ticks = run(sampler, sinks, interval, duration, stop=lambda: stopping["now"])
    except KeyboardInterrupt:
        pass
    finally:
        if csv_sink is not None:
            csv_sink.close()
        if tty and not quiet:
            click.echo("", err=True)
    where = f", written to {csv_path}" if csv_path is not None else ""
    click.echo(f"{ticks} samples{where}", err=True)


@monitor.command("report")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--spans",
    "spans_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON list of {label, start, end, group} to mark (UNIX seconds)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("monitor-report"),
    show_default=True,
    help="folder for the report",
)
@click.option("--title", default="qmroct monitor", show_default=True)
def monitor_report(csv_path: Path, spans_path: Path | None, out_dir: Path, title: str) -> None:
    """Turn a monitor CSV into report.html (plots and tables), report.json and monitor.png."""
    from qmroct.monitor.exporters import read_csv
    from qmroct.monitor.report import read_spans, write_report

    samples = read_csv(csv_path)
    if not samples:
        raise click.ClickException(f"{csv_path}: no samples in the file")
    report = write_report(samples, read_spans(spans_path), out_dir, title=title)
    for u in report.usage:
        if u.span == "all":
            click.echo(
                f"{u.component:28s} CPU avg {u.cpu_avg_percent:6.1f}% peak {u.cpu_peak_percent:6.1f}%"
                f"  memory avg {u.rss_avg_mb:7.0f} MB peak {u.rss_peak_mb:7.0f} MB"
            )
    click.echo(f"report: {out_dir / 'report.html'}")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: expected numbers like 1,2,4") from exc
    if not values or min(values) < 1 or max(values) > 64:
        raise click.BadParameter(f"{text!r}: between 1 and 64 users")
    return values


@click.command("replay")
@click.option(
    "--users",
    default="1,2,4",
    show_default=True,
    help="numbers of concurrent users to test, comma-separated (1 is always run)",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="sessions per user and setting",
)
@click.option(
    "--profiles",
    default="lan,vpn,wan",
    show_default=True,
    help="network profiles for the single-user runs: lan, vpn, wan or "
    "NAME:DELAY_MS:JITTER_MS:RATE_MBIT; the first also carries the concurrent runs",
)
@click.option(
    "--planned",
    type=click.IntRange(1, 10_000),
    default=10,
    show_default=True,
    help="the concurrent users the deployment is planned for",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="a folder with `qmroct demo` data to serve (default: run the demo first)",
)
@click.option(
    "--scans",
    type=click.IntRange(2, 50),
    default=4,
    show_default=True,
    help="scans for the demo run when --home has none",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/replay"),
    show_default=True,
    help="folder for replay.json, report.html and the server's time series",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def bench_replay(
    users: str,
    repeats: int,
    profiles: str,
    planned: int,
    home: Path | None,
    scans: int,
    out_dir: Path,
    as_json: bool,
) -> None:
    """Replay researcher and radiologist sessions in headless Chromium against the web view.

    A researcher logs in, filters and searches, downloads the selection and logs out; a
    radiologist logs in, filters, opens the viewer, changes scan, plays and stops. Prints per
    user action the duration (p50, p95), the web server's CPU (average and peak) and memory,
    and the bytes each way, under each network profile; then the capacity factor: the number of
    concurrent users at which some action's p95 exceeds twice its single-user p95, divided by
    --planned. Needs Debian's chromium and chromium-driver.
    """
    from qmroct.replay.bench import run_replay

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    figures = run_replay(
        users=_int_list(users),
        repeats=repeats,
        profiles=[p.strip() for p in profiles.split(",") if p.strip()],
        planned=planned,
        home=home,
        scans=scans,
        out_dir=out_dir,
        progress=say,
    )
    if as_json:
        click.echo(figures.model_dump_json(indent=2))
    else:
        click.echo("\n".join(figures.lines()))
    sys.exit(1 if figures.failures else 0)


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    cli.add_command(monitor)
    groups["bench"].add_command(bench_replay)

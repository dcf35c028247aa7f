"""Commands that run the embedded stack: demo, up, status."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click
from qmroct.config import load_settings

_last_line = {"text": "", "at": 0.0}


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _progress(msg: str) -> None:
    """Progress on stderr: a live line in a terminal; in a log, plain lines, at most one a
    second and only when something changed."""
    if not msg.startswith("\r"):
        click.echo(msg, err=True, nl=not msg.endswith("\n"))
        return
    if sys.stderr.isatty():
        click.echo(msg, err=True, nl=False)
        return
    text = msg.strip()
    now = time.monotonic()
    if text and text != _last_line["text"] and now - _last_line["at"] >= 1.0:
        _last_line.update(text=text, at=now)
        click.echo(text, err=True)


@click.command()
@click.option(
    "--scans",
    "n_scans",
    type=click.IntRange(1, 500),
    default=6,
    show_default=True,
    help="how many synthetic scans to make and upload",
)
@click.option(
    "--cap",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="measure activations allowed in flight at once",
)
@click.option("--json", "as_json", is_flag=True, help="print a JSON object instead of the table")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="working folder (default: a new temporary folder)",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=900.0,
    show_default=True,
    help="seconds to wait for the pipeline to finish",
)
def demo(n_scans: int, cap: int, as_json: bool, home: Path | None, timeout_s: float) -> None:
    """Run the whole pipeline on synthetic scans and print what every measure found.

    Phantom scans with known, injected defects are uploaded through the gateway's path into
    the embedded object store; its MinIO-format events fire the image-stored trigger, and the
    scheduler runs every published measure action under the cap. Exits non-zero if anything
    failed.
    """
    from qmroct.embedded.demo import format_table, run_demo

    report = run_demo(n_scans, home=home, cap=cap, timeout_s=timeout_s, progress=_progress)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(format_table(report))
        click.echo(
            f"\n{len(report.scans)} scans, {len(report.measures)} measures, "
            f"{report.failed} failed, {report.seconds:.1f} s (working folder {report.home})"
        )
        for f in report.failures:
            click.echo(f"  failed: {f}", err=True)
    sys.exit(1 if report.failed else 0)


@click.command()
@click.option(
    "--inbox",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="a folder to watch: complete files are de-identified and uploaded",
)
@click.option("--project", default="LOCAL", show_default=True, help="project for inbox uploads")
@click.option(
    "--cap", type=click.IntRange(1, 64), default=None, help="default: QMROCT_MAX_INFLIGHT"
)
@click.option(
    "--web/--no-web", "with_web", default=True, show_default=True, help="serve the web view too"
)
@click.option(
    "--web-port", type=click.IntRange(0, 65535), default=None, help="default QMROCT_WEB_PORT"
)
@click.option(
    "--dev-sweep-s",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="how often developers' measure actions (wsk action update) are looked for and "
    "tested; 0: never",
)
def up(
    inbox: Path | None,
    project: str,
    cap: int | None,
    with_web: bool,
    web_port: int | None,
    dev_sweep_s: float,
) -> None:
    """Keep the embedded stack running (store, OpenWhisk, scheduler) until Ctrl-C.

    State lives in QMROCT_HOME (default .qmroct). With --inbox, files dropped into the folder
    go through the gateway and every published measure runs on them. The web view is served
    on QMROCT_WEB_HOST:QMROCT_WEB_PORT (add users with `qmroct web user add`).
    QMROCT_LEASE_SECONDS and QMROCT_MAX_ATTEMPTS set the job leases and retries. SIGTERM stops
    it like Ctrl-C; if it is killed outright, its action workers exit on their own, and the
    next start re-queues the jobs whose activations died with it.
    """
    from qmroct.embedded.stack import EmbeddedStack, StackOptions

    settings = load_settings()
    options = StackOptions(
        cap=cap or settings.max_inflight,
        lease_s=settings.lease_seconds,
        max_attempts=settings.max_attempts,
    )
    # SIGTERM stops the stack as Ctrl-C does, so its containers go with it.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = EmbeddedStack(settings.home, options).start()
    watcher = None
    web_server = None
    sweeper = None
    try:
        if stack.requeued_on_start:
            click.echo(
                f"re-queued {len(stack.requeued_on_start)} job(s) whose activation died "
                "with the previous stack"
            )
        if with_web:
            from qmroct.web.server import start as start_web
            from qmroct.web.state import WebSettings, WebState

            ws = WebSettings()
            _, web_store, _ = stack.require()
            web_state = WebState.from_settings(
                settings.model_copy(update={"ledger_url": stack.ledger_url}), ws, store=web_store
            )
            web_server = start_web(web_state, ws.host, ws.port if web_port is None else web_port)
        published = stack.publish_suite()
        if published:
            click.echo(f"published: {', '.join(published)}")
        assert stack.whisk is not None and stack.store_server is not None
        click.echo(f"object store  {stack.store_server.endpoint}")
        click.echo(f"OpenWhisk API {stack.whisk.api_host}  (auth in {stack.home}/whisk)")
        click.echo(f"ledger        {stack.ledger_url}")
        if web_server is not None:
            click.echo(f"web view      {web_server.url}")
        if inbox is not None:
            from qmroct.gateway.inbox import InboxWatcher
            from qmroct.gateway.pseudonyms import PseudonymStore
            from qmroct.gateway.state import GatewayState
            from qmroct.gateway.upload import Uploader

            inbox.mkdir(parents=True, exist_ok=True)
            gw = stack.home / "gateway"
            gw.mkdir(exist_ok=True)
            state = GatewayState(gw / "state.sqlite3")
            store = stack.role_store("gateway")
            uploader = Uploader(
                store, PseudonymStore(gw / "pseudonyms.sqlite3"), state, project=project
            )
            watcher = InboxWatcher(inbox, uploader, state)
            click.echo(f"watching      {inbox}")
        if dev_sweep_s > 0:
            from qmroct.measures.devtest import Sandbox
            from qmroct.orchestration.approval import SweepLoop

            ledger, _, ow = stack.require()
            box = Sandbox(ow, stack.role_store("admin"), "the embedded stack")
            sweeper = SweepLoop(ledger, box, dev_sweep_s, report=click.echo).start()
        click.echo("running; Ctrl-C stops")
        while True:
            if watcher is not None:
                for o in watcher.poll():
                    click.echo(f"{o.status}: {o.source} {o.key or ''} {o.reason or ''}".rstrip())
            time.sleep(1.0)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        if sweeper is not None:
            sweeper.stop()
        if web_server is not None:
            web_server.stop()
        stack.stop()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--limit", type=int, default=10, show_default=True, help="recent activations shown")
def status(as_json: bool, limit: int) -> None:
    """Queue depth, in-flight count, failures and recent activations of the local stack."""
    from qmroct.runtime.records import read_activations
    from qmroct.storage.ledger import Ledger

    settings = load_settings()
    url = settings.ledger_url or f"sqlite:///{Path(settings.home).resolve() / 'ledger.sqlite3'}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise click.ClickException(
            f"no ledger at {url}: start the stack with `qmroct up`, or set QMROCT_LEDGER_URL"
        )
    ledger = Ledger.open(url)
    counts = ledger.counts()
    dead = ledger.jobs(state="dead", limit=20)
    recent = read_activations(Path(settings.home) / "whisk", limit=limit)
    usage = _measure_usage(Path(settings.home) / "whisk")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "counts": counts.model_dump(mode="json"),
                    "dead": [{"key": j.key, "error": j.last_error} for j in dead],
                    "activations": recent,
                    "usage": [u.model_dump() for u in usage],
                },
                indent=2,
                default=str,
            )
        )
        return
    click.echo(f"in flight: {counts.in_flight}")
    for kind, states in sorted(counts.by_kind.items()):
        shown = ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
        click.echo(f"{kind:8s} {shown}")
    for j in dead:
        click.echo(f"dead: {j.key}: {j.last_error}")
    if usage:
        from qmroct.runtime.usage import rollup_lines

        click.echo("measure activations (last 2000 records):")
        for line in rollup_lines(usage):
            click.echo(f"  {line}")
    if recent:
        click.echo("recent activations:")
        for a in recent:
            resp = a.get("response", {})
            click.echo(
                f"  {a.get('activationId', '')[:12]}  {a.get('name', ''):28s} "
                f"{a.get('duration', 0):>6} ms  status {resp.get('statusCode')}"
            )


def _measure_usage(whisk_home: Path) -> list:  # list[UsageRollup]
    """Resources per measure action and version over the newest 2000 records."""
    from qmroct.runtime.records import ActivationStore
    from qmroct.runtime.usage import rollup

    if not (whisk_home / "activations").is_dir():
        return []
    store = ActivationStore(whisk_home)
    try:
        records = store.list(limit=2000)
    finally:
        store.close()
    return rollup([r for r in records if r.name.startswith("measure-")])


@click.command("paper")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option(
    "--cap",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="measure activations in flight (2 suits this machine's 2 cores)",
)
@click.option("--scans", type=click.IntRange(1, 100), default=12, show_default=True)
@click.option(
    "--monitor",
    "monitor_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="sample every component once a second during the run and write monitor.csv and a "
    "report (report.html, report.json) with the upload and quality phases marked here",
)
def bench_paper(as_json: bool, cap: int, scans: int, monitor_dir: Path | None) -> None:
    """The paper's workload end to end: 12 volumes (~294 MB) uploaded, the whole suite computed.

    Prints end-to-end seconds beside the paper's 94 s upload plus 880 s quality assessment
    (3 measures on 4 virtual machines).
    """
    import contextlib
    import os

    from qmroct.embedded.bench import run_paper_bench

    with contextlib.ExitStack() as stack:
        if monitor_dir is not None:
            from qmroct.monitor.exporters import monitor_process

            monitor_dir.mkdir(parents=True, exist_ok=True)
            (monitor_dir / "monitor.csv").unlink(missing_ok=True)
            stack.enter_context(monitor_process(monitor_dir / "monitor.csv", os.getpid()))
        figures = run_paper_bench(cap=cap, scans=scans, progress=_progress)
    if monitor_dir is not None:
        from qmroct.monitor.report import paper_report

        paper_report(figures, monitor_dir)
        _progress(f"monitor report: {monitor_dir / 'report.html'}")
    if as_json:
        click.echo(figures.model_dump_json(indent=2))
    else:
        click.echo("\n".join(figures.lines()))
    sys.exit(1 if figures.failed else 0)


@click.command("compare")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="pool workers, and the pipeline's cap",
)
@click.option("--scans", type=click.IntRange(1, 100), default=12, show_default=True)
def bench_compare(as_json: bool, processes: int, scans: int) -> None:
    """The pipeline against a plain process pool on the paper workload, on the same cores.

    Runs a multiprocessing.Pool calling every measure on each file, then the whole pipeline on
    the same files; prints both wall times, both CPU totals (every process each started) and
    overhead_ratio = pipeline CPU / pool CPU.
    """
    from qmroct.embedded.compare import run_compare

    figures = run_compare(processes=processes, scans=scans, progress=_progress)
    if as_json:
        click.echo(figures.model_dump_json(indent=2))
    else:
        click.echo("\n".join(figures.lines()))
    sys.exit(1 if figures.failed else 0)


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    groups["bench"].add_command(bench_paper)
    groups["bench"].add_command(bench_compare)
    cli.add_command(demo)
    cli.add_command(up)
    cli.add_command(status)

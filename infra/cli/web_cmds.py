"""Commands of the web view: serve it, manage its users, index the catalog, benchmark it."""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path

import click


def _progress(msg: str) -> None:
    click.echo(msg, err=True, nl=not msg.startswith("\r"))


@click.group(invoke_without_command=True)
@click.option(
    "--host", default=None, help="address to listen on (default QMROCT_WEB_HOST, 127.0.0.1)"
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="default QMROCT_WEB_PORT, 8470"
)
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The researcher's web view: search scans by quality, read reports, view, download.

    Without a subcommand, serves the view against the configured ledger (QMROCT_LEDGER_URL),
    object store (QMROCT_STORE_*) and XNAT link (QMROCT_XNAT_URL) until Ctrl-C. Create a user
    first with `qmroct web user add`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from qmroct.web.server import start
    from qmroct.web.state import WebSettings, WebState

    ws = WebSettings()
    state = WebState.from_settings(web=ws)
    if not state.users.list():
        click.echo("no users yet: add one with `qmroct web user add NAME --role admin`", err=True)
    server = start(state, host or ws.host, ws.port if port is None else port)
    click.echo(f"qmroct web view on {server.url}  (Ctrl-C stops)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        server.stop()


@web.group()
def user() -> None:
    """Add, list and disable web view users."""


def _db():  # type: ignore[no-untyped-def]
    from pathlib import Path

    from qmroct.config import load_settings
    from qmroct.storage.db import connect

    s = load_settings()
    return connect(s.ledger_url or f"sqlite:///{Path(s.home).resolve() / 'ledger.sqlite3'}")


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["researcher", "measure-developer", "admin"]),
    required=True,
    help="the object store's role names: what the user may see",
)
@click.option("--project", "projects", multiple=True, help="a project a researcher sees (repeat)")
@click.option(
    "--password-stdin", is_flag=True, help="read the password from standard input (scripts)"
)
def user_add(username: str, role: str, projects: tuple[str, ...], password_stdin: bool) -> None:
    """Create a user, or change an existing user's password, role and projects."""
    from qmroct.web.auth import UserError, Users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {username}: ")
        if getpass.getpass("again: ") != password:
            raise click.ClickException("the passwords differ")
    if role == "researcher" and not projects:
        click.echo("note: a researcher without --project sees no scans", err=True)
    try:
        u = Users(_db()).add(username, password, role, list(projects))
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{u.username}: {u.role} {' '.join(u.projects)}".rstrip())


@user.command("list")
def user_list() -> None:
    """The users and their roles."""
    from qmroct.web.auth import Users

    for u in Users(_db()).list():
        click.echo(f"{u.username:24s} {u.role:18s} {' '.join(u.projects)}")


@user.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Stop a user from logging in (their audit rows stay)."""
    from qmroct.web.auth import Users

    if not Users(_db()).disable(username):
        raise click.ClickException(f"no user {username!r}")
    click.echo(f"{username}: disabled")


@web.command("index")
@click.option("--rebuild", is_flag=True, help="drop the search index and build it again")
@click.option("--headers/--no-headers", default=True, help="read scan headers (eye, date, device)")
def index_cmd(rebuild: bool, headers: bool) -> None:
    """Bring the search index up to date with the catalog (the server also does this itself)."""
    from qmroct.web.state import WebState

    state = WebState.from_settings()
    try:
        stats = state.index.rebuild() if rebuild else state.index.refresh(progress=_progress)
        read = 0
        while headers:
            n = state.index.read_headers(state.read_meta, limit=50)
            read += n
            if n == 0:
                break
            _progress(f"\rread {read} headers")
        stats.headers_read = read
        click.echo(json.dumps(stats.model_dump()))
    finally:
        state.close()


@click.command("web")
@click.option("--scans", type=click.IntRange(100, 1_000_000), default=100_000, show_default=True)
@click.option("--repeat", type=click.IntRange(5, 1000), default=40, show_default=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="a demo's working folder to add the synthetic rows to (default: a new demo)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def bench_web(scans: int, repeat: int, home: Path | None, as_json: bool) -> None:
    """p50 and p95 per user action at SCANS catalogued scans (synthetic catalogue rows, images
    of real demo scans): search, scan page, B-scan change, first viewer paint, group data.

    Targets: search < 200 ms p95, B-scan change < 50 ms p95, first viewer paint < 1 s.
    """
    from qmroct.web.bench import run_web_bench

    figures = run_web_bench(scans=scans, repeat=repeat, home=home, progress=_progress)
    if as_json:
        click.echo(figures.model_dump_json(indent=2))
    else:
        click.echo("\n".join(figures.lines()))


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    cli.add_command(web)
    groups["bench"].add_command(bench_web)

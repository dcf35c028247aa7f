"""Commands of the embedded OpenWhisk runtime: build, activations, bench runtime."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click
from qmroct.errors import QmroctError


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@click.command("build")
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    default=Path("manifest.yaml"),
    show_default=True,
    help="the wskdeploy manifest",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build/actions"),
    show_default=True,
    help="where the <action>.zip files go",
)
@click.option(
    "--with-virtualenv",
    is_flag=True,
    help="embed virtualenv/ with the runtime deps (for the stock python runtime)",
)
@click.option(
    "--requirements",
    type=click.Path(path_type=Path),
    default=Path("layers/requirements-runtime.txt"),
    show_default=True,
    help="the deps --with-virtualenv installs",
)
def build_cmd(manifest: Path, out: Path, with_virtualenv: bool, requirements: Path) -> None:
    """Write one deterministic zip per manifest action (what `wsk action update` receives)."""
    from qmroct.runtime.actionzip import build_actions, find_pyproject
    from qmroct.runtime.manifest import load_manifest

    try:
        parsed = load_manifest(manifest, dict(os.environ))
        built = build_actions(
            parsed,
            out,
            find_pyproject(manifest.resolve().parent),
            with_virtualenv=with_virtualenv,
            requirements=requirements if with_virtualenv else None,
        )
    except QmroctError as exc:
        _fail(exc)
    for b in built:
        click.echo(f"{b.name:<26} {b.size:>10,} bytes  sha256:{b.sha256[:16]}  {b.path}")


@click.command("activations")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="the runtime's home folder (default: QMROCT_HOME or .qmroct)",
)
@click.option(
    "--name",
    default=None,
    help="only this action: `pkg/action` for a packaged one, as `wsk activation list` takes it",
)
@click.option("--limit", type=int, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="full records as JSON")
@click.option(
    "--summary",
    is_flag=True,
    help="per action and version over the last --limit records: activations, cold starts, "
    "CPU, peak memory, wait, init and run times",
)
def activations_cmd(
    home: Path | None, name: str | None, limit: int, as_json: bool, summary: bool
) -> None:
    """List activation records of the embedded runtime, newest first.

    Each record carries OpenWhisk's waitTime and initTime (cold starts) and what the run used:
    runTime (ms), cpuTime (ms), peakMemory (bytes), bytesRead and bytesWritten.
    """
    from qmroct.config import load_settings
    from qmroct.runtime.records import ActivationStore

    folder = home or load_settings().home
    if not (folder / "activations").is_dir() and (folder / "whisk" / "activations").is_dir():
        folder = folder / "whisk"  # the embedded stack keeps its runtime in <home>/whisk
    if not (folder / "activations").is_dir():
        raise click.ClickException(f"{folder}: no activation records (is this the runtime home?)")
    store = ActivationStore(folder)
    records = store.list(name=name, limit=limit)
    store.close()
    if summary:
        from qmroct.runtime.usage import rollup, rollup_lines

        rows = rollup(records)
        if as_json:
            click.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        else:
            click.echo("\n".join(rollup_lines(rows)))
        return
    if as_json:
        click.echo(json.dumps([r.model_dump(exclude_none=True) for r in records], indent=2))
        return
    for r in records:
        when = datetime.fromtimestamp(r.start / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        cold = "cold" if r.annotation("initTime") is not None else "warm"
        click.echo(
            f"{when} {r.activationId} {r.name:<28} {r.response.status:<22} "
            f"{r.duration:>7} ms {cold}"
        )


@click.command("deploy")
@click.option("--apihost", required=True, help="the OpenWhisk API, e.g. https://openwhisk.example")
@click.option("--auth", required=True, envvar="QMROCT_OW_AUTH", help="uuid:key (or QMROCT_OW_AUTH)")
@click.option("--namespace", default="_", show_default=True)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    default=Path("manifest.yaml"),
    show_default=True,
    help="the wskdeploy manifest",
)
@click.option(
    "--image",
    default=None,
    help="runtime image built from layers/Dockerfile: actions become blackbox actions of it",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build/actions"),
    show_default=True,
    help="where the zips are built",
)
@click.option("--insecure", is_flag=True, help="do not verify the API's TLS certificate")
@click.option("--json", "as_json", is_flag=True, help="print the changes as JSON")
def deploy_cmd(
    apihost: str,
    auth: str,
    namespace: str,
    manifest: Path,
    image: str | None,
    out: Path,
    insecure: bool,
    as_json: bool,
) -> None:
    """Deploy the manifest's package to an OpenWhisk by its REST API, changing only what differs.

    Builds the action zips (the action folder plus the qmroct library, as `qmroct build`),
    then creates or updates the package, actions, sequences, triggers (alarm feeds through the
    alarms provider) and rules. Manifest `$VAR` inputs come from the environment. Prints one
    line per entity (created, updated, unchanged, failed); a second run changes nothing.
    """
    from qmroct.clients.openwhisk import OpenWhiskClient
    from qmroct.runtime.actionzip import build_actions, find_pyproject
    from qmroct.runtime.deploy import Deployer
    from qmroct.runtime.manifest import load_manifest

    try:
        parsed = load_manifest(manifest, dict(os.environ))
        built = build_actions(parsed, out, find_pyproject(manifest.resolve().parent))
        client = OpenWhiskClient(apihost, auth, namespace, verify=not insecure)
        echo = None if as_json else (lambda c: click.echo(c.line()))
        report = Deployer(client, parsed, built, image=image, echo=echo).deploy()
    except QmroctError as exc:
        _fail(exc)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(report.summary())
    if report.count("failed"):
        raise SystemExit(1)


@click.command("runtime")
@click.option("--runs", type=int, default=50, show_default=True, help="warm activations")
@click.option("--json", "as_json", is_flag=True)
def bench_runtime_cmd(runs: int, as_json: bool) -> None:
    """Warm and cold activation overhead of the embedded runtime, against the targets."""
    from qmroct.runtime.bench import run_bench

    figures = run_bench(runs=runs)
    if as_json:
        data = figures.model_dump()
        data.update(vm_ratio=figures.vm_ratio, docker_ratio=figures.docker_ratio)
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo("\n".join(figures.lines()))


@click.command("activations")
@click.option("--records", type=click.IntRange(1, 1_000_000), default=100_000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_activations_cmd(records: int, as_json: bool) -> None:
    """Activation-record store: write N records, then time list, filtered list, count, get."""
    import tempfile

    from qmroct.runtime.records import bench_records

    with tempfile.TemporaryDirectory(prefix="qmroct-records-") as tmp:
        figures = bench_records(records, Path(tmp), names=20)
    if as_json:
        click.echo(json.dumps({"records": records, **figures}, indent=2))
        return
    click.echo(f"{records} activation records")
    for key, value in figures.items():
        click.echo(f"  {key:<28} {value:10.3f}")


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    cli.add_command(build_cmd)
    cli.add_command(activations_cmd)
    cli.add_command(deploy_cmd)
    groups["bench"].add_command(bench_runtime_cmd)
    groups["bench"].add_command(bench_activations_cmd)

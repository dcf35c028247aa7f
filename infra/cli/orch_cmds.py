"""Commands of the orchestration area: publish and retire measures, show results, bench backfill."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from qmroct.config import Settings, load_settings


def _store(settings: Settings, role: str | None = None) -> Any:
    from qmroct.objectstore import store_from_settings

    return store_from_settings(settings, role)


def _ledger(settings: Settings) -> Any:
    from qmroct.storage.ledger import Ledger

    return Ledger.open(settings.effective_ledger_url())


@contextlib.contextmanager
def _bench_ledger(ledger_url: str, prefix: str) -> Iterator[Any]:
    """The ledger a ledger-only bench fills: ``ledger_url``, or a throwaway SQLite file that
    is removed afterwards."""
    import shutil
    import tempfile

    from qmroct.storage.ledger import Ledger

    scratch = None if ledger_url else tempfile.mkdtemp(prefix=prefix)
    ledger = Ledger.open(ledger_url or f"sqlite:///{scratch}/ledger.sqlite3")
    try:
        yield ledger
    finally:
        ledger.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _echo_figures(figures: Any, as_json: bool, width: int) -> None:
    """A bench's figures: one JSON document, or a right-aligned ``name: value`` per line."""
    if as_json:
        click.echo(figures.model_dump_json())
    else:
        for k, v in figures.model_dump().items():
            click.echo(f"{k:>{width}}: {v}")


def _publish(name: str, version: str, state: str, fields: dict[str, Any]) -> None:
    from qmroct.orchestration.publication import publish_measure
    from qmroct.storage.buckets import measure_key

    settings = load_settings()
    pub = publish_measure(
        _store(settings, "measure-developer"),
        name,
        version,
        state=state,
        bucket=settings.measures_bucket,
        **fields,
    )
    click.echo(
        f"{pub.state} {pub.name} {pub.version}: s3://{settings.measures_bucket}/"
        f"{measure_key(name, version)}"
    )


def publish_cmd(name: str, version: str, action: str | None, requires: tuple[str, ...]) -> None:
    """Publish measure NAME at --version: every stored scan is recomputed (backfill).

    Writes s3://oct-measures/NAME/VERSION.json; its bucket event starts on-measure-published.
    """
    fields: dict[str, Any] = {}
    if action:
        fields["action"] = action
    if requires:
        fields["requires"] = list(requires)
    _publish(name, version, "published", fields)


def retire_cmd(name: str, version: str) -> None:
    """Retire measure NAME at --version: no new jobs; every stored result is kept."""
    _publish(name, version, "retired", {})


def results_cmd(scan: str, history: bool, as_json: bool) -> None:
    """Results of SCAN (content hash, hash prefix, or bucket/key), current or with --history."""
    ledger = _ledger(load_settings())
    try:
        found = ledger.catalog.find_scans(scan)
        hashes = [s.scan_hash for s in found] or ([scan] if len(scan) == 64 else [])
        if len(hashes) > 1:
            raise click.ClickException(
                f"{scan!r} matches {len(hashes)} scans: " + ", ".join(h[:16] for h in hashes[:5])
            )
        rows = ledger.results(hashes[0], history=history) if hashes else []
    finally:
        ledger.close()
    if not rows:
        raise click.ClickException(f"no results for {scan!r}")
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    click.echo(f"scan {rows[0].scan_hash}")
    for r in rows:
        where = "current" if r.current else f"archived ({r.superseded_reason})"
        values = ", ".join(f"{k}={v}" for k, v in r.values.items())
        verdicts = " ".join(f"{v.criterion}:{v.verdict.value}" for v in r.verdicts)
        click.echo(f"  {r.measure} {r.version} [{r.status.value}] {where}")
        if values:
            click.echo(f"      {values}")
        if verdicts:
            click.echo(f"      {verdicts}")
        if r.failure:
            click.echo(f"      failure: {r.failure}")


def bench_backfill_cmd(
    scans: int, cap: int, measure: str, ledger_url: str, as_json: bool, keep_home: Path | None
) -> None:
    """Publish a new measure version over N stored scans on the embedded stack; print figures.

    Scans/s, per-job overhead p50/p99, claim latency p50/p99, scheduler ticks and scheduling
    CPU per scan, over the whole drain and from the tenth job on (cold starts left out), and
    the load average. The N scans are distinct files derived from a few phantoms; each goes
    through the gateway, the events and the catalogue. Every phase shows its progress on
    stderr. --ledger postgresql://... runs the ledger on that server, in a scratch database
    created for the run and dropped after it. The stack's home is deleted afterwards.
    """
    from qmroct.embedded.backfill_bench import PhaseProgress, bench_stack
    from qmroct.orchestration.bench import run_backfill_bench
    from qmroct.storage.scratch import scratch_database

    with (
        scratch_database(ledger_url) as url,
        bench_stack(scans=scans, cap=cap, ledger_url=url, home=keep_home) as stack,
    ):
        drain = PhaseProgress("backfill", scans)
        figures = run_backfill_bench(
            stack.ledger,
            stack.store,
            stack.ow,
            measure=measure,
            version=stack.next_version(measure),
            scans=scans,
            cap=cap,
            timeout_s=max(900.0, 2.0 * scans),
            poll_s=1.0,
            package=stack.package,
            scheduling_cpu=stack.scheduling_cpu,
            progress=drain.update,
        )
        drain.finish()
        # Printed before the home (gigabytes) is removed, which takes a while.
        _echo_figures(figures, as_json, 26)


@click.command("claim")
@click.option(
    "--ledger",
    "ledger_url",
    default="",
    help="ledger URL to fill (default: a throwaway SQLite file); use an empty database",
)
@click.option("--jobs", type=click.IntRange(1), default=200_000, show_default=True)
@click.option("--samples", type=click.IntRange(1), default=2000, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["complete", "release"]),
    default="complete",
    show_default=True,
    help="what happens to each claimed job: finished (a drain), or released for an hour "
    "(a throttled invoke: later claims walk past it)",
)
@click.option("--json", "as_json", is_flag=True)
def bench_claim_cmd(ledger_url: str, jobs: int, samples: int, mode: str, as_json: bool) -> None:
    """Bulk-enqueue JOBS backfill jobs into a ledger, then time SAMPLES claims.

    Prints the enqueue rate (COPY on PostgreSQL) and the claim latency p50/p99/max in ms with
    the queue that deep; the same without the time the claim waited for a CPU (busy_ms, from
    the kernel's schedstat of this thread and of a local PostgreSQL backend); the CPU a claim
    used; and the load average. The jobs stay in the ledger: point --ledger at a scratch
    database.
    """
    from qmroct.storage.bench import run_claim_bench

    with _bench_ledger(ledger_url, "qmroct-claim-") as ledger:
        figures = run_claim_bench(
            ledger,
            queued=jobs,
            samples=samples,
            mode=mode,
            progress=lambda m: click.echo(m, err=True),
        )
    _echo_figures(figures, as_json, 20)


@click.command("drain")
@click.option(
    "--ledger",
    "ledger_url",
    default="",
    help="ledger URL to fill (default: a throwaway SQLite file); use an empty database",
)
@click.option("--scans", type=click.IntRange(10), default=2000, show_default=True)
@click.option("--cap", type=click.IntRange(1), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_drain_cmd(ledger_url: str, scans: int, cap: int, as_json: bool) -> None:
    """Drain a backfill of SCANS scans (a derive and a measure job each) through the ledger
    alone, making the pipeline's ledger calls; print the CPU per job.

    Printed: this process's CPU per job for each tenth of the drain, the PostgreSQL
    backend's (when the server runs here), both per job kind, each kind's last tenth over
    its first (a cost growing with the jobs drained shows above 1), and the load average.
    Every derive job is claimed before the first measure job, so compare within a kind.
    The jobs stay in the ledger: point --ledger at a scratch database.
    """
    from qmroct.storage.bench import run_drain_bench

    with _bench_ledger(ledger_url, "qmroct-drain-") as ledger:
        figures = run_drain_bench(
            ledger, scans=scans, cap=cap, progress=lambda m: click.echo(m, err=True)
        )
    _echo_figures(figures, as_json, 28)


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    measure, bench = groups["measure"], groups["bench"]
    measure.command("publish")(
        click.argument("name")(
            click.option("--version", "version", required=True, help="semantic version")(
                click.option("--action", default=None, help="action to invoke (run-NAME)")(
                    click.option(
                        "--requires", multiple=True, help="derived product needed (repeat)"
                    )(publish_cmd)
                )
            )
        )
    )
    measure.command("retire")(
        click.argument("name")(click.option("--version", "version", required=True)(retire_cmd))
    )
    cli.command("results")(
        click.argument("scan")(
            click.option("--history", is_flag=True, help="archived values too")(
                click.option("--json", "as_json", is_flag=True)(results_cmd)
            )
        )
    )
    bench.add_command(bench_claim_cmd)
    bench.add_command(bench_drain_cmd)
    bench.command("backfill")(
        click.option("--scans", type=int, default=100, show_default=True)(
            click.option("--cap", type=int, default=4, show_default=True)(
                click.option("--measure", default="signal", show_default=True)(
                    click.option(
                        "--ledger",
                        "ledger_url",
                        default="",
                        help="a PostgreSQL server URL (a scratch database is made on it); "
                        "default SQLite",
                    )(
                        click.option("--json", "as_json", is_flag=True)(
                            click.option(
                                "--home",
                                "keep_home",
                                type=click.Path(file_okay=False, path_type=Path),
                                default=None,
                                help="run in this folder and keep it (default: a temporary "
                                "folder, deleted afterwards)",
                            )(bench_backfill_cmd)
                        )
                    )
                )
            )
        )
    )

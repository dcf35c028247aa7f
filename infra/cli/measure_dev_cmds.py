"""The measure developer's commands: measure new, test, approve, approvals, sweep."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


def _params(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from exc
    if not isinstance(value, dict):
        raise click.BadParameter(
            "a JSON object, e.g. '{\"warn_below\": 0.5}'", param_hint="--params"
        )
    return value


def _manifest_version(folder: Path, name: str) -> str:
    from qmroct.errors import ConfigError
    from qmroct.measures.scaffold import DEV_PACKAGE, VERSION_ANNOTATION, dev_manifest_path
    from qmroct.runtime.manifest import load_manifest

    _, pkg = load_manifest(dev_manifest_path(folder)).package(DEV_PACKAGE)
    spec = pkg.actions.get(f"measure-{name}")
    if spec is None:
        raise ConfigError(f"{dev_manifest_path(folder)}: no action measure-{name}")
    return str(spec.annotations.get(VERSION_ANNOTATION) or "0.1.0")


def _ledger() -> Any:
    from qmroct.config import load_settings
    from qmroct.storage.ledger import Ledger

    return Ledger.open(load_settings().effective_ledger_url())


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def new_cmd(name: str, criterion: str, folder: Path) -> None:
    """Write a working measure NAME into DIR (default: the current folder).

    The action folder, the measure class with its pydantic parameters and a docstring holding
    formula, citation and direction, a phantom defect test, the manifest entry of the
    developers' package and the docs entry. `qmroct measure test NAME` runs it at once.
    """
    from qmroct.errors import ConfigError
    from qmroct.measures.scaffold import new_measure

    try:
        paths = new_measure(folder, name, criterion)
    except ConfigError as exc:
        raise _fail(exc) from exc
    for p in paths:
        click.echo(f"wrote {p}")
    click.echo(f"next: qmroct measure test {name} --dir {folder}")


def test_cmd(
    name: str,
    folder: Path,
    data: str,
    raw_params: str | None,
    reference: Path | None,
    rtol: float,
    atol: float,
    out: Path | None,
    version: str | None,
    as_json: bool,
) -> None:
    """Deploy measure NAME from DIR to the developers' package and run it on the test set.

    Every test scan is one activation of the deployed action zip (the runtime's /init and
    /run), given presigned URLs into the test bucket only. Values, pictures and DICOM results
    are saved under --out; with --reference the values are compared with your local results.
    Uses the configured (or running `qmroct up`) OpenWhisk and store, else a private one.
    """
    from qmroct.config import load_settings
    from qmroct.errors import QmroctError
    from qmroct.measures import devtest
    from qmroct.measures.scaffold import write_docs_entry

    params = _params(raw_params)
    out = out or folder / "test-results" / name
    try:
        version = version or _manifest_version(folder, name)
        write_docs_entry(folder, name)
        with devtest.sandbox(load_settings()) as sb:
            _progress(f"deploying {devtest.dev_action(name)} {version} to {sb.where}")
            sha = devtest.deploy_dev(sb.ow, folder, name, version)
            if sb.private:
                scans = devtest.authorised_scans(sb.store, data)  # type: ignore[arg-type]
                report = devtest.run_test_set(
                    sb, devtest.dev_action(name), name, version, scans,
                    params=params, out_dir=out, progress=_progress,
                )  # fmt: skip
                report.code_sha256 = sha
            else:
                from qmroct.orchestration.approval import review

                ledger = _ledger()
                try:
                    report, _ = review(
                        ledger, sb, name, version, source="folder", data=data,
                        params=params, out_dir=out, progress=_progress,
                    )  # fmt: skip
                finally:
                    ledger.close()
        (out / "results.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
        rows = (
            devtest.compare(report, devtest.load_reference(reference), rtol=rtol, atol=atol)
            if reference
            else []
        )
    except QmroctError as exc:
        raise _fail(exc) from exc
    mismatches = [r for r in rows if not r.ok]
    if as_json:
        doc = {**report.model_dump(mode="json"), "passed": report.passed}
        if reference:
            doc["diff"] = [r.model_dump(mode="json") for r in rows]
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_report(report, out)
        if reference:
            _print_diff(rows, rtol, atol)
    if not report.passed or mismatches:
        raise SystemExit(1)


def _print_report(report: Any, out: Path) -> None:
    click.echo(f"{report.action} {report.version}  code sha256 {report.code_sha256[:16]}")
    for o in report.outcomes:
        verdicts = " ".join(f"{v['criterion']}:{v['verdict']}" for v in o.verdicts)
        click.echo(f"  {o.scan}  [{o.status}] {verdicts}  ({o.seconds:.1f} s)")
        shown = {k: v for k, v in o.values.items() if isinstance(v, int | float)}
        if shown:
            click.echo("      " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
        if o.failure:
            click.echo(f"      failure: {o.failure}")
        if o.picture or o.dicom:
            click.echo(f"      picture {o.picture}  DICOM {o.dicom}")
    click.echo(f"{'PASSED' if report.passed else 'FAILED'}; results in {out / 'results.json'}")


def _print_diff(rows: list[Any], rtol: float, atol: float) -> None:
    bad = [r for r in rows if not r.ok]
    click.echo(f"\ncompared with the reference (rtol {rtol:g}, atol {atol:g}): "
               f"{len(rows) - len(bad)}/{len(rows)} values agree")  # fmt: skip
    for r in rows:
        mark = " " if r.ok else "!"
        click.echo(
            f"  {mark} {r.scan:28} {r.value:20} reference {r.reference!r:>14}  got {r.got!r}"
        )


def approve_cmd(name: str, version: str, by: str | None, raw_params: str | None) -> None:
    """Approve measure NAME at --version: deploy it to production and publish it.

    Takes the code deployed as qmroct-dev/measure-NAME, which needs a passed test on the test
    set (one runs now when there is none), deploys it as measure-NAME with the sequence
    run-NAME through the OpenWhisk REST API, records who approved it, and publishes the
    version: every stored scan is then recomputed (backfill).
    """
    from qmroct.config import load_settings
    from qmroct.errors import QmroctError
    from qmroct.measures import devtest
    from qmroct.orchestration.approval import approve

    settings = load_settings()
    who = by or getpass.getuser()
    try:
        with devtest.sandbox(settings, "admin") as sb:
            if sb.private:
                raise click.ClickException(
                    "no OpenWhisk configured and no running stack: approval deploys to the "
                    "production OpenWhisk (set QMROCT_OW_API_HOST and QMROCT_OW_AUTH, or run "
                    "qmroct up)"
                )
            ledger = _ledger()
            try:
                done = approve(
                    ledger, sb, name, version, by=who, package=settings.ow_package,
                    params=_params(raw_params), bucket=settings.measures_bucket,
                    progress=_progress,
                )  # fmt: skip
            finally:
                ledger.close()
    except QmroctError as exc:
        raise _fail(exc) from exc
    r = done.review
    click.echo(
        f"approved {name} {version} by {r.approved_by} at {r.approved_at:%Y-%m-%d %H:%M:%S} UTC; "
        f"deployed {done.production_action} and {done.sequence}; published "
        f"s3://{settings.measures_bucket}/{name}/{version}.json (backfill starts)"
    )


def approvals_cmd(name: str | None, as_json: bool) -> None:
    """Tests and approvals of developers' measures: what was tested, approved, by whom, when."""
    from qmroct.storage.reviews import Reviews

    ledger = _ledger()
    try:
        rows = Reviews(ledger.db).list(name)
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not rows:
        click.echo("no measure has been tested or approved yet")
    for r in rows:
        who = f" by {r.approved_by} at {r.approved_at:%Y-%m-%d %H:%M:%S}" if r.approved_by else ""
        statuses = r.summary.get("statuses", {})
        click.echo(
            f"{r.measure:20} {r.version:8} {r.state.value:8}{who}  code {r.code_sha256[:12]}  "
            f"tested {r.tested_at:%Y-%m-%d %H:%M:%S} ({r.source}) {statuses}"
        )


def sweep_cmd(as_json: bool) -> None:
    """Test every measure action deployed to the developers' package with a qmroct-version
    annotation (`wsk action update ... -a qmroct-version V`) that is not yet published or
    tested; the outcomes show in `qmroct measure approvals`."""
    from qmroct.config import load_settings
    from qmroct.errors import QmroctError
    from qmroct.measures import devtest
    from qmroct.orchestration.approval import sweep

    try:
        with devtest.sandbox(load_settings(), "admin") as sb:
            if sb.private:
                raise click.ClickException("no OpenWhisk configured and no running stack")
            ledger = _ledger()
            try:
                found = sweep(ledger, sb, progress=_progress)
            finally:
                ledger.close()
    except QmroctError as exc:
        raise _fail(exc) from exc
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    for r in found:
        click.echo(f"{r.measure} {r.version}: {r.state.value} {r.summary.get('statuses')}")
    if not found:
        click.echo("nothing new in the developers' package")


def zip_cmd(name: str, folder: Path, out: Path | None) -> None:
    """Write the action zip of measure NAME from DIR, as `wsk action update` takes it."""
    from qmroct.errors import QmroctError
    from qmroct.measures.devtest import build_dev_zip

    target = out or Path(f"measure-{name}.zip")
    try:
        data = build_dev_zip(folder, name)
    except QmroctError as exc:
        raise _fail(exc) from exc
    target.write_bytes(data)
    click.echo(f"wrote {target} ({len(data)} bytes)")


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    measure = groups["measure"]
    folder_opt = click.option(
        "--dir",
        "folder",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="the developer's measure folder",
    )
    measure.command("new")(
        click.argument("name")(
            click.option(
                "--criterion",
                default="S",
                show_default=True,
                help="OSCAR-IB letter (O S C A R I B)",
            )(folder_opt(new_cmd))
        )
    )
    test = click.argument("name")(test_cmd)
    for opt in (
        folder_opt,
        click.option(
            "--data",
            type=click.Choice(["test", "phantoms"]),
            default="test",
            show_default=True,
            help="test: phantoms and the scans cleared for development; phantoms: only those",
        ),
        click.option("--params", "raw_params", help="measure parameters as a JSON object"),
        click.option(
            "--reference",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="your local results: {scan: {value: number}} or an earlier results.json",
        ),
        click.option("--rtol", type=float, default=1e-3, show_default=True),
        click.option("--atol", type=float, default=1e-6, show_default=True),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            help="where values, pictures and DICOM results go (default DIR/test-results/NAME)",
        ),
        click.option("--version", help="version annotation (default: the folder's manifest)"),
        click.option("--json", "as_json", is_flag=True),
    ):
        test = opt(test)
    measure.command("test")(test)
    measure.command("approve")(
        click.argument("name")(
            click.option("--version", "version", required=True, help="semantic version")(
                click.option("--by", help="who approves (default: your user name)")(
                    click.option("--params", "raw_params", help="published parameters, JSON")(
                        approve_cmd
                    )
                )
            )
        )
    )
    measure.command("approvals")(
        click.argument("name", required=False)(
            click.option("--json", "as_json", is_flag=True)(approvals_cmd)
        )
    )
    measure.command("zip")(
        click.argument("name")(
            folder_opt(
                click.option(
                    "--out",
                    type=click.Path(dir_okay=False, path_type=Path),
                    help="the zip to write (default measure-NAME.zip)",
                )(zip_cmd)
            )
        )
    )
    measure.command("sweep")(click.option("--json", "as_json", is_flag=True)(sweep_cmd))

"""Gateway commands: ``qmroct deid``, ``qmroct gateway upload|watch|dicom|xnat-register``,
``qmroct bench gateway``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import click
from qmroct.config import Settings, load_settings
from qmroct.errors import ConfigError, QmroctError


def _home(settings: Settings) -> Path:
    return settings.home / "gateway"


def _pseudonyms(settings: Settings):  # noqa: ANN202 - PseudonymStore
    from qmroct.gateway.pseudonyms import PseudonymStore

    return PseudonymStore(_home(settings) / "pseudonyms.sqlite3")


def _uploader(settings: Settings, project: str | None, compress: str | None, progress=None):  # noqa: ANN001, ANN202
    from qmroct.gateway.state import GatewayState
    from qmroct.gateway.upload import Uploader
    from qmroct.objectstore import store_from_settings

    project = project or settings.xnat_project
    if not project:
        raise click.UsageError("no project: pass --project or set QMROCT_XNAT_PROJECT")
    if settings.store == "minio" and not settings.store_endpoint:
        raise click.UsageError("QMROCT_STORE_ENDPOINT is not set for the minio store")
    store = store_from_settings(settings, "gateway")
    # Both stores serve a gzip upload with its Content-Encoding; gzip pays on a clinic uplink,
    # not on the loopback of the embedded store, so that one gets the bytes raw.
    default = "auto" if settings.store == "minio" else "none"
    return Uploader(
        store,
        _pseudonyms(settings),
        GatewayState(_home(settings) / "state.sqlite3"),
        project=project,
        bucket=settings.ingest_bucket,
        compress=compress or default,
        on_progress=progress,
    )


def _echo_outcome(o) -> None:  # noqa: ANN001
    line = f"{o.status:9} {o.source}"
    if o.key:
        line += f" -> {o.key}"
    if o.reason:
        line += f"  ({o.reason})"
    click.echo(line, err=o.status in ("flagged", "rejected", "failed"))


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add this module's commands to the ``qmroct`` command tree."""
    gateway = groups["gateway"]
    bench = groups["bench"]
    compress_opt = click.option(
        "--compress",
        type=click.Choice(["auto", "gzip", "none"]),
        default=None,
        help="gzip with Content-Encoding where it pays (default: auto for minio, none for local)",
    )
    project_opt = click.option(
        "--project", default=None, help="project label (QMROCT_XNAT_PROJECT)"
    )

    @cli.command("deid")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option(
        "--out", "out", required=True, type=click.Path(path_type=Path), help="file or folder"
    )
    def deid_cmd(file: Path, out: Path) -> None:
        """De-identify FILE (DICOM, .vol, .e2e, .fda/.fds) into OUT; the original is untouched."""
        from qmroct.gateway.deid import deidentify_file

        try:
            result = deidentify_file(file, out, _pseudonyms(load_settings()))
        except (QmroctError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        ident = result.identity
        click.echo(
            f"{result.format}: subject {ident.subject}, session {ident.session}, scan {ident.scan}"
        )
        for change in result.changes:
            click.echo(f"  {change}")

    @gateway.command("upload")
    @click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
    @project_opt
    @compress_opt
    @click.option("--workers", default=2, show_default=True, help="files uploaded in parallel")
    def upload_cmd(
        paths: tuple[Path, ...], project: str | None, compress: str | None, workers: int
    ) -> None:
        """De-identify, pseudonymise and upload files (or folders) to the ingest bucket."""
        from qmroct.gateway.upload import _expand

        settings = load_settings()
        files = list(_expand(paths))
        total = sum(p.stat().st_size for p in files)
        lock = threading.Lock()
        with click.progressbar(
            length=total, label="uploading", file=click.get_text_stream("stderr")
        ) as bar:

            def advance(n: int) -> None:
                with lock:  # files finish on several worker threads
                    bar.update(n)

            up = _uploader(settings, project, compress, progress=advance)
            summary = up.upload_paths(files, workers=workers)
        for o in summary.outcomes:
            _echo_outcome(o)
        click.echo(summary.render())
        if summary.count("failed"):
            raise SystemExit(1)

    @gateway.command("watch")
    @click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @project_opt
    @compress_opt
    @click.option("--interval", default=2.0, show_default=True, help="seconds between polls")
    @click.option(
        "--settle", default=5.0, show_default=True, help="seconds a file must be unchanged"
    )
    def watch_cmd(
        folder: Path, project: str | None, compress: str | None, interval: float, settle: float
    ) -> None:
        """Upload each complete file that appears in FOLDER, once (Ctrl-C stops)."""
        from qmroct.gateway.inbox import InboxWatcher

        settings = load_settings()
        up = _uploader(settings, project, compress)
        watcher = InboxWatcher(folder, up, up.state, settle_s=settle)
        click.echo(f"watching {folder} (settle {settle:g} s); Ctrl-C to stop", err=True)
        stop = threading.Event()
        try:
            watcher.run(stop, interval_s=interval, on_outcome=_echo_outcome)
        except KeyboardInterrupt:
            stop.set()

    @gateway.command("dicom")
    @click.option("--port", default=11112, show_default=True)
    @click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
    @click.option("--ae-title", default="QMROCT", show_default=True, help="our (called) AE title")
    @click.option(
        "--calling-ae",
        "calling_aes",
        multiple=True,
        envvar="QMROCT_GATEWAY_CALLING_AES",
        help="a device AE title to accept (repeat; or space-separated in the variable)",
    )
    @click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None)
    @click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
    @click.option(
        "--tls-ca",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="CA that signs device certificates (then every device must present one)",
    )
    @project_opt
    @compress_opt
    def dicom_cmd(
        port: int,
        host: str,
        ae_title: str,
        calling_aes: tuple[str, ...],
        tls_cert: str | None,
        tls_key: str | None,
        tls_ca: str | None,
        project: str | None,
        compress: str | None,
    ) -> None:
        """Run a DICOM C-STORE SCP for ophthalmic tomography and photography.

        Closed by default: loopback only, the called AE title must be ours, only the calling
        AE titles given are accepted, TLS with --tls-cert and --tls-key.
        """
        from qmroct.gateway.dicom_scp import StoreSCP, tls_context

        if bool(tls_cert) != bool(tls_key):
            raise click.UsageError("--tls-cert and --tls-key go together")
        settings = load_settings()
        titles = [t for value in calling_aes for t in value.split()]
        try:
            scp = StoreSCP(
                _uploader(settings, project, compress),
                _home(settings) / "spool",
                ae_title=ae_title,
                calling_aes=titles,
            )
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
        ctx = tls_context(tls_cert, tls_key, tls_ca) if tls_cert and tls_key else None
        click.echo(
            f"C-STORE SCP {ae_title} on {host}:{port}{' (TLS)' if ctx else ''} for "
            f"{', '.join(titles)}; Ctrl-C to stop",
            err=True,
        )
        try:
            scp.start(host, port, block=True, ssl_context=ctx)
        except KeyboardInterrupt:
            scp.stop()

    @bench.command("gateway")
    @click.option(
        "--store", type=click.Choice(["local", "moto"]), default="local", show_default=True
    )
    @click.option("--mb", "total_mb", default=256, show_default=True, help="megabytes to upload")
    @compress_opt
    @click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
    def bench_gateway(store: str, total_mb: int, compress: str | None, as_json: bool) -> None:
        """Gateway MB/s on loopback (de-identify, compress, upload) vs the paper's 4.33 MB/s."""
        from qmroct.gateway.bench import run_gateway_bench

        try:
            result = run_gateway_bench(store=store, total_mb=total_mb, compress=compress)
        except (RuntimeError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(json.dumps(result.model_dump(), indent=2) if as_json else result.render())

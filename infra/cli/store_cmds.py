"""``qmroct store serve`` (the local folder store over loopback) and ``qmroct store bridge``
(the MinIO-webhook to OpenWhisk-trigger bridge)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import click
from qmroct.config import load_settings


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    @cli.group()
    def store() -> None:
        """The object store: serve the local folder store, bridge MinIO events to triggers."""

    @store.command("serve")
    @click.option(
        "--root", type=click.Path(path_type=Path), default=None, help="default: HOME/store"
    )
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=9000, show_default=True)
    def serve(root: Path | None, host: str, port: int) -> None:
        """Serve the local folder store (presigned URLs and the signed API).

        Credentials: QMROCT_STORE_ACCESS_KEY and QMROCT_STORE_SECRET_KEY.
        """
        from qmroct.localstore.server import LocalStoreServer
        from qmroct.localstore.store import LocalFolderStore

        s = load_settings()
        if not s.store_secret_key:
            raise click.UsageError("set QMROCT_STORE_SECRET_KEY (it signs every URL and request)")
        logging.basicConfig(level=logging.INFO)
        folder = LocalFolderStore(root or s.home / "store")
        server = LocalStoreServer(
            folder, host, port, s.store_secret_key, access_key=s.store_access_key or "qmroct"
        )
        click.echo(f"local store {folder.root} on {server.endpoint}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            folder.close()

    @store.command("bridge")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8088, show_default=True)
    @click.option("--token", envvar="QMROCT_BRIDGE_TOKEN", required=True, help="bearer token")
    def bridge(host: str, port: int, token: str) -> None:
        """Accept MinIO webhook POSTs and fire image-stored / measure-published.

        OpenWhisk: QMROCT_OW_API_HOST, QMROCT_OW_AUTH (uuid:key), QMROCT_OW_NAMESPACE.
        """
        from qmroct.triggers.bridge import BridgeConfig, BridgeServer
        from qmroct.triggers.filters import Route
        from qmroct.triggers.fire import openwhisk_fire

        s = load_settings()
        if not s.ow_api_host or not s.ow_auth:
            raise click.UsageError("set QMROCT_OW_API_HOST and QMROCT_OW_AUTH")
        logging.basicConfig(level=logging.INFO)
        routes = [
            Route(bucket=s.ingest_bucket, trigger="image-stored"),
            Route(bucket=s.measures_bucket, trigger="measure-published", suffixes=(".json",)),
        ]
        fire = openwhisk_fire(s.ow_api_host, s.ow_auth, s.ow_namespace)
        server = BridgeServer(BridgeConfig(token=token, routes=routes), fire, host, port)
        click.echo(f"bridge on {server.endpoint}")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()

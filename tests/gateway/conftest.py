"""Gateway test fixtures: real S3 over HTTP (moto's server) and the local folder store server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from qmroct.gateway.pseudonyms import PseudonymStore
from qmroct.gateway.state import GatewayState


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def minio_store(moto_endpoint: str):  # noqa: ANN201 - MinioStore
    from qmroct.objectstore import open_store

    store = open_store("minio", moto_endpoint, "testing", "testing")
    bucket = f"ingest-{secrets.token_hex(4)}"
    store.ensure_bucket(bucket)
    store.test_bucket = bucket  # type: ignore[attr-defined]
    return store


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[object]:
    from qmroct.localstore.server import LocalStoreServer
    from qmroct.localstore.store import LocalFolderStore
    from qmroct.objectstore import open_store

    secret = secrets.token_hex(16)
    with LocalStoreServer(LocalFolderStore(tmp_path / "store"), secret=secret) as server:
        store = open_store("local", server.endpoint, server.access_key, secret)
        store.ensure_bucket("oct-ingest")
        store.test_bucket = "oct-ingest"  # type: ignore[attr-defined]
        yield store


@pytest.fixture
def gateway_home(tmp_path: Path) -> tuple[PseudonymStore, GatewayState]:
    home = tmp_path / "gateway"
    return PseudonymStore(home / "pseudonyms.sqlite3"), GatewayState(home / "state.sqlite3")

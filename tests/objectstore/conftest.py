"""Object-store fixtures: a local folder store served over loopback, a webhook receiver that
records what it gets and answers scripted statuses, and a moto S3 server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from objectstore_support import Receiver
from qmroct.localstore.server import LocalStoreServer
from qmroct.localstore.store import LocalFolderStore
from qmroct.objectstore.local import LocalStoreClient

SECRET = "test-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def local_store(tmp_path) -> Iterator[LocalFolderStore]:
    store = LocalFolderStore(tmp_path / "store", retry_interval=0.05, min_part_size=1024)
    yield store
    store.close()


@pytest.fixture
def served(local_store) -> Iterator[tuple[LocalStoreServer, LocalStoreClient]]:
    with LocalStoreServer(local_store, secret=SECRET) as srv:
        client = LocalStoreClient(srv.endpoint, srv.access_key, SECRET)
        yield srv, client
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()

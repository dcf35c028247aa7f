"""XNAT fixtures: a real XNAT when QMROCT_XNAT_URL and a token are set, else the stand-in."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from qmroct.storage.buckets import RESULTS_BUCKET
from xnat_standin.server import XnatStandin


@dataclass
class XnatTarget:
    url: str
    alias: str
    secret: str
    project: str
    standin: XnatStandin | None  # None against a real XNAT

    def label(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def xnat_target() -> Iterator[XnatTarget]:
    url = os.environ.get("QMROCT_XNAT_URL", "")
    if url:
        alias = os.environ.get("QMROCT_XNAT_ALIAS", "")
        secret = os.environ.get("QMROCT_XNAT_SECRET", "")
        project = os.environ.get("QMROCT_XNAT_PROJECT", "")
        if not (alias and secret and project):
            pytest.skip("QMROCT_XNAT_URL is set but QMROCT_XNAT_ALIAS/SECRET/PROJECT are not")
        yield XnatTarget(url, alias, secret, project, None)
        return
    with XnatStandin(["QMROCT"]) as standin:
        yield XnatTarget(standin.url, standin.alias, standin.secret, "QMROCT", standin)


@pytest.fixture
def standin(xnat_target: XnatTarget) -> XnatStandin:
    if xnat_target.standin is None:
        pytest.skip("needs the stand-in (switching a real XNAT off is not a test's business)")
    return xnat_target.standin


@pytest.fixture
def store(tmp_path: Path) -> Iterator:
    """The folder store behind its presigning server, with the ingest and results buckets."""
    from qmroct.localstore.server import LocalStoreServer
    from qmroct.localstore.store import LocalFolderStore
    from qmroct.objectstore import open_store

    secret = secrets.token_hex(16)
    with LocalStoreServer(LocalFolderStore(tmp_path / "store"), secret=secret) as server:
        client = open_store("local", server.endpoint, server.access_key, secret)
        for b in ("oct-ingest", RESULTS_BUCKET):
            client.ensure_bucket(b)
        yield client

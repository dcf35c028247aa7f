"""Ledger fixtures: every ledger test runs on SQLite and, when QMROCT_TEST_PG_DSN is set, on a
real PostgreSQL server (start one with infra/postgres/start-test-server.sh)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest


def pg_dsn() -> str:
    dsn = os.environ.get("QMROCT_TEST_PG_DSN", "")
    if not dsn:
        pytest.skip(
            'QMROCT_TEST_PG_DSN is not set: run `eval "$(infra/postgres/start-test-server.sh)"`'
        )
    return dsn


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    dsn = pg_dsn()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    yield f"{dsn}{sep}options={quote(f'-c search_path={schema}')}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return request.getfixturevalue("pg_url")


class Clock:
    """A settable clock, so leases and backoff are tested without sleeping."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> Clock:
    return Clock()

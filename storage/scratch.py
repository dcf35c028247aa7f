"""A throwaway ledger database on a PostgreSQL server, for benchmarks that must start empty."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from qmroct.storage.db import Database, dialect_of


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """Yield a URL for a fresh database on the server of ``url`` and drop it afterwards.

    An empty ``url`` (or a SQLite one) is yielded as it is: the caller's default applies.
    """
    if not url or dialect_of(url) != "postgres":
        yield url
        return
    name = f"qmroct_bench_{os.getpid()}_{time.time_ns() // 1_000_000}"
    admin = Database(url)  # autocommit: CREATE DATABASE cannot run in a transaction
    try:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield _with_db(url, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()

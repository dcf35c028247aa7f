from __future__ import annotations

import pytest
from qmroct.errors import ConfigError
from qmroct.storage.db import DatabaseError, connect, dialect_of, migrations, redact


def test_dialect_by_url() -> None:
    assert dialect_of("sqlite:///x.db") == "sqlite"
    assert dialect_of("postgresql://u@h/db") == "postgres"
    with pytest.raises(ConfigError, match="expected sqlite"):
        dialect_of("mysql://u:pw@h/db")


def test_redact_hides_password() -> None:
    assert redact("postgresql://qm:s3cret@db:5432/x") == "postgresql://qm:***@db:5432/x"


def test_dialect_variant_replaces_common_file() -> None:
    for dialect in ("sqlite", "postgres"):
        migs = migrations(dialect)
        assert [m.version for m in migs] == sorted({m.version for m in migs})
        results = next(m for m in migs if m.name == "results")
        assert ("AUTOINCREMENT" in results.sql) == (dialect == "sqlite")


def test_migrate_is_idempotent_and_versioned(ledger_url: str) -> None:
    db = connect(ledger_url)
    latest = max(m.version for m in migrations(db.dialect))
    assert db.schema_version() == latest
    assert db.migrate() == []
    again = connect(ledger_url)
    assert again.schema_version() == latest
    db.close()
    again.close()


def test_transaction_rolls_back_on_error(ledger_url: str) -> None:
    db = connect(ledger_url)
    with pytest.raises(RuntimeError), db.transaction():
        db.execute(
            "INSERT INTO derived (name, scan_hash, bucket, object_key, created_at)"
            " VALUES ('seg', 'h', 'b', 'k', 0)"
        )
        raise RuntimeError("boom")
    assert db.query("SELECT * FROM derived") == []
    db.close()


def test_query_error_names_the_statement(ledger_url: str) -> None:
    db = connect(ledger_url)
    with pytest.raises(DatabaseError, match="no_such_table"):
        db.query("SELECT * FROM no_such_table")
    db.close()

"""The search index and the search SQL on SQLite and PostgreSQL: incremental refresh, every
filter kind, scope by role, paging, and archived results that stop counting."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from qmroct.storage.db import Database, connect
from qmroct.web.index import SearchIndex
from qmroct.web.search import SearchQuery, ValueRange, search


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        d = connect(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
        yield d
        d.close()
        return
    import psycopg

    dsn = os.environ.get("QMROCT_TEST_PG_DSN", "")
    if not dsn:
        pytest.skip(
            'QMROCT_TEST_PG_DSN is not set: run `eval "$(infra/postgres/start-test-server.sh)"`'
        )
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    d = connect(f"{dsn}{sep}options={quote(f'-c search_path={schema}')}")
    yield d
    d.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _hash(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def add_scan(db: Database, i: int, project: str, *, t: float) -> str:
    h = _hash(i)
    db.execute(
        "INSERT INTO scans (scan_hash, bucket, object_key, size, format, pattern, project_id,"
        " subject_id, session_id, scan_id, stored_at) VALUES (:h, 'oct-ingest', :k, 1, 'vol',"
        " :pat, :p, :s, :ses, :sc, :t)",
        {"h": h, "k": f"{project}/s{i}/e{i}/c{i}.vol", "pat": "volume" if i % 2 else "line",
         "p": project, "s": f"sub-{i}", "ses": f"ses-{i}", "sc": f"scn-{i}", "t": t},
    )  # fmt: skip
    return h


def add_result(
    db: Database,
    h: str,
    measure: str,
    version: str,
    values: dict,
    verdicts: list,
    *,
    current: int = 1,
) -> None:
    db.execute(
        "INSERT INTO results (job_key, scan_hash, measure, version, status, result_values,"
        " verdicts, started_at, ended_at, lease_token, is_current, recorded_at)"
        " VALUES (:j, :h, :m, :v, 'ok', :vals, :verd, 0, 0, 't', :c, 0)",
        {"j": f"{h}:{measure}:{version}", "h": h, "m": measure, "v": version,
         "vals": json.dumps(values), "verd": json.dumps(verdicts), "c": current},
    )  # fmt: skip


def verdict(letter: str, v: str) -> dict:
    return {"criterion": letter, "verdict": v, "reason": f"{letter} {v}"}


def test_index_and_every_filter(db: Database) -> None:
    idx = SearchIndex(db)
    hashes = []
    for i in range(30):
        h = add_scan(db, i, "A" if i < 20 else "B", t=1000.0 + i)
        hashes.append(h)
        snr = float(i)
        add_result(db, h, "signal", "1.0.0", {"peak_snr_db": snr, "device": "Dev X", "kind": "text"},
                   [verdict("S", "fail" if snr < 5 else ("warn" if snr < 10 else "pass"))])  # fmt: skip
        add_result(db, h, "sharpness", "1.0.0" if i % 3 else "1.1.0", {"width_um": 10.0 + i % 4},
                   [verdict("O", "pass")])  # fmt: skip
    stats = idx.refresh()
    assert stats.new_scans == 30 and stats.reindexed == 30
    assert idx.refresh().reindexed == 0  # nothing new: nothing done again

    def found(scope=None, **kw) -> set[str]:
        page = search(db, SearchQuery(per_page=500, **kw), scope)
        assert page.total == len(page.rows)
        return {r["scan_hash"] for r in page.rows}

    assert len(found()) == 30
    assert found(letters={"S": "fail"}) == set(hashes[:5])
    assert found(letters={"S": "warn"}) == set(hashes[5:10])
    assert found(overall="fail") == set(hashes[:5])
    assert found(values=[ValueRange(measure="signal", name="peak_snr_db", lo=3, hi=7)]) == set(
        hashes[3:8]
    )
    assert found(values=[ValueRange(measure="signal", name="peak_snr_db", lo=28)]) == set(
        hashes[28:]
    )
    assert found(versions={"sharpness": "1.1.0"}) == {hashes[i] for i in range(0, 30, 3)}
    assert found(project="B") == set(hashes[20:])
    assert found(pattern="volume") == {hashes[i] for i in range(1, 30, 2)}
    assert found(device="Dev X") == set(hashes)
    assert found(subject="sub-7") == {hashes[7]}
    assert found(q="ses-8") == {hashes[8]}
    assert found(q=hashes[9][:12]) == {hashes[9]}
    # Role scope: a researcher of A sees A only; an empty scope sees nothing.
    assert found(scope=["A"]) == set(hashes[:20])
    assert found(scope=[]) == set()
    assert found(scope=["B"], letters={"S": "fail"}) == set()
    # Paging: newest first, no scan twice, none lost.
    seen = []
    for p in (1, 2, 3, 4):
        page = search(db, SearchQuery(per_page=8, page=p), None)
        seen += [r["scan_hash"] for r in page.rows]
        assert page.pages == 4 and page.total == 30
    assert seen == list(reversed(hashes))

    # A new version replaces the value: the old one is archived and stops matching.
    h = hashes[0]
    db.execute(
        "UPDATE results SET is_current = 0 WHERE scan_hash = :h AND measure = 'signal'", {"h": h}
    )
    add_result(db, h, "signal", "2.0.0", {"peak_snr_db": 50.0}, [verdict("S", "pass")])
    assert idx.refresh().reindexed == 1
    assert h not in found(letters={"S": "fail"})
    assert h in found(values=[ValueRange(measure="signal", name="peak_snr_db", lo=49)])
    assert h in found(versions={"signal": "2.0.0"})
    assert h not in found(versions={"signal": "1.0.0"})

    # Rebuilding from nothing gives the same index.
    def rows() -> list[dict]:
        return [
            {k: v for k, v in r.items() if k != "sid"}
            for r in db.query("SELECT * FROM web_scans ORDER BY scan_hash")
        ]

    before = rows()
    idx.rebuild()
    assert rows() == before


def test_query_round_trips_through_its_url() -> None:
    from urllib.parse import parse_qsl

    from werkzeug.datastructures import MultiDict

    q = SearchQuery(
        project="P", laterality="OS", letters={"S": "fail", "B": "warn"},
        values=[ValueRange(measure="signal", name="peak_snr_db", lo=0.1 + 0.2, hi=None)],
        versions={"signal": "1.2.0"}, page=3, date_from="2024-01-02",
    )  # fmt: skip
    back = SearchQuery.from_args(MultiDict(parse_qsl(q.url_args())))
    assert back == q


@pytest.mark.parametrize(
    "args, message",
    [
        ({"v_S": "bad"}, "v_S"),
        ({"value": "x"}, "measure.value:min:max"),
        ({"value": "a.b:1:nan"}, "finite"),
        ({"laterality": "XX"}, "laterality"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"version": "signal"}, "measure:version"),
    ],
)
def test_bad_parameters_are_named(args: dict, message: str) -> None:
    from qmroct.web.search import SearchError

    with pytest.raises(SearchError, match=message):
        SearchQuery.from_args(args)

"""The activation-record store: the index answers lists, filters and counts; retention prunes."""

from __future__ import annotations

from pathlib import Path

from qmroct.runtime.records import (
    ActivationRecord,
    ActivationResponse,
    ActivationStore,
    KeyValue,
    filter_name,
)


def _record(i: int, name: str, path: str | None) -> ActivationRecord:
    annotations = [KeyValue(key="path", value=path)] if path else []
    return ActivationRecord(
        activationId=f"{i:032x}",
        name=name,
        namespace="guest",
        version="0.0.1",
        start=1000 + i,
        end=1001 + i,
        duration=1,
        response=ActivationResponse.of(i % 2, {"i": i}),
        annotations=annotations,
    )


def test_filter_name_is_pkg_slash_name_for_packaged_actions() -> None:
    assert filter_name(_record(1, "a", "guest/pkg/a")) == "pkg/a"
    assert filter_name(_record(1, "a", "guest/a")) == "a"
    assert filter_name(_record(1, "tick", None)) == "tick"


def test_list_count_filter_and_rebuild(tmp_path: Path) -> None:
    store = ActivationStore(tmp_path)
    for i in range(50):
        store.put(_record(i, f"m{i % 5}", f"guest/qm/m{i % 5}"))
    newest = store.list(limit=3)
    assert [r.start for r in newest] == [1049, 1048, 1047]
    page = store.list(name="qm/m2", limit=4, skip=1)
    assert [r.start for r in page] == [1042, 1037, 1032, 1027]
    assert store.list(name="m2") == []  # a packaged action is found by pkg/name only
    assert store.count(name="qm/m2") == 10 and store.count(name="qm/m2", skip=4) == 6
    assert [r.start for r in store.list(since=1045, upto=1046)] == [1046, 1045]
    assert store.get(f"{7:032x}").start == 1007 and store.get("f" * 32) is None
    store.close()
    # A folder of records without an index (an older home) is indexed on open.
    (tmp_path / "activations" / "index.sqlite3").unlink()
    for extra in ("index.sqlite3-wal", "index.sqlite3-shm"):
        (tmp_path / "activations" / extra).unlink(missing_ok=True)
    again = ActivationStore(tmp_path)
    assert again.count() == 50 and again.list(limit=1)[0].start == 1049
    again.close()


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    store = ActivationStore(tmp_path, retention=10)
    for i in range(25):
        store.put(_record(i, "a", None))
    assert store.prune() == 15
    assert store.count() == 10 and store.list(limit=1)[0].start == 1024
    assert len(list((tmp_path / "activations").glob("*.json"))) == 10
    store.close()

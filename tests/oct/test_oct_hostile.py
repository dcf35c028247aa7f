"""The hostile corpus: every file gives a scan or a typed error naming it, within a time and
memory budget, each read in its own process (see :mod:`qmroct.oct.hostile` for the budget)."""

from __future__ import annotations

from pathlib import Path

from qmroct.oct.hostile import DEFAULT_LIMIT, MIB, build_corpus, rss_budget, run_corpus

TIMEOUT_S = 20.0  # wall time per file on a loaded 2-core CI machine; a hang is killed past it


def test_hostile_corpus_within_budget(tmp_path: Path) -> None:
    cases = build_corpus(DEFAULT_LIMIT)
    names = {c.name for c in cases}
    assert {"gzip-bomb.vol", "deflate-bomb.dcm", "frames-0.dcm", "nan-one-bscan.vol"} <= names
    idle, results = run_corpus(cases, tmp_path, limit=DEFAULT_LIMIT, timeout_s=TIMEOUT_S)
    assert idle > 0 and len(results) == len(cases)
    budget = rss_budget(DEFAULT_LIMIT) / MIB
    problems = {r.name: p for r in results if (p := r.problem(budget, TIMEOUT_S))}
    assert problems == {}
    by_name = {r.name: r for r in results}
    # The bombs are refused for their size, not for something else, and the caps hold.
    for bomb in ("gzip-bomb.vol", "deflate-bomb.dcm"):
        assert by_name[bomb].outcome == "ScanTooLarge", by_name[bomb]
        assert by_name[bomb].over_idle_mib < DEFAULT_LIMIT / MIB + 32  # about one limit, not two
    assert by_name["gzip-many-members.vol"].outcome == "scan"
    assert by_name["frames-0.dcm"].outcome == "CorruptScan"
    assert "all NaN" in by_name["nan-one-bscan.vol"].message

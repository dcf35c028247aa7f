"""`qmroct bench paper`'s CPU breakdown, on one small scan: every part accounted for."""

from __future__ import annotations

from pathlib import Path

from qmroct.embedded.bench import _write_phantoms, run_paper_bench


def test_paper_bench_breaks_its_cpu_down_by_action_and_stack_part(tmp_path: Path) -> None:
    files = _write_phantoms(tmp_path / "inbox", 1, pattern="volume", size="small")
    figures = run_paper_bench(cap=2, home=tmp_path / "home", files=files)
    assert figures.failed == 0
    b = figures.breakdown
    assert b is not None
    actions = {a.action: a for a in b.actions}
    measures = {n for n in actions if n.startswith("measure-")}
    assert len(measures) == figures.measures >= 9
    for name in measures | {"derive-segmentation"}:
        a = actions[name]
        # One scan: one activation each, the first of its action, so one cold start.
        assert a.activations == 1 and a.cold_starts == 1 and a.containers == 1, a
        assert a.run_cpu_s > 0 and a.init_cpu_s > 0, a
        assert abs(a.cpu_s - a.init_cpu_s - a.run_cpu_s) < 0.02, a
    assert actions["record-result"].activations == figures.activations + 1  # and the derive's
    assert actions["on-image-stored"].activations == 1
    assert b.stack["gateway upload"] > 0 and b.stack["object store requests"] > 0
    # The parts add up to the total, and the total is the figure printed as the pipeline's CPU.
    parts = b.actions_cpu_s + b.stack_cpu_s + b.ended_s
    assert abs(parts - b.total_cpu_s) < 0.05 and figures.cpu_s == b.total_cpu_s
    split = b.runs_cpu_s + b.startups_cpu_s + b.orchestration_cpu_s + b.stack_cpu_s + b.ended_s
    assert abs(split - b.total_cpu_s) < 0.05 and b.runs_cpu_s > 0 and b.startups_cpu_s > 0
    text = "\n".join(figures.lines())
    assert "measure-signal" in text and "object store requests" in text
    assert not (tmp_path / "home").exists() or any((tmp_path / "home").iterdir())

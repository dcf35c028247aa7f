"""The validation engine itself: the AUC interval, the pool against one process, progress."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from qmroct.measures.validation import auc, auc_ci, auc_ci_exact, validate_phantoms
from scipy.stats import norm


def test_exact_interval_at_perfect_separation_does_not_collapse():
    # 16 clean against 16 defect eyes, all ranked right: the bootstrap says [1, 1].
    c, d = np.arange(16.0), np.arange(16.0) + 100
    assert auc(c, d) == 1.0
    assert auc_ci(c, d) == (1.0, 1.0)
    lo, hi = auc_ci_exact(1.0, 16, 16)
    # (alpha/2)^(1/N): a defect fraction 1 - A ranked below every clean eye gives AUC A and
    # all N above with probability A^N.
    assert lo == pytest.approx(0.025 ** (1 / 16), rel=1e-9)
    assert 0.79 < lo < 0.80 and hi == 1.0
    # More eyes, a tighter bound; the smaller group decides.
    assert auc_ci_exact(1.0, 40, 40)[0] > 0.9
    assert auc_ci_exact(1.0, 16, 100) == auc_ci_exact(1.0, 16, 16)


def test_exact_interval_matches_clopper_pearson_on_whole_counts():
    # 8 of 16: the textbook Clopper-Pearson interval is [0.2465, 0.7535].
    lo, hi = auc_ci_exact(0.5, 16, 20)
    assert lo == pytest.approx(0.2465, abs=1e-4) and hi == pytest.approx(0.7535, abs=1e-4)
    assert auc_ci_exact(0.0, 10, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert all(math.isnan(v) for v in auc_ci_exact(float("nan"), 10, 10))
    assert all(math.isnan(v) for v in auc_ci_exact(1.0, 0, 10))


@pytest.mark.parametrize("shift", [0.5, 1.5, 3.0])
def test_exact_interval_covers_the_true_auc(shift):
    # Binormal eyes, true AUC Phi(shift / sqrt 2); 12 + 12 eyes as in a small sweep.
    true = float(norm.cdf(shift / math.sqrt(2)))
    rng = np.random.default_rng(int(shift * 10))
    hits = 0
    for _ in range(400):
        c, d = rng.normal(0, 1, 12), rng.normal(shift, 1, 12)
        lo, hi = auc_ci_exact(auc(c, d), 12, 12)
        hits += lo <= true <= hi
    assert hits / 400 >= 0.95


def test_pool_and_one_process_give_identical_json():
    kw = dict(
        seeds=2,
        severities=(0.0,),
        cross_talk=False,
        measures=["signal", "blink_motion"],
        retest_eyes=1,
        retest_patterns=("line",),
    )
    seen: list[tuple[int, int]] = []

    def dump(res):
        result, repeats = res
        return json.dumps(
            {
                "measures": {k: v.model_dump(mode="json") for k, v in result.items()},
                "retest": {k: [r.model_dump(mode="json") for r in v] for k, v in repeats.items()},
            },
            sort_keys=True,
        )

    one = dump(validate_phantoms(workers=1, **kw))
    pool = dump(validate_phantoms(workers=2, progress=lambda d, t: seen.append((d, t)), **kw))
    assert one == pool
    doc = json.loads(one)
    assert set(doc["measures"]) == {"signal", "blink_motion"}
    assert doc["retest"]["line"], doc["retest"]
    # 5 keys x 2 eyes, plus the line eye and its repeat; progress counts every one to the end.
    assert seen[-1] == (12, 12) and len(seen) == 12


def test_progress_bar_on_a_terminal_and_lines_in_a_log():
    from qmroct.cli.validate_cmds import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, tty = io.StringIO(), Tty()
    for stream in (log, tty):
        p = Progress("phantoms", 0.0, stream)
        for i in range(1, 201):
            p(i, 200)
    lines = log.getvalue().splitlines()
    assert 40 <= len(lines) <= 51 and "\r" not in log.getvalue()
    assert lines[-1].startswith("phantoms 200/200")
    out = tty.getvalue()
    assert out.count("\r") == 200 and out.endswith("\n") and out.count("\n") == 1
    assert "[" + "#" * 30 + "]" in out


def test_values_at_their_floor_are_judged_where_the_defect_shows():
    from qmroct.measures.validation import RETEST_LIMIT, RetestRow, _notice_probe, retest

    floor = RetestRow(
        letter="O",
        graded_by="blink_motion.lateral_motion_um",
        max_relative_difference=0.2,
        median_relative_difference=0.1,
        eyes=2,
        noise_floor=True,
    )
    assert _notice_probe(floor).defect == "lateral_motion"
    assert _notice_probe(floor.model_copy(update={"noise_floor": False})) is None
    assert _notice_probe(floor.model_copy(update={"max_relative_difference": 0.05})) is None
    assert _notice_probe(floor.model_copy(update={"graded_by": "segmentation.x"})) is None

    (rows,) = retest(patterns=("volume",), eyes=2).values()
    for r in rows:
        if not r.noise_floor:
            assert r.within_limit == (r.max_relative_difference < RETEST_LIMIT), r
            assert r.at_notice is None
        elif r.max_relative_difference < RETEST_LIMIT:
            assert r.within_limit is True
        elif r.at_notice is not None:
            assert r.within_limit == (r.at_notice.max_relative_difference < RETEST_LIMIT)
            assert r.at_notice.eyes == 2 and str(r.at_notice.severity) in r.note
        assert r.max_abs_difference >= 0
    lateral = next(r for r in rows if r.graded_by == "blink_motion.lateral_motion_um")
    # Clean eyes: a few µm of registration noise, far under the 60 µm warning.
    assert lateral.noise_floor and lateral.max_abs_difference < 30
    if lateral.at_notice is not None:
        assert lateral.at_notice.defect == "lateral_motion"
        assert lateral.at_notice.severity == 0.25

"""`qmroct bench replay` on the demo data: both sessions in headless Chromium, under a plain
and a slowed network profile, with the server measured apart and the bytes counted."""

from __future__ import annotations

import json
import shutil

from qmroct.replay.bench import run_replay
from qmroct.replay.sessions import ROLES


def test_replay_measures_every_action_of_both_sessions(demo_data, tmp_path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_data.home, home)  # the replay adds its users; the demo stays as it is
    out = tmp_path / "replay"
    fig = run_replay(
        users=[1],
        repeats=1,
        profiles=["lan", "slow:40:0:100"],
        planned=10,
        home=home,
        out_dir=out,
    )
    assert fig.failures == []
    got = {(s.profile, s.role, s.action): s for s in fig.stats}
    for profile in ("lan", "slow"):
        for role, actions in ROLES.items():
            for action in actions:
                s = got[(profile, role, action)]
                assert s.runs == 1 and s.failed == 0
                assert 0 < s.p50_s <= s.p95_s
                assert s.bytes_down is not None and s.bytes_down > 0
                assert s.server_memory_peak_mb > 10  # the web server's own process
    # A login is several requests, each at least one 40 ms delay each way on the slow profile.
    assert got[("slow", "researcher", "LOGIN")].p50_s >= 0.16
    # The download moves the selection's scans; a search moves a page of rows.
    dl = got[("lan", "researcher", "DOWNLOAD & LOGOUT")]
    assert dl.bytes_down > 10 * got[("lan", "researcher", "FILTER & SEARCH")].bytes_down
    # One user only: the capacity factor is a lower bound.
    assert fig.capacity.lower_bound and fig.capacity.saturation_users is None
    assert fig.capacity.factor == 0.1
    saved = json.loads((out / "replay.json").read_text())
    assert saved["capacity"]["planned_users"] == 10
    assert "data:image/png;base64," in (out / "report.html").read_text()

"""``qmroct bench web``: p50 and p95 per user action at 100k catalogued scans.

The catalogue rows are synthetic (scans and current results copied from a few real demo scans,
their numbers jittered, their verdicts reshuffled), indexed by the real indexer; the images are
those demo scans' own files, so every synthetic scan opens in the viewer. Each action is timed
over HTTP against the real server, as a browser would call it.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

TARGETS_MS = {"search": 200.0, "B-scan change": 50.0, "first viewer paint": 1000.0}
PASSWORD = "benchmark password"


class ActionFigure(BaseModel):
    action: str
    n: int
    p50_ms: float
    p95_ms: float
    target_ms: float | None = None

    @property
    def met(self) -> bool | None:
        return None if self.target_ms is None else self.p95_ms < self.target_ms


class WebBenchFigures(BaseModel):
    scans: int
    database: str
    build_s: float
    index_s: float
    actions: list[ActionFigure]

    def lines(self) -> list[str]:
        out = [
            f"web view at {self.scans} catalogued scans ({self.database}); catalogue built in "
            f"{self.build_s:.1f} s, indexed in {self.index_s:.1f} s",
            f"{'action':34s} {'n':>5s} {'p50 ms':>9s} {'p95 ms':>9s}  target (p95)",
        ]
        for a in self.actions:
            target = (
                ""
                if a.target_ms is None
                else f"< {a.target_ms:.0f} ms " + ("met" if a.met else "MISSED")
            )
            out.append(f"{a.action:34s} {a.n:5d} {a.p50_ms:9.1f} {a.p95_ms:9.1f}  {target}")
        return out


def _figure(action: str, times_s: list[float], target_key: str | None = None) -> ActionFigure:
    ms = np.array(times_s) * 1000.0
    return ActionFigure(
        action=action,
        n=len(ms),
        p50_ms=round(float(np.percentile(ms, 50)), 1),
        p95_ms=round(float(np.percentile(ms, 95)), 1),
        target_ms=TARGETS_MS.get(target_key or action),
    )


def synthesize(db: Any, n: int, *, seed: int = 11, progress: Callable[[str], None]) -> None:
    """Add ``n`` synthetic scans with current results, modelled on the real ones in ``db``."""
    real_scans = db.query("SELECT * FROM scans")
    real_results = db.query("SELECT * FROM results WHERE is_current = 1")
    if not real_scans or not real_results:
        raise RuntimeError("the benchmark needs a demo ledger with scans and results")
    by_scan: dict[str, list[dict[str, Any]]] = {}
    for r in real_results:
        by_scan.setdefault(r["scan_hash"], []).append(r)
    templates = [(s, by_scan.get(s["scan_hash"], [])) for s in real_scans]
    rng = random.Random(seed)
    projects = [f"P{k:02d}" for k in range(20)]
    t0 = time.time() - 3 * 365 * 86400
    batch_scans: list[dict[str, Any]] = []
    batch_results: list[dict[str, Any]] = []

    def flush() -> None:
        with db.transaction():
            db.execute_many(
                "INSERT INTO scans (scan_hash, bucket, object_key, version_id, size, format,"
                " pattern, project_id, subject_id, session_id, scan_id, stored_at)"
                " VALUES (:h, :b, :k, :v, :size, :fmt, :pat, :p, :s, :ses, :sc, :t)",
                batch_scans,
            )
            db.execute_many(
                "INSERT INTO results (job_key, scan_hash, measure, version, status,"
                " result_values, verdicts, notes, error, picture_stored, dicom_stored,"
                " started_at, ended_at, cpu_s, max_rss_mb, params, code_digest, lease_token,"
                " is_current, recorded_at) VALUES (:jk, :h, :m, :ver, :st, :vals, :verd, '[]',"
                " NULL, 0, 0, :t, :t, 0, 0, '{}', '', 'bench', 1, :t)",
                batch_results,
            )
        batch_scans.clear()
        batch_results.clear()

    for i in range(n):
        scan, results = templates[i % len(templates)]
        h = hashlib.sha256(f"bench-{seed}-{i}".encode()).hexdigest()
        subject = f"sub-{i // 4:06d}"
        t = t0 + i * (3 * 365 * 86400 / n)
        batch_scans.append(
            {
                "h": h,
                "b": scan["bucket"],
                "k": scan["object_key"],
                "v": scan["version_id"],
                "size": scan["size"],
                "fmt": scan["format"],
                "pat": scan["pattern"],
                "p": projects[(i // 4) % len(projects)],
                "s": subject,
                "ses": f"ses-{i // 2:06d}",
                "sc": f"scn-{i:07d}",
                "t": t,
            }
        )
        for r in results:
            vals = json.loads(r["result_values"])
            jitter = {
                k: (v * rng.uniform(0.6, 1.4) if isinstance(v, float) else v)
                for k, v in vals.items()
            }
            other = rng.choice(templates)[1]
            verd = next((o["verdicts"] for o in other if o["measure"] == r["measure"]), "[]")
            batch_results.append(
                {
                    "jk": f"bench:{h}:{r['measure']}",
                    "h": h,
                    "m": r["measure"],
                    "ver": r["version"],
                    "st": r["status"],
                    "vals": json.dumps(jitter),
                    "verd": verd,
                    "t": t,
                }
            )
        if len(batch_scans) >= 5000:
            flush()
            progress(f"\rcatalogue: {i + 1} / {n} scans")
    flush()
    progress(f"\rcatalogue: {n} / {n} scans\n")


def _synthetic_headers(db: Any, real: set[str]) -> None:
    """What a header read gives, for the synthetic rows (their files are the demo's, so their
    real headers would all say the same): an acquisition date a little before storage, and
    both eyes."""
    from datetime import UTC, datetime

    rows = db.query("SELECT sid, scan_hash, stored_at FROM web_scans WHERE header_read = 0")
    updates = [
        {
            "i": r["sid"],
            "a": datetime.fromtimestamp(r["stored_at"] - 86400 * (r["sid"] % 30), UTC)
            .date()
            .isoformat(),
            "l": "OD" if r["sid"] % 2 else "OS",
        }
        for r in rows
        if r["scan_hash"] not in real
    ]
    for k in range(0, len(updates), 5000):
        with db.transaction():
            db.execute_many(
                "UPDATE web_scans SET acquired_on = :a, laterality = :l, header_read = 1"
                " WHERE sid = :i",
                updates[k : k + 5000],
            )


def run_web_bench(
    *,
    scans: int = 100_000,
    repeat: int = 40,
    home: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> WebBenchFigures:
    import requests
    from qmroct.config import Settings
    from qmroct.embedded.demo import run_demo
    from qmroct.web.server import start
    from qmroct.web.state import WebSettings, WebState

    say = progress or (lambda _m: None)
    home = home or Path(tempfile.mkdtemp(prefix="qmroct-bench-web-"))
    if not (home / "ledger.sqlite3").exists():
        say("running the demo for real scans and results (3 scans)")
        report = run_demo(3, home=home, cap=2)
        if report.failed:
            raise RuntimeError(f"the demo failed: {report.failures}")
    settings = Settings(home=home, ledger_url=f"sqlite:///{home / 'ledger.sqlite3'}")
    state = WebState.from_settings(settings, WebSettings(refresh_s=0))
    # The demo's own scans: the synthetic ones carry "bench:" job keys.
    real = [
        r["scan_hash"]
        for r in state.db.query(
            "SELECT DISTINCT scan_hash FROM results WHERE job_key NOT LIKE 'bench:%'"
        )
    ]
    have = state.catalog.scan_count()
    t = time.perf_counter()
    if have < scans:
        synthesize(state.db, scans - have, progress=say)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    state.index.refresh(progress=say)
    say("\n")
    index_s = time.perf_counter() - t
    _synthetic_headers(state.db, set(real))
    state.users.add("bench", PASSWORD, "admin")
    server = start(state)
    try:
        return _measure(server.url, state, real, repeat, scans, build_s, index_s, say, requests)
    finally:
        server.stop()


def _measure(
    url: str,
    state: Any,
    real: list[str],
    repeat: int,
    scans: int,
    build_s: float,
    index_s: float,
    say: Callable[[str], None],
    requests: Any,
) -> WebBenchFigures:
    import re

    s = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', s.get(f"{url}/login").text).group(1)
    s.post(f"{url}/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    rng = random.Random(5)
    all_hashes = [
        r["scan_hash"]
        for r in state.db.query("SELECT scan_hash FROM web_scans ORDER BY scan_hash LIMIT 100000")
    ]

    def timed(path: str) -> float:
        t = time.perf_counter()
        r = s.get(f"{url}{path}")
        dt = time.perf_counter() - t
        if r.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {r.status_code}: {r.text[:200]}")
        return dt

    searches = {
        "search: no filter": "/",
        "search: letter S fail": "/?v_S=fail",
        "search: value range": "/?value=signal.peak_snr_db:10:20",
        "search: project + dates": "/?project=P03&date_from=2025-01-01&date_to=2025-12-31",
        "search: eye + device": "/?laterality=OS&device=Heidelberg+Spectralis",
        "search: 4 filters + value": "/?pattern=volume&overall=fail&v_O=pass"
        "&value=illumination.signal_cv:0.05:",
        "search: subject": "/?subject=sub-001234",
        "search: page 40": "/?v_S=pass&page=40",
        "search: version": "/?version=signal:1.0.0&v_B=pass",
    }
    actions: list[ActionFigure] = []
    all_search: list[float] = []
    say("timing searches")
    for name, path in searches.items():
        timed(path)  # one warm-up per query shape
        times = [timed(path) for _ in range(max(5, repeat // 4))]
        all_search += times
        actions.append(_figure(name, times, "search"))
    actions.insert(0, _figure("search", all_search))
    say("timing scan pages")
    actions.append(
        _figure(
            "scan page",
            [timed(f"/scan/{rng.choice(all_hashes)}") for _ in range(repeat)],
        )
    )
    say("timing group data")
    actions.append(
        _figure(
            "group data (project, ~5k points)",
            [
                timed("/api/group/signal/peak_snr_db.json?project=P07")
                for _ in range(max(5, repeat // 4))
            ],
        )
    )
    # First viewer paint: a scan not loaded yet; the page, its geometry, the middle B-scan and the
    # SLO, in the order the page asks for them (the scripts are cached after the first visit).
    say("timing first viewer paints")
    firsts = []
    for _ in range(max(5, repeat // 4)):
        h = rng.choice(all_hashes)
        state.images._scans = type(state.images._scans)(state.images._scans.size)
        state.images._tiles = type(state.images._tiles)(state.images._tiles.size)
        t = time.perf_counter()
        timed(f"/viewer/{h}")
        geo = s.get(f"{url}/api/scan/{h}/geometry.json").json()
        timed(f"/tile/{h}/bscan/{(geo['n'] - 1) // 2}.png?w=768")
        timed(f"/tile/{h}/fundus.png?w=300")
        firsts.append(time.perf_counter() - t)
    actions.append(_figure("first viewer paint", firsts))
    # B-scan change: the next B-scan of an open scan, not yet cached as a tile.
    say("timing B-scan changes")
    changes: list[float] = []
    overlays: list[float] = []
    h = real[0]
    geo = s.get(f"{url}/api/scan/{h}/geometry.json").json()
    for k in range(repeat):
        i = k % geo["n"]
        if k and i == 0:
            state.images._tiles = type(state.images._tiles)(state.images._tiles.size)
        # The image and its overlay, one after the other (the page asks for both).
        changes.append(timed(f"/tile/{h}/bscan/{i}.png?w=768"))
        overlays.append(timed(f"/tile/{h}/overlay/{i}.json?w=768"))
    # The page paints the new B-scan as soon as its image arrives; the overlay follows.
    actions.append(_figure("B-scan change", changes))
    actions.append(_figure("B-scan overlay (after the image)", overlays))
    return WebBenchFigures(
        scans=scans,
        database=state.db.dialect,
        build_s=round(build_s, 1),
        index_s=round(index_s, 1),
        actions=actions,
    )

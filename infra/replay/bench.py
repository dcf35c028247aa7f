"""``qmroct bench replay``: scripted sessions in headless Chromium against the web view, under
network profiles and with K concurrent users; per user action the duration (p50, p95), the
server's CPU (average and peak) and memory, and the bytes each way; and a capacity factor.

The web view runs in its own process, over the data of a `qmroct demo` run, so its CPU and
memory are measured apart from the browsers': a sampler reads the server's process every
100 ms. Every browser connection passes through a shaping relay (netprofile.py), which also
counts the bytes. Capacity: the smallest number of concurrent users at which the p95 of any
action exceeds twice its single-user p95, divided by the planned number of users.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field
from qmroct.monitor.report import Span, write_report
from qmroct.monitor.sampler import ComponentSample, Sampler
from qmroct.replay.netprofile import NetProfile, ShapingRelay, netem_available, parse_profile
from qmroct.replay.sessions import ROLES, ActionTiming, run_session

PASSWORD = "replay-password-1"
PROJECT = "DEMO"


class ActionStats(BaseModel):
    profile: str
    users: int
    role: str
    action: str
    runs: int
    failed: int
    p50_s: float
    p95_s: float
    server_cpu_avg_percent: float
    server_cpu_peak_percent: float
    server_memory_peak_mb: float
    bytes_up: int | None = Field(
        description="median bytes from the browser per action (single-user runs only: with "
        "several users at once their traffic mixes)"
    )
    bytes_down: int | None = Field(description="median bytes to the browser per action")


class Capacity(BaseModel):
    planned_users: int
    tested_users: list[int]
    worst_p95_ratio: dict[int, float] = Field(
        description="per number of users: the largest p95 / single-user p95 over all actions"
    )
    saturation_users: int | None = Field(
        description="the fewest users at which some action's p95 exceeded twice its single-user "
        "p95; None if none did up to the most users tested"
    )
    factor: float = Field(description="saturation_users / planned_users (a lower bound if None)")
    lower_bound: bool


class ReplayFigures(BaseModel):
    machine: str
    load_average: list[float]
    network: str
    profiles: list[NetProfile]
    repeats: int
    stats: list[ActionStats]
    capacity: Capacity
    failures: list[str]
    report: str = ""

    def lines(self) -> list[str]:
        out = [
            f"machine   {self.machine}; load average {' '.join(f'{x:.2f}' for x in self.load_average)}",
            f"network   {self.network}",
            "",
            f"{'profile':8s} {'users':>5s} {'role':12s} {'action':18s} {'runs':>4s} "
            f"{'p50 s':>7s} {'p95 s':>7s} {'CPU avg%':>8s} {'CPU pk%':>8s} {'mem MB':>7s} "
            f"{'up kB':>7s} {'down kB':>8s}",
        ]
        for s in self.stats:
            out.append(
                f"{s.profile:8s} {s.users:5d} {s.role:12s} {s.action:18s} {s.runs:4d} "
                f"{s.p50_s:7.3f} {s.p95_s:7.3f} {s.server_cpu_avg_percent:8.1f} "
                f"{s.server_cpu_peak_percent:8.1f} {s.server_memory_peak_mb:7.0f} "
                f"{_kb(s.bytes_up):>7s} {_kb(s.bytes_down):>8s}"
            )
        c = self.capacity
        ratios = ", ".join(f"{k} users x{v:.2f}" for k, v in sorted(c.worst_p95_ratio.items()))
        sat = (
            f"p95 doubled at {c.saturation_users} users"
            if c.saturation_users is not None
            else f"p95 never doubled up to {max(c.tested_users)} users"
        )
        out += [
            "",
            f"worst p95 against one user: {ratios}",
            f"capacity factor {'>= ' if c.lower_bound else ''}{c.factor:.2f} "
            f"({sat}; planned {c.planned_users} users)",
        ]
        out += [f"failed: {f}" for f in self.failures]
        if self.report:
            out.append(f"report: {self.report}")
        return out


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e3:.1f}"


def _pctl(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    ys = sorted(xs)
    # Nearest-rank percentile: with few runs the p95 is the slowest run, never an interpolation.
    k = max(0, min(len(ys) - 1, int(round(q / 100 * len(ys) + 0.5)) - 1))
    return ys[k]


class _ServerWatch:
    """Samples the web server's process every ``interval_s`` in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.sampler = Sampler(extra={"web": pid})
        self.interval_s = interval_s
        self.samples: list[ComponentSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.extend(s for s in self.sampler.sample() if s.component == "web")
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def window(self, start: float, end: float) -> list[ComponentSample]:
        """Samples inside [start, end], and the first one after it (a short action may fall
        between two samples; the next sample's rate covers it)."""
        inside = [s for s in self.samples if start <= s.t <= end]
        after = [s for s in self.samples if s.t > end][:1]
        return inside + after


class _Server:
    """`qmroct web` in its own process over ``home``."""

    def __init__(self, home: Path) -> None:
        env = {
            **os.environ,
            "QMROCT_HOME": str(home),
            "QMROCT_LEDGER_URL": "",
            "QMROCT_WEB_PORT": "0",
            "QMROCT_WEB_TEST_PROJECTS": "TEST",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qmroct.cli.main", "web"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.close()
            raise RuntimeError(f"the web view did not start: {line!r}")
        self.url = line.split()[4]
        host_port = self.url.removeprefix("http://")
        host, port = host_port.rsplit(":", 1)
        self.address = (host, int(port))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prepare_home(home: Path | None, scans: int, say: Callable[[str], None]) -> Path:
    """A folder with demo data (made by `qmroct demo` unless ``home`` already has a ledger)
    and the replay's users."""
    from qmroct.storage.db import connect
    from qmroct.web.auth import Users

    if home is None or not (home / "ledger.sqlite3").exists():
        from qmroct.embedded.demo import run_demo

        home = home or Path(tempfile.mkdtemp(prefix="qmroct-replay-"))
        say(f"running the demo pipeline on {scans} scans in {home}")
        report = run_demo(scans, home=home, cap=2, timeout_s=900)
        if report.failed:
            raise RuntimeError(f"the demo failed: {report.failures}")
    users = Users(connect(f"sqlite:///{home / 'ledger.sqlite3'}"))
    for i in range(64):
        users.add(f"replay{i}", PASSWORD, "researcher", [PROJECT])
    return home


def _run_users(base: str, n_users: int, repeats: int, browsers: list[object]) -> list[ActionTiming]:
    """``n_users`` browsers at once, each running ``repeats`` sessions: even users are
    researchers, odd ones radiologists; a single user alternates both roles."""
    results: list[ActionTiming] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        drv = browsers[i].driver  # type: ignore[attr-defined]
        for _ in range(repeats):
            roles = list(ROLES) if n_users == 1 else [list(ROLES)[i % 2]]
            for role in roles:
                got = run_session(role, drv, base, f"replay{i}", PASSWORD, user=i)
                with lock:
                    results.extend(got)
                if not got[-1].ok:
                    drv.delete_all_cookies()

    threads = [threading.Thread(target=user, args=(i,)) for i in range(n_users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _stats(
    profile: str,
    n_users: int,
    timings: list[ActionTiming],
    watch: _ServerWatch,
    relay_log: dict[tuple[float, float], tuple[int, int]],
) -> list[ActionStats]:
    groups: dict[tuple[str, str], list[ActionTiming]] = defaultdict(list)
    for t in timings:
        groups[(t.role, t.action)].append(t)
    out = []
    for role, actions in ROLES.items():
        for action in actions:
            runs = groups.get((role, action), [])
            if not runs:
                continue
            ok = [r for r in runs if r.ok]
            durs = [r.seconds for r in ok]
            cpu: list[float] = []
            peaks: list[float] = []
            mem: list[float] = []
            for r in ok:
                w = watch.window(r.start, r.end)
                if w:
                    cpu.append(statistics.fmean(s.cpu_percent for s in w))
                    peaks.append(max(s.cpu_percent for s in w))
                    mem.append(max(s.rss_bytes for s in w) / 2**20)
            ups = [relay_log[(r.start, r.end)][0] for r in ok if (r.start, r.end) in relay_log]
            downs = [relay_log[(r.start, r.end)][1] for r in ok if (r.start, r.end) in relay_log]
            out.append(
                ActionStats(
                    profile=profile,
                    users=n_users,
                    role=role,
                    action=action,
                    runs=len(runs),
                    failed=len(runs) - len(ok),
                    p50_s=round(_pctl(durs, 50), 4),
                    p95_s=round(_pctl(durs, 95), 4),
                    server_cpu_avg_percent=round(statistics.fmean(cpu), 1) if cpu else 0.0,
                    server_cpu_peak_percent=round(max(peaks), 1) if peaks else 0.0,
                    server_memory_peak_mb=round(max(mem), 1) if mem else 0.0,
                    bytes_up=int(statistics.median(ups)) if ups else None,
                    bytes_down=int(statistics.median(downs)) if downs else None,
                )
            )
    return out


def run_replay(
    *,
    users: list[int],
    repeats: int,
    profiles: list[str],
    planned: int,
    home: Path | None = None,
    scans: int = 4,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReplayFigures:
    from qmroct.replay.chromium import Browser, find_chromium

    say = progress or (lambda _m: None)
    find_chromium()
    profs = [parse_profile(p) for p in profiles]
    users = sorted(set(users) | {1})
    home = prepare_home(home, scans, say)
    netem, why = netem_available()
    network = (
        f"{why}; shaping by the user-space relay"
        if not netem
        else "tc netem is available on this kernel; shaping by the user-space relay all the same"
    )
    server = _Server(home)
    browsers: list[Browser] = []
    timings_all: list[ActionTiming] = []
    stats: list[ActionStats] = []
    spans: list[Span] = []
    failures: list[str] = []
    try:
        say(f"web view {server.url}; starting {max(users)} browsers")
        browsers = [Browser() for _ in range(max(users))]
        with _ServerWatch(server.proc.pid) as watch:
            baseline: dict[tuple[str, str], float] = {}
            worst: dict[int, float] = {}
            # Single user under every profile, with per-action bytes.
            for prof in profs:
                with ShapingRelay(server.address, prof) as relay:
                    base = f"http://127.0.0.1:{relay.port}"
                    log: dict[tuple[float, float], tuple[int, int]] = {}
                    timings: list[ActionTiming] = []
                    say(f"{prof.name}: 1 user, {repeats} x both sessions")
                    for _ in range(repeats):
                        for role in ROLES:
                            timings += _timed_session(role, browsers[0].driver, base, relay, log)
                    stats += _stats(prof.name, 1, timings, watch, log)
                    timings_all += timings
                    if prof.name == profs[0].name:
                        for s in stats:
                            if s.profile == prof.name and s.users == 1:
                                baseline[(s.role, s.action)] = s.p95_s
                        spans += [
                            Span(label=t.action, start=t.start, end=t.end, group=t.role)
                            for t in timings[: len(ROLES["researcher"]) + len(ROLES["radiologist"])]
                        ]
            worst[1] = 1.0
            # More users at once, under the first profile.
            cap_prof = profs[0]
            for k in users:
                if k == 1:
                    continue
                with ShapingRelay(server.address, cap_prof) as relay:
                    base = f"http://127.0.0.1:{relay.port}"
                    say(f"{cap_prof.name}: {k} users at once, {repeats} sessions each")
                    timings = _run_users(base, k, repeats, browsers)
                    timings_all += timings
                    ks = _stats(cap_prof.name, k, timings, watch, {})
                    stats += ks
                    ratios = [
                        s.p95_s / baseline[(s.role, s.action)]
                        for s in ks
                        if baseline.get((s.role, s.action), 0) > 0 and s.runs > s.failed
                    ]
                    worst[k] = round(max(ratios), 3) if ratios else 0.0
            samples = list(watch.samples)
    finally:
        for b in browsers:
            b.close()
        server.close()
    failures = [f"{t.role} {t.action} (user {t.user}): {t.error}" for t in timings_all if not t.ok]
    sat = next((k for k in sorted(worst) if worst[k] > 2.0), None)
    capacity = Capacity(
        planned_users=planned,
        tested_users=users,
        worst_p95_ratio=worst,
        saturation_users=sat,
        factor=round((sat if sat is not None else max(users)) / planned, 3),
        lower_bound=sat is None,
    )
    figures = ReplayFigures(
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {_mem_gb():.0f} GB, "
        f"{platform.system()} {platform.release()}",
        load_average=[round(x, 2) for x in os.getloadavg()],
        network=network,
        profiles=profs,
        repeats=repeats,
        stats=stats,
        capacity=capacity,
        failures=failures,
    )
    if out_dir is not None:
        write_report(
            samples,
            spans,
            out_dir,
            title="qmroct bench replay: the web server while users work",
            extra=figures.model_dump(exclude={"stats"}),
        )
        (out_dir / "replay.json").write_text(figures.model_dump_json(indent=2))
        figures.report = str(out_dir / "report.html")
    return figures


def _timed_session(
    role: str,
    drv: object,
    base: str,
    relay: ShapingRelay,
    log: dict[tuple[float, float], tuple[int, int]],
) -> list[ActionTiming]:
    """One session with each action's bytes read off the relay: only one user is on it, so
    what the relay carried between two actions' starts is the first action's traffic."""
    marks: list[tuple[int, int]] = []
    got = run_session(
        role,
        drv,
        base,
        "replay0",
        PASSWORD,
        user=0,
        on_action=lambda: marks.append((relay.bytes["up"], relay.bytes["down"])),
    )
    for i, t in enumerate(got):
        if i + 1 < len(marks):
            log[(t.start, t.end)] = (
                marks[i + 1][0] - marks[i][0],
                marks[i + 1][1] - marks[i][1],
            )
    return got


def _mem_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0

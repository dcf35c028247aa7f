"""``qmroct up`` as a process of its own, for tests that start, signal and restart it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class UpStack:
    """A ``qmroct up`` process on its own home, and the API address it announced."""

    def __init__(self, home: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.home = home
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.api_host = ""
        self.auth = ""

    def start(self, timeout_s: float = 120.0) -> UpStack:
        log = open(self.home.parent / f"{self.home.name}-up.log", "a")  # noqa: SIM115 - kept open
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("qmroct")), "up", "--no-web", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout_s
        info = self.home / "stack.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qmroct up exited with {self.proc.returncode}: see {log.name}")
            if info.exists() and (self.home / "whisk" / "whisk.json").exists():
                try:
                    if json.loads(info.read_text()).get("pid") == self.proc.pid:
                        whisk = json.loads((self.home / "whisk" / "whisk.json").read_text())
                        self.api_host, self.auth = whisk["api_host"], whisk["auth"]
                        return self
                except ValueError:
                    pass  # being written
            time.sleep(0.1)
        raise TimeoutError(f"qmroct up did not come up in {timeout_s} s")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)


def up_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMROCT_")}
    env.update(QMROCT_HOME=str(home), **extra)
    return env


def processes_under(folder: Path) -> list[int]:
    """Pids of processes whose command line names ``folder`` (the stack's action workers)."""
    needle = str(folder).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def gone(folder: Path, timeout_s: float = 5.0) -> list[int]:
    """Wait until no process names ``folder``; the ones still there after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not processes_under(folder):
            return []
        time.sleep(0.1)
    return processes_under(folder)

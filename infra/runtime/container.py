"""One warm container: a proxy process (proxy.py) on a loopback port, and its log streams.

The process starts with a scrubbed environment (``PYTHONIOENCODING`` and ``__OW_API_HOST``;
the /init env and the per-run ``__OW_*`` variables are added inside it). It runs the host
interpreter directly: the installed site-packages stand in for the runtime image.

Memory: OpenWhisk caps a container's resident memory with a cgroup (``docker run --memory``);
here the proxy watches its own resident size and exits with 137 past ``memorySize``, the same
limit on the same quantity. Address space is not what the cgroup limits: the interpreter,
numpy, scipy and OpenBLAS reserve about 345 MB of it (~105 MB resident), h5py and the Topcon
readers reserve more after /init, so the address-space rlimit is only a backstop at
``2 * memorySize + ADDRESS_SPACE_ALLOWANCE_MB``.

The proxy also watches its parent: if the runtime dies (SIGKILL included), every container
kills its own process group within a fraction of a second.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel
from qmroct.runtime import messages, usage
from qmroct.runtime.records import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    INTERNAL_ERROR,
    SUCCESS,
    ActivationResponse,
)
from qmroct.runtime.sandbox import wrap

PROXY_SCRIPT = Path(__file__).with_name("proxy.py")
ADDRESS_SPACE_ALLOWANCE_MB = 384
EXIT_OOM = 137
OOM_MARKER = ".out-of-memory"  # proxy.py leaves it when it exits for memory
_START_TIMEOUT_S = 30.0
# How long to wait for both sentinels once the run answered.
LOG_DRAIN_TIMEOUT_S = 30.0


class Outcome(BaseModel):
    """What one /init or /run gave: the response, and whether the container must go."""

    response: ActivationResponse
    ok: bool
    destroy: bool = False


class ContainerStartError(RuntimeError):
    """The proxy process did not come up."""


class _Logs:
    """Collects both streams line by line, capped per activation, until both sentinels."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._size = 0
        self._limit = 10 * 1024 * 1024
        self._truncated = False
        self._sentinels = 0
        self._closed = 0

    def begin(self, limit_bytes: int) -> None:
        with self._cond:
            self._lines, self._size, self._truncated = [], 0, False
            self._sentinels = 0
            self._limit = limit_bytes

    def feed(self, stream: str, raw: bytes) -> None:
        text = raw.rstrip(b"\n").decode("utf-8", errors="replace")
        with self._cond:
            if text.endswith(messages.SENTINEL):
                self._sentinels += 1
                self._cond.notify_all()
                # Output without a final newline shares the sentinel's line.
                text = text.removesuffix(messages.SENTINEL)
                if not text:
                    return
                raw = text.encode()
            size = len(raw)
            if self._size + size > self._limit:
                self._truncated = True
                return
            self._size += size
            stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            self._lines.append(f"{stamp} {stream}: {text}")

    def close(self) -> None:
        with self._cond:
            self._closed += 1
            self._cond.notify_all()

    def take(self, wait_s: float) -> list[str]:
        """The lines of this activation, after both sentinels (or both streams closed)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self._sentinels + self._closed < 2:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            lines = self._lines
            if self._truncated:
                lines.append(messages.logs_truncated(self._limit))
            self._lines, self._size, self._truncated = [], 0, False
            self._sentinels = 0
            return lines


class Container:
    """A proxy process serving one action version, one activation at a time."""

    def __init__(
        self,
        key: str,
        memory_mb: int,
        workdir: Path,
        env: dict[str, str],
        *,
        sandbox: str | None = None,
        hidden: list[Path] | None = None,
        granted: list[Path] | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.key = key
        self.memory_mb = memory_mb
        self.workdir = workdir / self.id
        self.env = env
        self.port = 0
        self.initialized = False
        self.busy = False
        self.last_used = time.monotonic()
        self.logs = _Logs()
        self.sandbox = sandbox
        self.hidden = list(hidden or [])
        self.granted = list(granted or [])
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._final_cpu_s: float | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        rfd, wfd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                self._command(wfd),
                env={"PYTHONIOENCODING": "utf-8", **self.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(wfd,),
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            os.close(wfd)
        self._wait_ready(rfd)

    def _command(self, ready_fd: int) -> list[str]:
        argv = [
            sys.executable,
            "-P",
            # No site: the proxy adds the runtime's site-packages itself, without the editable
            # install of this source tree (see proxy.py, --site-dir).
            "-S",
            str(PROXY_SCRIPT),
            "--ready-fd",
            str(ready_fd),
            "--address-space-mb",
            str(2 * self.memory_mb + ADDRESS_SPACE_ALLOWANCE_MB),
            "--memory-mb",
            str(self.memory_mb),
            "--workdir",
            str(self.workdir),
            # A label for `qmroct monitor`, which finds containers by command line.
            "--action",
            self.key.split("@", 1)[0].rsplit("/", 1)[-1],
            "--parent-pid",
            str(os.getpid()),
        ]
        for folder in runtime_site_dirs():
            argv += ["--site-dir", folder]
        if self.sandbox is None:
            return argv
        needed = [Path(sys.prefix), Path(sys.base_prefix), PROXY_SCRIPT.parent]
        return wrap(self.sandbox, argv, self.workdir, self.hidden, self.granted, needed)

    def _wait_ready(self, rfd: int) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            t = threading.Thread(target=self._pump, args=(name, stream), daemon=True)
            t.start()
            self._readers.append(t)
        try:
            ready, _, _ = select.select([rfd], [], [], _START_TIMEOUT_S)
            line = os.read(rfd, 4096).decode() if ready else ""
        finally:
            os.close(rfd)
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError) as exc:
            self.destroy()
            raise ContainerStartError(f"container {self.id}: proxy did not start") from exc

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.logs.feed(name, raw)
        self.logs.close()

    @property
    def pid(self) -> int | None:
        """The proxy process's id (None before start), for resource accounting."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cpu_s(self) -> float:
        """CPU seconds its processes have used, start-up included; once killed, what they had
        used then (the action's process under a sandbox launcher dies unreaped by us, and its
        CPU with it)."""
        if self._final_cpu_s is not None:
            return self._final_cpu_s
        return usage.tree_cpu_s(self._proc.pid) if self._proc is not None else 0.0

    def kill(self) -> None:
        """SIGKILL the process group (the action's children too); the log streams then end."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if self._final_cpu_s is None:
                self._final_cpu_s = usage.tree_cpu_s(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def destroy(self) -> None:
        self.kill()
        proc = self._proc
        if proc is not None:
            proc.wait()
        for t in self._readers:
            t.join(timeout=5)
        if proc is not None:
            for s in (proc.stdout, proc.stderr):
                if s is not None:
                    s.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- protocol -------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any], timeout_s: float) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=max(timeout_s, 0.001))
        try:
            data = json.dumps(body).encode()
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def init(
        self,
        name: str,
        main: str,
        code: str,
        env: dict[str, str],
        timeout_ms: int,
        *,
        binary: bool = True,
    ) -> Outcome:
        """POST /init with the code: a base64 zip (``binary``) or the source text, as the
        invoker sends the action's ``exec``; a failure destroys the container."""
        value = {"name": name, "main": main, "binary": binary, "code": code, "env": env}
        outcome = self._exchange("/init", {"value": value}, timeout_ms)
        if outcome.ok:
            self.initialized = True
        else:
            outcome.destroy = True
        return outcome

    def run(self, body: dict[str, Any], timeout_ms: int) -> Outcome:
        """POST /run with the run body (value plus the activation context)."""
        return self._exchange("/run", body, timeout_ms)

    def _exchange(self, path: str, body: dict[str, Any], timeout_ms: int) -> Outcome:
        try:
            status, data = self._post(path, body, timeout_ms / 1000)
        except TimeoutError:
            message = messages.timed_out(timeout_ms, init=path == "/init")
            return Outcome(
                response=ActivationResponse.error(DEVELOPER_ERROR, message),
                ok=False,
                destroy=True,
            )
        except (OSError, http.client.HTTPException):
            return self._crashed(init=path == "/init")
        if len(data) > messages.MAX_PAYLOAD_BYTES:
            msg = messages.response_too_large(len(data))
            return Outcome(response=ActivationResponse.error(DEVELOPER_ERROR, msg), ok=False)
        try:
            result = json.loads(data)
        except ValueError:
            msg = f"The action did not produce a valid JSON response: {data[:200]!r}"
            return Outcome(response=ActivationResponse.error(DEVELOPER_ERROR, msg), ok=False)
        if status == 200 and path == "/run":
            is_error = isinstance(result, dict) and "error" in result
            code = APPLICATION_ERROR if is_error else SUCCESS
            return Outcome(response=ActivationResponse.of(code, result), ok=not is_error)
        if status == 200:
            return Outcome(response=ActivationResponse.of(SUCCESS, result), ok=True)
        code = DEVELOPER_ERROR if status in (403, 502) else INTERNAL_ERROR
        return Outcome(response=ActivationResponse.of(code, result), ok=False)

    def _crashed(self, init: bool) -> Outcome:
        assert self._proc is not None
        try:
            rc = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            rc = None
        abnormal = messages.ABNORMAL_INIT if init else messages.ABNORMAL_EXIT
        if rc is not None and rc > 128 and self.sandbox is not None:
            rc = 128 - rc  # bubblewrap reports its child's death by signal N as 128 + N
        if (self.workdir / OOM_MARKER).exists() or rc == EXIT_OOM:
            msg = messages.OUT_OF_MEMORY
        elif rc is not None and rc < 0:
            msg = f"{abnormal} (killed by signal {signal.Signals(-rc).name})"
        else:
            msg = f"{abnormal} (exit status {rc})"
        response = ActivationResponse.error(DEVELOPER_ERROR, msg)
        return Outcome(response=response, ok=False, destroy=True)


def runtime_site_dirs() -> list[str]:
    """The site-packages folders of this interpreter: the libraries the runtime image holds
    (layers/Dockerfile installs them there), which the proxy puts on the action's path."""
    return [d for d in site.getsitepackages() if os.path.isdir(d)]


def encode_zip(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

"""The action container: an HTTP proxy speaking OpenWhisk's runtime protocol on a loopback port.

Started as a plain script (never imported as part of ``qmroct``, so the ``qmroct`` tree inside
the action zip is the one the action imports). One process is one warm container:

- ``POST /init {"value": {"name", "main", "binary", "code", "env"}}`` once: unpack the base64
  zip, put it first on ``sys.path``, run ``virtualenv/bin/activate_this.py`` when present, run
  ``__main__.py`` (module-level code runs once) and resolve the entry function. A second /init
  answers 403.
- ``POST /run {"value": {...}, "namespace", "action_name", ...}``: set ``__OW_<KEY>`` for every
  key except ``value``, call ``main(value)`` and answer its dict or list (502 otherwise). An
  exception answers 200 ``{"error": str(ex)}`` with the traceback on stderr. After each run the
  sentinel line goes to stdout and stderr, as the ActionLoop proxy writes it.

The interpreter runs without ``site`` (``-S``): ``--site-dir`` names the runtime's
site-packages, which go on ``sys.path`` with their ``.pth`` files processed as ``site`` does,
except those of editable installs (``__editable__.*.pth``, setuptools' PEP 660 hooks). A
development install of qmroct is one of those: its import hook would serve the action any
``qmroct`` module of this source tree that the action's zip does not ship (a measure would
import ``qmroct.storage``, which a deployed measure cannot), and costs every container its
import. The runtime image has no such install: the library comes with each action's zip.

The memory limit is on resident memory, as the container's cgroup sets it: a watcher thread
ends the process (exit status 137, as an out-of-memory kill ends a real container) once its
resident size passes ``--memory-mb``. An address-space rlimit well above that is only a
backstop against runaway reservations; a MemoryError it causes ends the container the same way.
Another watcher kills the process group when the parent (the runtime) is gone.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import importlib.util
import io
import json
import os
import resource
import select
import signal
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
EXIT_OOM = 137
EXIT_KILLED = 128 + 9
PR_SET_PDEATHSIG = 1  # linux/prctl.h
NOT_DICT = "The action did not return a dictionary or array."
REINIT = "Cannot initialize the action more than once."
UNINITIALIZED = "Cannot invoke an uninitialized action."
START_FAILED = "Cannot start action. Check logs for details."


class _State:
    main = None
    workdir = "."
    marker_dir = "."
    memory_bytes = 0
    # Set while /init or /run is being handled: the memory watcher looks closely then.
    busy = threading.Event()


OOM_MARKER = ".out-of-memory"


def _exit_out_of_memory() -> None:
    """Exit 137 as an OOM-killed container does, leaving a marker: under bubblewrap a
    SIGKILL also shows as 137 (128 + 9), and the runtime must tell the two apart."""
    with contextlib.suppress(OSError):
        open(os.path.join(_State.marker_dir, OOM_MARKER), "w").close()  # noqa: SIM115
    os._exit(EXIT_OOM)


#: The ``.pth`` files of editable installs (setuptools, PEP 660), left out of the action's path.
EDITABLE_PTH_PREFIX = "__editable__"


def add_site_dirs(folders: list[str]) -> None:
    """What ``site`` does for each site-packages folder (append it to ``sys.path``, then run
    its ``.pth`` files in name order, ``site.addpackage``), editable installs' hooks left out."""
    if not folders:
        return
    import site  # with -S, importing site adds nothing by itself (sys.flags.no_site)

    known = {os.path.normcase(p) for p in sys.path}
    for folder in folders:
        if os.path.normcase(folder) not in known:
            sys.path.append(folder)
            known.add(os.path.normcase(folder))
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if name.endswith(".pth") and not name.startswith(EDITABLE_PTH_PREFIX):
                site.addpackage(folder, name, known)


def _emit_sentinel() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            stream.write(SENTINEL + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


def _init(value: dict) -> tuple[int, dict]:
    if _State.main is not None:
        return 403, {"error": REINIT}
    target = tempfile.mkdtemp(prefix="action-", dir=_State.workdir)
    code = value.get("code") or ""
    try:
        if value.get("binary"):
            with zipfile.ZipFile(io.BytesIO(base64.b64decode(code))) as zf:
                zf.extractall(target)
        else:
            with open(os.path.join(target, "__main__.py"), "w", encoding="utf-8") as f:
                f.write(code)
        for key, val in (value.get("env") or {}).items():
            os.environ[str(key)] = val if isinstance(val, str) else json.dumps(val)
        activate = os.path.join(target, "virtualenv", "bin", "activate_this.py")
        if os.path.isfile(activate):
            with open(activate, encoding="utf-8") as f:
                exec(compile(f.read(), activate, "exec"), {"__file__": activate})
        sys.path.insert(0, target)
        os.chdir(target)
        spec = importlib.util.spec_from_file_location("main__", os.path.join(target, "__main__.py"))
        if spec is None or spec.loader is None:
            raise ImportError(f"{target}: no __main__.py in the action")
        module = importlib.util.module_from_spec(spec)
        sys.modules["main__"] = module
        spec.loader.exec_module(module)
        entry = getattr(module, value.get("main") or "main", None)
        if not callable(entry):
            raise AttributeError(f"__main__.py has no function {value.get('main') or 'main'!r}")
    except MemoryError:
        traceback.print_exc()
        _emit_sentinel()
        _exit_out_of_memory()
    except BaseException:  # noqa: BLE001 - any failure of user code is reported, not raised
        traceback.print_exc()
        sys.stderr.flush()
        return 502, {"error": START_FAILED}
    _State.main = entry
    return 200, {"ok": True}


_PAGE = os.sysconf("SC_PAGE_SIZE")
#: How often the resident size is checked while the action runs.
WATCH_INTERVAL_S = 0.02
#: ... and while the container waits for work: the action's code is not running then (only
#: threads it left behind could allocate), and fifty wake-ups a second in every idle
#: container of the machine add up.
IDLE_WATCH_INTERVAL_S = 0.5


def _resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _watch_memory(limit_bytes: int) -> None:
    """The cgroup's job: end the container once its resident memory passes the limit.

    OpenWhisk runs each container with ``docker run --memory`` (core/invoker/.../docker/
    DockerContainer.scala), which caps resident memory, not address space: a library may
    reserve as much address space as it likes (h5py, OpenBLAS, the Topcon readers do) as long
    as it does not touch it. The kernel's OOM kill ends the container with status 137.
    """
    while True:
        rss = _resident_bytes()
        if rss > limit_bytes:
            sys.stderr.write(
                f"MemoryError: resident memory {rss >> 20} MB exceeds the action's limit of "
                f"{limit_bytes >> 20} MB\n"
            )
            _emit_sentinel()
            _exit_out_of_memory()
        if _State.busy.is_set():
            time.sleep(WATCH_INTERVAL_S)
        else:
            _State.busy.wait(IDLE_WATCH_INTERVAL_S)  # wakes at once when a request comes


def _ppid_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _watch_parent(parent: int) -> None:
    """Die with the runtime: once the runtime is gone (the process just below it, this one
    or the sandbox launcher, re-parented to init or a subreaper), kill this container's
    process group, the action's own children included."""
    anchor, up = os.getpid(), os.getppid()
    while up not in (parent, 0, 1):
        anchor, up = up, _ppid_of(up)
    try:
        # A pidfd turns readable when its process ends (pidfd_open(2), Linux 5.3): no polling.
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        pidfd = -1
    # Opened while the anchor's parent is still ``parent``: the pidfd is the runtime's, not
    # that of a process that took over its id.
    if pidfd >= 0 and _ppid_of(anchor) == parent:
        select.select([pidfd], [], [])
    else:
        while _ppid_of(anchor) == parent:
            time.sleep(0.2)
    os.killpg(0, signal.SIGKILL)


def _die_with_launcher(parent: int) -> None:
    """Under a sandbox launcher (bubblewrap), die the moment the launcher does: killing the
    container's process kills the action, as killing a container does. The launcher is
    single-threaded, so PR_SET_PDEATHSIG is exact there (with a threaded parent, the signal
    would follow the thread that forked, hence the watcher below for the runtime itself)."""
    launcher = os.getppid()
    if parent <= 0 or launcher == parent:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != launcher:  # it died before the prctl
        os._exit(EXIT_KILLED)


def _start_watchers(memory_bytes: int, parent: int) -> None:
    _die_with_launcher(parent)
    if parent > 0:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if memory_bytes > 0:
        threading.Thread(target=_watch_memory, args=(memory_bytes,), daemon=True).start()


def _run(body: dict) -> tuple[int, object]:
    if _State.main is None:
        return 403, {"error": UNINITIALIZED}
    for key, val in body.items():
        if key != "value":
            os.environ["__OW_" + key.upper()] = val if isinstance(val, str) else json.dumps(val)
    try:
        result = _State.main(body.get("value") or {})
    except MemoryError:
        traceback.print_exc()
        _emit_sentinel()
        _exit_out_of_memory()
    except BaseException as ex:  # noqa: BLE001 - the action's error becomes its result
        traceback.print_exc()
        return 200, {"error": str(ex)}
    if not isinstance(result, dict | list):
        return 502, {"error": NOT_DICT}
    return 200, result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    # Headers and body go out as separate writes; Nagle would hold the body back.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Request lines must not appear in the activation logs."""

    def _answer(self, status: int, payload: object) -> None:
        try:
            data = json.dumps(payload).encode()
        except (TypeError, ValueError) as ex:
            status, data = 502, json.dumps({"error": f"{NOT_DICT} ({ex})"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._answer(400, {"error": "The request body is not JSON."})
            return
        if self.path == "/init":
            _State.busy.set()
            try:
                status, payload = _init(body.get("value") or {})
            finally:
                _State.busy.clear()
            if status != 200:
                _emit_sentinel()
        elif self.path == "/run":
            _State.busy.set()
            try:
                status, payload = _run(body)
            finally:
                _State.busy.clear()
            _emit_sentinel()
        else:
            status, payload = 404, {"error": f"no route {self.path}"}
        self._answer(status, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--address-space-mb", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--action", default="", help="the action's name (a label only)")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument(
        "--site-dir", action="append", default=[], help="a site-packages folder of the runtime"
    )
    args = parser.parse_args()
    add_site_dirs(args.site_dir)
    if args.address_space_mb > 0:
        limit = args.address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The interpreter coerces the C locale by exporting LC_CTYPE; the action's environment
    # must hold only what OpenWhisk gives it.
    os.environ.pop("LC_CTYPE", None)
    os.environ.pop("PWD", None)  # bubblewrap's --chdir exports it
    sys.stdout.reconfigure(line_buffering=True)
    _State.workdir = args.workdir
    _State.marker_dir = args.workdir
    _State.memory_bytes = args.memory_mb * 1024 * 1024
    _start_watchers(_State.memory_bytes, args.parent_pid)
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    # Like the ActionLoop launcher's {"ok": true} on fd 3: the parent learns we are up.
    with os.fdopen(args.ready_fd, "w") as ready:
        ready.write(json.dumps({"ok": True, "port": server.server_address[1]}) + "\n")
    server.serve_forever()


if __name__ == "__main__":
    main()

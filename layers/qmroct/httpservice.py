"""A threaded HTTP server run in the background: the lifecycle every loopback service shares
(the local object store, the MinIO webhook bridge)."""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Self


class CountingHTTPServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that adds up the CPU its request threads use (``cpu_s``).

    Request threads live one connection each, too short for a sampler to see; the benchmarks
    read this sum to say what a service costs (``qmroct bench paper``'s breakdown)."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cpu_s = 0.0
        self._cpu_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        t0 = time.thread_time()
        try:
            super().process_request_thread(request, client_address)
        finally:
            spent = time.thread_time() - t0
            with self._cpu_lock:
                self.cpu_s += spent


class BackgroundHTTPServer:
    """Wraps a ``ThreadingHTTPServer``: :meth:`start` serves it from a daemon thread,
    :meth:`close` stops it; usable as a context manager. Port 0 picks a free port."""

    thread_name = "http"

    def __init__(self, httpd: ThreadingHTTPServer, host: str) -> None:
        self._httpd = httpd
        self.host = host
        self.port = httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def cpu_s(self) -> float:
        """CPU seconds of the request threads so far (0 unless a CountingHTTPServer)."""
        return float(getattr(self._httpd, "cpu_s", 0.0))

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

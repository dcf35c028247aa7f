"""A threaded HTTP server run in the background: the lifecycle every loopback service shares
(the local object store, the MinIO webhook bridge)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


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

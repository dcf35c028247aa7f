"""Helpers shared by the object-store tests (a recording webhook endpoint, polling)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll until ``cond()``; fail (not a timing assert) only if it never happens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Receiver:
    """A webhook endpoint: records (headers, body) of every POST; answers ``statuses`` in turn
    (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.received.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def delivered(self) -> list[bytes]:
        """Bodies answered with a 2xx, in arrival order."""
        with self.lock:
            return [b for _, b, s in self.received if 200 <= s < 300]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

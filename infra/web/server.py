"""Running the web view: waitress (a production WSGI server in pure Python, no C build) in a
thread, so `qmroct up`, `qmroct web`, the benchmark and the browser tests share one path."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from qmroct.web.app import create_app
from qmroct.web.state import WebState


@dataclass
class WebServer:
    state: WebState
    url: str
    _server: object
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.close()  # type: ignore[attr-defined]
        self._thread.join(timeout=10)
        self.state.close()


def start(
    state: WebState, host: str = "127.0.0.1", port: int = 0, *, threads: int = 8
) -> WebServer:
    """Serve ``state`` on ``host:port`` (0: a free port) in a background thread."""
    from waitress.server import create_server

    app = create_app(state)
    server = create_server(app, host=host, port=port, threads=threads, ident="qmroct")
    real_port = server.effective_port  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, name="qmroct-web", daemon=True)
    thread.start()
    state.refresh_index()
    state.start_refresher()
    return WebServer(state=state, url=f"http://{host}:{real_port}", _server=server, _thread=thread)

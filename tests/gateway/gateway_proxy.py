"""A TCP proxy on loopback that can cut every connection: a real dropped connection for tests."""

from __future__ import annotations

import contextlib
import socket
import threading


class DroppingProxy:
    """Forward 127.0.0.1:<port> to ``upstream``. ``cut_after(n)`` drops all traffic once n more
    client bytes have passed, and refuses new connections until ``restore()``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._budget: int | None = None
        self._down = False
        self.bytes_up = 0
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._budget = n

    def restore(self) -> None:
        with self._lock:
            self._budget, self._down = None, False

    def _drop_all(self) -> None:
        self._down = True
        for s in list(self._open):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._open.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._down:
                    client.close()
                    continue
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counts: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if counts:
                    with self._lock:
                        self.bytes_up += len(chunk)
                        if self._budget is not None:
                            self._budget -= len(chunk)
                            if self._budget <= 0:
                                self._drop_all()
                                return
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            self._drop_all()

"""Network profiles: parsing, and the user-space relay's delay and rate (lower bounds only:
the relay can make traffic slower than the profile on a busy machine, never faster)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from qmroct.replay.netprofile import NetProfile, ShapingRelay, parse_profile


@pytest.fixture
def echo_server():
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return

            def echo(c: socket.socket) -> None:
                with c:
                    while data := c.recv(65536):
                        c.sendall(data)

            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


def _round_trip(port: int, payload: bytes) -> tuple[float, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        t0 = time.monotonic()
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := c.recv(65536):
            got += chunk
        return time.monotonic() - t0, got


def test_parse_profiles() -> None:
    assert parse_profile("wan").name == "wan"
    p = parse_profile("sat:300:20:5")
    assert (p.delay_ms, p.jitter_ms, p.rate_mbit) == (300.0, 20.0, 5.0)
    with pytest.raises(ValueError, match="NAME:DELAY_MS"):
        parse_profile("nope")


def test_relay_adds_the_delay_each_way_and_keeps_the_bytes(echo_server) -> None:
    prof = NetProfile(name="t", delay_ms=60, jitter_ms=10, rate_mbit=1000)
    payload = bytes(range(256)) * 400
    with ShapingRelay(echo_server, prof) as relay:
        rtt, got = _round_trip(relay.port, payload)
    assert got == payload  # order and content kept despite jitter
    assert rtt >= 2 * 0.050  # 60 ms - 10 ms jitter at least, once each way


def test_relay_holds_to_its_rate(echo_server) -> None:
    prof = NetProfile(name="t", delay_ms=0, jitter_ms=0, rate_mbit=8)  # 1 MB/s
    payload = b"x" * 600_000
    with ShapingRelay(echo_server, prof) as relay:
        rtt, got = _round_trip(relay.port, payload)
    assert len(got) == len(payload)
    assert rtt >= 0.55  # 0.6 MB at 1 MB/s each way; the directions overlap

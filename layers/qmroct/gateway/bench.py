"""``qmroct bench gateway``: gateway throughput (de-identify, compress, upload) on loopback.

The reference is the 4.33 MB/s upload rate the qmroct paper reports for its web upload; the
target is over 50 MB/s. Input files are Spectralis-shaped ``.vol`` volumes made here (a real
HSF-OCT-103 header with identifiers, float32 speckle over a layered retina, FLT_MAX where the
scan has no data), written before the clock starts. The store is a real HTTP server on
loopback: the local folder store server, or moto's S3 server in its own process.
"""

from __future__ import annotations

import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import requests
from pydantic import BaseModel

from qmroct.gateway.pseudonyms import PseudonymStore
from qmroct.gateway.state import GatewayState
from qmroct.gateway.upload import Uploader

PAPER_MB_S = 4.33
TARGET_MB_S = 50.0


class GatewayBench(BaseModel):
    store: str
    compress: str
    files: int
    megabytes: float
    seconds: float
    mb_s: float
    stored_ratio: float
    paper_mb_s: float = PAPER_MB_S
    target_mb_s: float = TARGET_MB_S

    def render(self) -> str:
        verdict = "meets" if self.mb_s > self.target_mb_s else "below"
        return (
            f"gateway: {self.files} files, {self.megabytes:.0f} MB in {self.seconds:.2f} s = "
            f"{self.mb_s:.1f} MB/s to the {self.store} store (compress={self.compress}, stored "
            f"{self.stored_ratio:.2f} of input); paper {self.paper_mb_s} MB/s "
            f"(x{self.mb_s / self.paper_mb_s:.1f}), target {self.target_mb_s:.0f} MB/s: {verdict}"
        )


def synthetic_vol(n_bscans: int, height: int = 496, width: int = 512, seed: int = 0) -> bytes:
    """A Spectralis-shaped volume file: 2048-byte header, SLO, B-scan headers and float32 data."""
    rng = np.random.default_rng(seed)
    slo = 256
    header = bytearray(2048)
    header[:12] = b"HSF-OCT-103\0"
    struct.pack_into("<iii", header, 12, width, n_bscans, height)
    struct.pack_into("<ddd", header, 24, 0.0116, 0.12, 0.0039)
    struct.pack_into("<ii", header, 48, slo, slo)
    struct.pack_into("<i", header, 96, 3)  # volume
    struct.pack_into("<i", header, 100, 256)  # B-scan header size
    header[104:116] = f"EXAM{seed:07d}".encode()
    struct.pack_into("<i", header, 136, 4711 + seed)
    header[140:155] = f"PAT-BENCH-{seed:05d}".encode()
    struct.pack_into("<d", header, 164, 23_500.0)
    header[176:190] = f"VISIT-{seed:08d}".encode()
    rows = np.arange(height, dtype=np.float32)[:, None]
    retina = np.exp(-(((rows - height * 0.45) / (height * 0.08)) ** 2)).astype(np.float32)
    parts = [bytes(header), rng.integers(0, 255, slo * slo, dtype=np.uint8).tobytes()]
    for i in range(n_bscans):
        bhead = bytearray(256)
        bhead[:7] = b"HSF-BS-"
        speckle = rng.exponential(1.0, size=(height, width)).astype(np.float32)
        img = (retina * 0.2 + 0.002) * speckle
        img = np.round(img, 4).astype(np.float32)  # the device's quantisation
        img[:, : 8 + i % 5] = np.finfo(np.float32).max  # no-data margin
        parts += [bytes(bhead), img.tobytes()]
    return b"".join(parts)


@contextmanager
def _moto_process() -> Iterator[str]:
    """moto's S3 server in its own process, as a real server would be (no shared GIL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def run_gateway_bench(
    *,
    store: str = "local",
    total_mb: int = 256,
    file_mb: int = 32,
    workers: int = 2,
    compress: str | None = None,
) -> GatewayBench:
    """Upload ``total_mb`` of synthetic volumes; the clock covers de-identify, compress, upload.

    ``compress`` overrides the store's default (none for the local store, auto for S3)."""
    compress_override = compress
    from qmroct.objectstore import open_store

    per_bscan = 496 * 512 * 4 + 256
    n_bscans = max(1, file_mb * 1_000_000 // per_bscan)
    n_files = max(1, total_mb // file_mb)
    with tempfile.TemporaryDirectory(prefix="qmroct-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        inbox = root / "inbox"
        inbox.mkdir()
        for i in range(n_files):
            (inbox / f"scan{i:03d}.vol").write_bytes(synthetic_vol(n_bscans, seed=i))
        if store == "local":
            from qmroct.localstore.server import LocalStoreServer
            from qmroct.localstore.store import LocalFolderStore

            secret = secrets.token_hex(16)
            server = stack.enter_context(
                LocalStoreServer(LocalFolderStore(root / "store"), secret=secret)
            )
            client = open_store("local", server.endpoint, server.access_key, secret)
            compress = "none"  # loopback: compressing costs more than it saves
        elif store == "moto":
            endpoint = stack.enter_context(_moto_process())
            client = open_store("minio", endpoint, "bench", "bench")
            compress = "auto"
        else:
            raise ValueError(f"store must be local or moto, not {store!r}")
        compress = compress_override or compress
        client.ensure_bucket("oct-ingest")
        uploader = Uploader(
            client,
            PseudonymStore(root / "gw" / "pseudonyms.sqlite3"),
            GatewayState(root / "gw" / "state.sqlite3"),
            project="bench",
            compress=compress,
        )
        started = time.perf_counter()
        summary = uploader.upload_paths([inbox], workers=workers)
        seconds = time.perf_counter() - started
        bad = [o for o in summary.outcomes if o.status != "uploaded"]
        if bad:
            raise RuntimeError(f"bench upload failed: {bad[0].source}: {bad[0].reason}")
    megabytes = summary.bytes_in / 1e6
    return GatewayBench(
        store=store,
        compress=compress,
        files=len(summary.outcomes),
        megabytes=megabytes,
        seconds=seconds,
        mb_s=megabytes / seconds,
        stored_ratio=summary.bytes_stored / max(1, summary.bytes_in),
    )

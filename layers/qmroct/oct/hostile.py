"""Hostile OCT files, and a runner that reads each one in its own process under a budget.

The corpus (:func:`build_corpus`) is generated, never stored: truncations, header mutations,
zero and absurd dimensions, NaN and infinite pixels, decompression bombs (a gzip bomb, a gzip of
a hundred thousand tiny members, a deflated DICOM whose pixels inflate past the limit), empty and
random bytes, and odd file names. Every file must give either a scan or a typed
:class:`~qmroct.errors.ScanError` that names it: never a traceback, never a hang.

The runner (:func:`run_corpus`) starts one worker process that imports every reader once, then
forks one child per file and reaps it with ``wait4``, so each file gets its own peak RSS
(``ru_maxrss``) and its own wall time. The budget, per file, with ``limit`` the reader's size
limit (``QMROCT_MAX_SCAN_BYTES``):

- wall time at most ``timeout_s`` (the child is killed past it), CPU time capped by RLIMIT_CPU;
- peak RSS above the idle worker's at most ``3 * limit + 32 MiB``: the file's bytes (at most
  ``limit``), the decoded pixels (at most ``limit``, checked before allocation) and one working
  copy, plus interpreter slack.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel

MIB = 1 << 20
DEFAULT_LIMIT = 64 * MIB
SLACK = 32 * MIB


def rss_budget(limit: int) -> int:
    """Peak RSS a child may add over the idle worker's (see the module docstring)."""
    return 3 * limit + SLACK


@dataclass(frozen=True)
class Case:
    name: str  # the file name (odd ones included)
    data: bytes
    expect: str  # "scan", "error" or "any"


class CaseResult(BaseModel):
    name: str
    expect: str
    outcome: str  # "scan", the ScanError subclass, "traceback", "timeout" or "killed"
    message: str = ""
    names_file: bool = True
    seconds: float
    peak_mib: float
    over_idle_mib: float

    def problem(self, budget_mib: float, timeout_s: float) -> str | None:
        """What is wrong with this result, or None."""
        if self.outcome in ("traceback", "timeout", "killed"):
            return f"{self.outcome}: {self.message}"
        if self.expect == "scan" and self.outcome != "scan":
            return f"expected a scan, got {self.outcome}: {self.message}"
        if self.expect == "error" and self.outcome == "scan":
            return "expected a typed error, got a scan"
        if not self.names_file:
            return f"the error does not name the file: {self.message}"
        if self.over_idle_mib > budget_mib:
            return f"peak RSS {self.over_idle_mib:.0f} MiB over idle, budget {budget_mib:.0f}"
        if self.seconds > timeout_s:
            return f"{self.seconds:.1f} s, budget {timeout_s} s"
        return None


# ------------------------------------------------------------------------------ the corpus
@cache
def _vol_bytes() -> bytes:
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.heyex_vol import write_vol

    return write_vol(make_phantom("volume", seed=0)[0])


@cache
def _opt_bytes() -> bytes:
    from qmroct.oct.phantom import make_phantom
    from qmroct.oct.writers.dicom_opt import write_opt

    return write_opt(make_phantom("volume", seed=0)[0])


def _dicom(edit: object) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_opt_bytes()))
    edit(ds)  # type: ignore[operator]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _vol_with(**fields: float) -> bytes:
    from qmroct.oct.readers.heyex_vol import FILE_HEADER

    buf = bytearray(_vol_bytes())
    hdr = FILE_HEADER
    for key, value in fields.items():
        offset = hdr.fields[key][1]
        fmt = {"<u4": "<I", "<i4": "<i", "<f8": "<d", "<u8": "<Q"}[hdr.fields[key][0].str]
        struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


def _vol_pixels(fill: str) -> bytes:
    """The phantom .vol with all pixels, or only the second B-scan's, set to NaN or +inf."""
    import numpy as np

    from qmroct.oct.readers.heyex_vol import FILE_HEADER_BYTES

    data = bytearray(_vol_bytes())
    (w, n, h) = struct.unpack_from("<III", data, 12)
    w_slo, h_slo = struct.unpack_from("<II", data, 48)
    start = FILE_HEADER_BYTES + w_slo * h_slo
    (hdr_size,) = struct.unpack_from("<I", data, start + 12)
    value = {"nan": np.nan, "inf": np.inf}[fill.split("-")[0]]
    record = hdr_size + h * w * 4
    which = range(n) if fill.endswith("all") else [1]
    for i in which:
        at = start + i * record + hdr_size
        data[at : at + h * w * 4] = np.full(h * w, value, "<f4").tobytes()
    return bytes(data)


def _gzip_members(data: bytes, piece: int) -> bytes:
    return b"".join(gzip.compress(data[i : i + piece], 1) for i in range(0, len(data), piece))


def _gzip_bomb(size: int) -> bytes:
    comp = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    parts = [comp.compress(zeros) for _ in range(size // MIB)]
    return b"".join(parts) + comp.flush()


def _deflated_dicom_bomb(pixels: int) -> bytes:
    """A Deflated Explicit VR Little Endian OPT file whose Pixel Data inflates to ``pixels``
    bytes, well within the declared dimensions' limits but past the reader's size limit."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(io.BytesIO(_opt_bytes()))
    del ds.PixelData
    side = 4096
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = side, side, 8, 8, 7
    ds.NumberOfFrames = pixels // (side * side)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [comp.compress(body.getvalue())]
    out.append(comp.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels)))
    zeros = bytes(MIB)
    out += [comp.compress(zeros) for _ in range(pixels // MIB)]
    out.append(comp.flush())
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    return head.getvalue() + b"".join(out)


def _e2e_claiming(h: int, w: int) -> bytes:
    import numpy as np

    from qmroct.oct.readers.heyex_e2e import CHUNK_HEADER, IMAGE_HEADER, TYPE_IMAGE

    chunk = np.zeros(1, CHUNK_HEADER)
    chunk["magic"], chunk["type"], chunk["ind"], chunk["size"] = b"MDbData", TYPE_IMAGE, 1, 20
    img = np.zeros(1, IMAGE_HEADER)
    img["height"], img["width"] = h, w
    return b"CMDb" + b"\0" * 96 + chunk.tobytes() + img.tobytes() + b"\0" * 64


def _topcon_claiming(w: int, h: int, n: int) -> bytes:
    name = b"@IMG_SCAN_03"
    body = struct.pack("<BIIII", 2, w, h, 16, n) + b"\0" * 16
    return (
        b"FOCTFDA\0\0\0\0\0\0\0\0" + bytes([len(name)]) + name + struct.pack("<I", len(body)) + body
    )


def _mutations(data: bytes, span: int, seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(min(span, len(buf)))] = rng.randrange(256)
        out.append(bytes(buf))
    return out


def build_corpus(limit: int = DEFAULT_LIMIT) -> list[Case]:
    """The hostile files, deterministic for a given ``limit``."""
    vol, opt = _vol_bytes(), _opt_bytes()
    cases = [Case("valid.vol", vol, "scan"), Case("valid.dcm", opt, "scan")]
    for cut in (0, 1, 10, 2047, 2100, len(vol) // 2, len(vol) - 1):
        cases.append(Case(f"truncated-{cut}.vol", vol[:cut], "error"))
    for cut in (100, 131, 132, 400, len(opt) // 2, len(opt) - 1):
        cases.append(Case(f"truncated-{cut}.dcm", opt[:cut], "error"))
    for i, data in enumerate(_mutations(vol, 2048 + 512, seed=1, count=8)):
        cases.append(Case(f"mutated-{i}.vol", data, "any"))
    for i, data in enumerate(_mutations(opt, 4000, seed=2, count=8)):
        cases.append(Case(f"mutated-{i}.dcm", data, "any"))
    cases += [
        Case("zero-bscans.vol", _vol_with(n_bscans=0), "error"),
        Case("zero-width.vol", _vol_with(size_x=0), "error"),
        Case("huge-width.vol", _vol_with(size_x=2**31 - 1), "error"),
        Case("huge-volume.vol", _vol_with(size_x=8192, size_y=8192, n_bscans=4096), "error"),
        Case("nan-all.vol", _vol_pixels("nan-all"), "error"),
        Case("nan-one-bscan.vol", _vol_pixels("nan-one"), "error"),
        Case("inf-one-bscan.vol", _vol_pixels("inf-one"), "error"),
        Case("frames-0.dcm", _dicom(lambda ds: setattr(ds, "NumberOfFrames", 0)), "error"),
        Case(
            "frames-huge.dcm", _dicom(lambda ds: setattr(ds, "NumberOfFrames", 2**31 - 1)), "error"
        ),
        Case("frames-more.dcm", _dicom(lambda ds: setattr(ds, "NumberOfFrames", 4000)), "error"),
        Case("rows-0.dcm", _dicom(lambda ds: setattr(ds, "Rows", 0)), "error"),
        Case("rows-huge.dcm", _dicom(lambda ds: setattr(ds, "Rows", 65535)), "error"),
        Case("gzip-bomb.vol", _gzip_bomb(2 * limit + 8 * MIB), "error"),
        Case("gzip-many-members.vol", _gzip_members(vol, 64), "scan"),
        Case("deflate-bomb.dcm", _deflated_dicom_bomb(2 * limit + 16 * MIB), "error"),
        Case("e2e-huge-bscan.e2e", _e2e_claiming(8192, 8192), "error"),
        Case("e2e-zero-bscan.e2e", _e2e_claiming(0, 512), "error"),
        Case("topcon-huge.fda", _topcon_claiming(8192, 8192, 4096), "error"),
        Case("topcon-zero.fda", _topcon_claiming(0, 885, 128), "error"),
        Case("empty.vol", b"", "error"),
        Case("random.bin", random.Random(3).randbytes(4096), "error"),
        Case("dicm-junk.dcm", b"\0" * 128 + b"DICM" + random.Random(4).randbytes(2048), "error"),
        Case("naïve patient ☃ scan.vol", vol, "scan"),
        Case("-rf --no-preserve-root.vol", vol, "scan"),
        Case("line\nbreak.vol", vol[: len(vol) // 3], "error"),
        Case(("x" * 240) + ".vol", vol[:3000], "error"),
        Case("vol-named.dcm", vol, "scan"),
        Case(".hidden", opt, "scan"),
    ]
    return cases


# ------------------------------------------------------------------------------ the runner
def run_corpus(
    cases: list[Case],
    folder: str | Path,
    *,
    limit: int = DEFAULT_LIMIT,
    timeout_s: float = 20.0,
    on_result: object = None,
) -> tuple[float, list[CaseResult]]:
    """Write ``cases`` into ``folder`` and read each in its own child of one worker process.

    Returns the idle worker's RSS (MiB) and one result per case, in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, case in enumerate(cases):
        sub = folder / f"{i:03d}"
        sub.mkdir(exist_ok=True)
        path = sub / case.name
        path.write_bytes(case.data)
        paths.append(str(path))
    request = json.dumps({"paths": paths, "limit": limit, "timeout_s": timeout_s})
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmroct.oct.hostile"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(request)
    proc.stdin.close()
    idle = 0.0
    results: list[CaseResult] = []
    for line in proc.stdout:
        row = json.loads(line)
        if "idle_mib" in row:
            idle = row["idle_mib"]
            continue
        case = cases[len(results)]
        result = CaseResult(expect=case.expect, **row)
        results.append(result)
        if callable(on_result):
            on_result(result)
    proc.wait()
    if len(results) != len(cases):
        raise RuntimeError(f"the fuzz worker stopped after {len(results)} of {len(cases)} files")
    return idle, results


def _read_one(path: str, limit: int) -> dict[str, object]:
    import traceback

    from qmroct.errors import ScanError
    from qmroct.oct.readers import read_scan

    try:
        read_scan(path, max_bytes=limit)
    except ScanError as exc:
        return {
            "outcome": type(exc).__name__,
            "message": str(exc)[:300],
            "names_file": exc.path == path,
        }
    except BaseException:  # noqa: BLE001 - what the corpus exists to catch
        return {"outcome": "traceback", "message": traceback.format_exc()[-1500:]}
    return {"outcome": "scan"}


def _reap(pid: int, deadline: float) -> tuple[int, object, bool]:
    """wait4 with a deadline: (status, rusage, timed out)."""
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return status, usage, False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return status, usage, True
        time.sleep(0.005)


def _child(fd: int, path: str | None, limit: int, cpu_s: int) -> None:
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        row = _read_one(path, limit) if path is not None else {}
        os.write(fd, json.dumps(row).encode())
    finally:
        os._exit(0)


def _worker() -> None:
    """Read the request on stdin; one forked child per file; one JSON line per file out."""
    request = json.loads(sys.stdin.read())
    limit, timeout_s = int(request["limit"]), float(request["timeout_s"])
    # Every reader and what it pulls in is imported before the first fork, so no child pays
    # for imports in its time or its memory.
    import numpy  # noqa: F401
    import pydicom  # noqa: F401
    from pydicom.pixels import get_decoder  # noqa: F401

    import qmroct.oct.readers.dicom_opt
    import qmroct.oct.readers.heyex_e2e
    import qmroct.oct.readers.heyex_vol
    import qmroct.oct.readers.topcon  # noqa: F401
    from qmroct.oct.readers import octconverter_compat

    octconverter_compat.install()
    import oct_converter.readers  # noqa: F401

    def fork(path: str | None) -> tuple[dict[str, object], float, float, bool, int]:
        rfd, wfd = os.pipe()
        began = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            _child(wfd, path, limit, int(timeout_s) + 5)
        os.close(wfd)
        status, usage, late = _reap(pid, began + timeout_s)
        seconds = time.monotonic() - began
        with os.fdopen(rfd, "rb") as fh:
            raw = fh.read()
        row = json.loads(raw) if raw else {}
        peak = usage.ru_maxrss / 1024  # type: ignore[attr-defined]  # KiB on Linux
        return row, seconds, peak, late, status

    _, _, idle, _, _ = fork(None)
    print(json.dumps({"idle_mib": round(idle, 1)}), flush=True)
    for path in request["paths"]:
        row, seconds, peak, late, status = fork(path)
        if late:
            row = {"outcome": "timeout", "message": f"killed after {timeout_s} s"}
        elif not row:
            row = {"outcome": "killed", "message": f"child ended with status {status}"}
        row.update(
            name=Path(path).name,
            seconds=round(seconds, 3),
            peak_mib=round(peak, 1),
            over_idle_mib=round(max(0.0, peak - idle), 1),
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    _worker()

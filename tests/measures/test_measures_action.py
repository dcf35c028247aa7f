"""run_action against a small local HTTP server: GET the scan, PUT the picture and the DICOM."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pydicom
import pytest
from qmroct.measures.action import run_action
from qmroct.oct.phantom import make_phantom, write_phantom
from qmroct.oct.segmentation import segment
from qmroct.results import MeasureActionResult


class _Store:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.types: dict[str, str] = {}


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, _Store]]:
    store = _Store()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            key = self.path.split("?", 1)[0]
            data = store.objects.get(key)
            if data is None:
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b"NoSuchKey")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # noqa: N802
            key = self.path.split("?", 1)[0]
            n = int(self.headers.get("Content-Length") or 0)
            store.objects[key] = self.rfile.read(n)
            store.types[key] = self.headers.get("Content-Type", "")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", store
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def phantom_vol(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    scan, truth, _ = make_phantom("volume", seed=3, defects={"blink": 0.5})
    path = write_phantom(scan, truth, tmp_path_factory.mktemp("ph"), formats=("vol",))[0]
    data = path.read_bytes()
    from qmroct.oct.readers import read_scan

    return data, segment(read_scan(data, name="phantom.vol")).to_bytes()


def _args(base: str, measure: str, **extra: object) -> dict:
    args = {
        "job_key": "job-1",
        "lease_token": "lease-1",
        "scan_hash": "sha256:abc",
        "scan_url": f"{base}/oct-ingest/p/s/e/scan.vol?X-Amz-Signature=secret",
        "scan_name": "scan.vol",
        "picture_url": f"{base}/oct-results/pic.png?X-Amz-Signature=secret",
        "measure": measure,
        "version": "1.0.0",
    }
    args.update(extra)
    return args


def test_run_action_ok_stores_picture_and_reports_resources(server, phantom_vol):
    base, store = server
    store.objects["/oct-ingest/p/s/e/scan.vol"] = phantom_vol[0]
    store.objects["/derived/seg.npz"] = phantom_vol[1]
    args = _args(
        base,
        "blink_motion",
        inputs={"segmentation": f"{base}/derived/seg.npz?sig=1"},
        params={"tukey_k": 2.0},
    )
    result = run_action(args, "blink_motion")
    parsed = MeasureActionResult.model_validate(result)
    assert parsed.status == "ok", parsed.failure
    assert parsed.values["blink_count"] >= 1  # the injected blink
    assert parsed.verdicts[0].verdict == "fail"
    assert parsed.picture_stored and not parsed.dicom_stored
    assert store.objects["/oct-results/pic.png"][:4] == b"\x89PNG"
    assert store.types["/oct-results/pic.png"] == "image/png"
    assert parsed.params["tukey_k"] == 2.0 and parsed.params["min_bscans"] == 5
    src = Path(__import__("qmroct.measures.blink_motion", fromlist=["x"]).__file__).read_bytes()
    assert parsed.code_digest == "sha256:" + hashlib.sha256(src).hexdigest()
    assert parsed.ended_at >= parsed.started_at
    assert parsed.cpu_s > 0 and parsed.max_rss_mb > 0


def test_run_action_uploads_secondary_capture(server, phantom_vol):
    base, store = server
    store.objects["/oct-ingest/p/s/e/scan.vol"] = phantom_vol[0]
    args = _args(base, "signal", dicom_url=f"{base}/oct-results/pic.dcm?sig=2")
    result = MeasureActionResult.model_validate(run_action(args, "signal"))
    assert result.status == "ok", result.failure
    assert result.dicom_stored
    assert store.types["/oct-results/pic.dcm"] == "application/dicom"
    import io

    ds = pydicom.dcmread(io.BytesIO(store.objects["/oct-results/pic.dcm"]))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.Rows > 100 and ds.SamplesPerPixel == 3


def test_run_action_not_applicable_for_a_line_scan(server, tmp_path):
    base, store = server
    scan, truth, _ = make_phantom("line", seed=0)
    store.objects["/oct-ingest/p/s/e/scan.vol"] = write_phantom(
        scan, truth, tmp_path, formats=("vol",)
    )[0].read_bytes()
    result = MeasureActionResult.model_validate(
        run_action(_args(base, "blink_motion"), "blink_motion")
    )
    assert result.status == "not_applicable"
    assert "volume" in result.verdicts[0].reason
    assert not result.picture_stored


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("empty", "UnsupportedFormat"),
        ("garbage", "UnsupportedFormat"),
        ("truncated", "CorruptScan"),
    ],
)
def test_run_action_bad_scan_is_failed_not_raised(server, phantom_vol, kind, expected):
    base, store = server
    payload = {
        "empty": b"",
        "garbage": b"garbage that is no OCT file at all" * 10,
        "truncated": phantom_vol[0][:5000],
    }[kind]
    store.objects["/oct-ingest/p/s/e/scan.vol"] = payload
    result = MeasureActionResult.model_validate(run_action(_args(base, "signal"), "signal"))
    assert result.status == "failed"
    assert result.failure and result.failure.startswith(expected)
    assert "secret" not in result.failure  # the presigned signature never leaks
    assert not result.picture_stored


def test_run_action_missing_object_and_bad_params_fail(server):
    base, _ = server
    result = MeasureActionResult.model_validate(run_action(_args(base, "signal"), "signal"))
    assert result.status == "failed" and "404" in (result.failure or "")
    bad = run_action(_args(base, "signal", params={"max_bscans": -1}), "signal")
    assert bad["status"] == "failed" and "max_bscans" in bad["failure"]


def test_run_action_refuses_code_other_than_the_published(server):
    base, _ = server
    res = run_action(
        _args(base, "signal", version="1.2.0", code_digest="sha256:" + "0" * 64), "signal"
    )
    assert (
        res["status"] == "failed"
        and "1.2.0" in res["failure"]
        and "wsk action update" in res["failure"]
    )
    res = run_action(_args(base, "signal"), "sharpness")
    assert res["status"] == "failed" and "this action runs sharpness" in res["failure"]
    # An invocation that names no job cannot be recorded: an application error for OpenWhisk.
    assert "error" in run_action({"measure": "signal"}, "signal")


def test_run_action_labels_a_parameter_only_version_with_the_published_version(server, phantom_vol):
    from qmroct.measures.action import code_digest
    from qmroct.measures.base import get_measure

    base, store = server
    store.objects["/oct-ingest/p/s/e/scan.vol"] = phantom_vol[0]
    digest = code_digest(get_measure("signal"))
    res = run_action(
        _args(base, "signal", version="1.3.0", code_digest=digest, params={"max_bscans": 8}),
        "signal",
    )
    assert res["status"] == "ok" and res["version"] == "1.3.0" and res["params"]["max_bscans"] == 8


def test_action_files_are_thin(repo_root):
    for name in (
        "signal", "sharpness", "completeness", "blink_motion", "centration",
        "segmentation", "illumination", "beam_placement", "pathology_flag",
    ):  # fmt: skip
        text = (repo_root / "functions" / "measures" / name / "__main__.py").read_text()
        assert f'run_action(args, "{name}")' in text
        assert len(text.splitlines()) <= 20


def test_run_action_reads_the_stored_context_and_never_the_scan(server, phantom_vol):
    """Every measure of the suite, from the stored context alone: the raw B-scans are not
    stored, and no measure may need them (reading them would fetch the deleted scan)."""
    from qmroct.measures.base import registry
    from qmroct.measures.context import ScanContext
    from qmroct.oct.readers import read_scan

    base, store = server
    scan = read_scan(phantom_vol[0], name="phantom.vol")
    stored = ScanContext.build(scan).to_bytes()
    assert "bscans" not in np.load(io.BytesIO(stored)).files
    store.objects["/derived/ctx.npz"] = stored
    store.objects["/derived/seg.npz"] = phantom_vol[1]
    names = sorted(registry())
    assert len(names) >= 9
    from_scan = {}
    for name in names:
        store.objects["/oct-ingest/p/s/e/scan.vol"] = phantom_vol[0]
        args = _args(base, name, inputs={"segmentation": f"{base}/derived/seg.npz?s=1"})
        from_scan[name] = run_action(args, name)
    # The scan object is gone: only the stored context can give the result.
    del store.objects["/oct-ingest/p/s/e/scan.vol"]
    for name in names:
        args = _args(base, name, inputs={"segmentation": f"{base}/derived/ctx.npz?s=1"})
        from_context = run_action(args, name)
        assert from_context["status"] != "failed", (name, from_context.get("failure"))
        assert from_context["values"] == from_scan[name]["values"], name
        assert from_context["verdicts"] == from_scan[name]["verdicts"], name


def test_stored_context_reads_the_raw_bscans_from_the_scan_only_when_asked(phantom_vol):
    from qmroct.errors import QmroctError
    from qmroct.measures.context import ScanContext
    from qmroct.oct.readers import read_scan

    scan = read_scan(phantom_vol[0], name="phantom.vol")
    stored = ScanContext.build(scan).to_bytes()
    reads: list[int] = []

    def load() -> np.ndarray:
        reads.append(1)
        return read_scan(phantom_vol[0], name="phantom.vol").bscans

    ctx = ScanContext.from_bytes(stored, source="ctx of phantom.vol", bscans=load)
    assert ctx.scan.shape == scan.shape and ctx.height == scan.shape[1] and not reads
    assert np.array_equal(ctx.scan.bscans, scan.bscans, equal_nan=True)
    assert np.array_equal(ctx.scan.bscans, scan.bscans, equal_nan=True) and reads == [1]
    # Without a scan to read them from, or with another scan's, the error names the context.
    bare = ScanContext.from_bytes(stored, source="ctx of phantom.vol")
    with pytest.raises(QmroctError, match="ctx of phantom.vol.*no raw B-scans"):
        _ = bare.scan.bscans
    other = ScanContext.from_bytes(
        stored, source="ctx of phantom.vol", bscans=lambda: np.zeros((1, 2, 3))
    )
    with pytest.raises(QmroctError, match="ctx of phantom.vol.*do not match"):
        _ = other.scan.bscans


def _outputs_equal(a, b, name: str) -> None:
    assert a.values == b.values, name
    assert a.verdicts == b.verdicts, name
    assert a.notes == b.notes, name
    assert (a.picture_rgb is None) == (b.picture_rgb is None), name
    if a.picture_rgb is not None:
        assert np.array_equal(a.picture_rgb, b.picture_rgb), name


def _without(stored: bytes, *members: str) -> bytes:
    """The stored context with ``members`` left out: what an earlier product version stored."""
    with np.load(io.BytesIO(stored), allow_pickle=False) as z:
        kept = {k: z[k] for k in z.files if k not in members}
    buf = io.BytesIO()
    np.savez(buf, **kept)
    return buf.getvalue()


def test_every_measure_gives_the_same_result_from_the_stored_context_as_in_process(phantom_vol):
    """Product version 6: the linear image is computed once by the derive action and stored;
    every measure computed from the stored context (arrays viewed in the downloaded bytes,
    nothing rebuilt that is stored) gives exactly what it gives in-process from the scan, as
    ``qmroct measure run`` and the pool compute it. An earlier context (no linear image) and a
    compressed one load too, and give the same."""
    from qmroct.measures.base import get_measure, registry
    from qmroct.measures.context import ScanContext
    from qmroct.metrics.intensity import to_linear
    from qmroct.oct.readers import read_scan

    scan = read_scan(phantom_vol[0], name="phantom.vol")
    in_process = ScanContext.build(scan)
    stored = in_process.to_bytes()
    ctx = ScanContext.from_bytes(stored)
    # Stored, and loaded as read-only views of the downloaded bytes, not copies.
    assert "linear_and_name" in ctx.__dict__ and "retina" not in ctx.__dict__
    linear, name = ctx.linear_and_name
    assert not linear.flags.writeable and not linear.flags.owndata
    assert not ctx.display.flags.writeable and not ctx.display.flags.owndata
    # The small arrays are the context's own: a segmentation kept alone holds no 50 MB object.
    assert all(getattr(ctx.segmentation, k).flags.owndata for k in ("ilm", "bm", "confidence"))
    expect, expect_name = to_linear(in_process.display, scan.meta.scale)
    assert name == expect_name and np.array_equal(linear, expect, equal_nan=True)
    v3 = _without(stored, "linear", "linear_name")
    compressed = io.BytesIO()
    with np.load(io.BytesIO(stored), allow_pickle=False) as z:
        np.savez_compressed(compressed, **{k: z[k] for k in z.files})
    for name in sorted(registry()):
        m = get_measure(name)
        params = m.parse_params(None)
        want = m.compute(scan, params, {"context": ScanContext.build(scan)})
        for blob in (stored, v3, compressed.getvalue()):
            fresh = ScanContext.from_bytes(blob, source="ctx")
            _outputs_equal(m.compute(fresh.scan, params, {"context": fresh}), want, name)


def test_a_vendor_display_scan_stores_no_separate_linear_image(phantom_vol):
    """Where the linear estimate is the display image itself (a vendor display map), storing
    it again would double the download for nothing."""
    from qmroct.measures.context import ScanContext
    from qmroct.oct.model import IntensityScale, Scan
    from qmroct.oct.readers import read_scan

    read = read_scan(phantom_vol[0], name="phantom.vol")
    meta = read.meta.model_copy(update={"scale": IntensityScale.DISPLAY_UINT8})
    scan = Scan(meta=meta, bscans=read.bscans * 255.0 / np.nanmax(read.bscans))
    stored = ScanContext.build(scan).to_bytes()
    assert "linear" not in np.load(io.BytesIO(stored)).files
    ctx = ScanContext.from_bytes(stored)
    assert ctx.linear_and_name[1] == "display(unknown map)"
    assert np.array_equal(ctx.linear_and_name[0], ctx.display, equal_nan=True)


def test_a_stored_context_whose_member_lies_about_its_size_is_refused(phantom_vol):
    from qmroct.errors import QmroctError
    from qmroct.measures.context import ScanContext
    from qmroct.oct.readers import read_scan

    stored = ScanContext.build(read_scan(phantom_vol[0], name="phantom.vol")).to_bytes()
    # The display member's .npy header claims one B-scan more than its bytes hold.
    with np.load(io.BytesIO(stored), allow_pickle=False) as z:
        n = z["display"].shape[0]
    head = f"'shape': ({n}, ".encode()
    assert stored.count(head) >= 1
    forged = stored.replace(head, f"'shape': ({n + 1}, ".encode(), 1)
    with pytest.raises(QmroctError, match="ctx of scan.vol"):
        ScanContext.from_bytes(forged, source="ctx of scan.vol")


def test_run_action_fails_on_a_corrupt_context_naming_the_scan(server, phantom_vol):
    from qmroct.measures.context import ScanContext
    from qmroct.oct.readers import read_scan

    base, store = server
    good = ScanContext.build(read_scan(phantom_vol[0], name="phantom.vol")).to_bytes()
    store.objects["/derived/ctx.npz"] = good[: len(good) // 2]  # cut short
    res = run_action(
        _args(base, "signal", inputs={"segmentation": f"{base}/derived/ctx.npz?s=1"}), "signal"
    )
    assert res["status"] == "failed"
    assert "derived segmentation of scan.vol" in res["failure"]


def test_secondary_capture_holds_the_picture_pixels(server, phantom_vol):
    from qmroct import pictures

    base, store = server
    store.objects["/oct-ingest/p/s/e/scan.vol"] = phantom_vol[0]
    args = _args(base, "sharpness", dicom_url=f"{base}/oct-results/pic.dcm?sig=2")
    assert run_action(args, "sharpness")["dicom_stored"]
    ds = pydicom.dcmread(io.BytesIO(store.objects["/oct-results/pic.dcm"]))
    png = pictures.from_png(store.objects["/oct-results/pic.png"])
    assert (ds.pixel_array == png).all()


def test_a_measure_action_starts_without_the_libraries_it_does_not_use(repo_root):
    """What the action's __main__ runs at /init imports its own measure, not the other eight,
    nor a DICOM library, an HTTP library beyond the standard one, or the settings."""
    import subprocess
    import sys

    code = (
        "import sys; from qmroct.measures.action import warm; warm('signal'); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    assert "qmroct.measures.signal" in loaded and "scipy.ndimage" in loaded
    others = {f"qmroct.measures.{m}" for m in ("sharpness", "pathology_flag", "suite")}
    heavy = {"pydicom", "highdicom", "requests", "urllib3", "pydantic_settings", "qmroct.config"}
    assert loaded.isdisjoint(others | heavy), sorted(loaded & (others | heavy))
    # The derive action: its producer's imports at /init, the same libraries left out.
    main = repo_root / "functions" / "orchestration" / "derive_segmentation" / "__main__.py"
    code = f"import runpy, sys; runpy.run_path({str(main)!r}); print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    assert {"qmroct.measures.context", "qmroct.oct.readers.dispatch"} <= loaded
    assert loaded.isdisjoint(heavy), sorted(loaded & heavy)


_REFAULT = """
import resource, sys
import numpy as np
if sys.argv[1] == "kept":
    from qmroct.measures.action import warm
    warm("completeness")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(64 << 20, dtype=np.uint8)  # a volume-sized block, allocated, touched and freed
f0 = faults()
np.ones(64 << 20, dtype=np.uint8)  # the same again: refaulted unless the heap kept it
print(faults() - f0)
"""


@pytest.mark.parametrize("mode", ["kept", "default"])
def test_a_warm_action_container_reuses_its_freed_memory(mode):
    """After warm() (what a measure's __main__ runs at /init), a second volume-sized array
    comes from memory the process already has: no page faults (qmroct.heap). Without it,
    glibc maps and unmaps such a block each time and the 64 MiB are faulted in again."""
    import os
    import subprocess
    import sys

    # Plain pages in both runs, so that the faults count pages (huge pages fault 512 at once).
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}
    out = subprocess.run([sys.executable, "-c", _REFAULT, mode], capture_output=True,
                         text=True, check=True, env=env).stdout  # fmt: skip
    refaults = int(out.split()[-1])
    pages = (64 << 20) // 4096
    if mode == "kept":
        assert refaults < pages // 20, refaults
    else:
        assert refaults > pages // 10, refaults

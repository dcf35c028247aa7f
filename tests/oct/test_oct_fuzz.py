"""Fuzz the readers with mutated real headers: a Scan or a typed error, nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qmroct.errors import ScanError
from qmroct.oct.phantom import make_phantom
from qmroct.oct.readers import read_scan
from qmroct.oct.writers.dicom_opt import write_opt

_VOL_BSCAN = 2048 + 768 * 768  # the first B-scan header of the .vol samples
# file -> byte ranges holding headers (sizes, offsets, magic numbers) worth mutating
TARGETS = {
    "heidelberg_vol/Willis_B_716_2.vol": [(0, 300), (_VOL_BSCAN, _VOL_BSCAN + 256)],
    "heidelberg_e2e/e2e_minimized.E2E": [(0, 450)],
    "topcon/fda_minimized.fda": [(0, 2000)],
    "topcon/fds_minimized.fds": [(0, 2000)],
}
LIMIT = 64 * 1024 * 1024
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
mutations = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1 << 30), st.integers(0, 255)),
    min_size=1,
    max_size=8,
)


def _mutate(
    data: bytes, ranges: list[tuple[int, int]], edits: list[tuple[int, int]], cut: int | None
) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        lo, hi = ranges[pos % len(ranges)]
        buf[lo + (pos // len(ranges)) % (hi - lo)] = value
    if cut is not None:
        buf = buf[: cut % (len(buf) + 1)]
    return bytes(buf)


def _check(data: bytes, name: str) -> None:
    try:
        scan = read_scan(data, name=name, max_bytes=LIMIT)
    except ScanError as exc:
        assert exc.path == name and exc.reason
        return
    assert scan.bscans.ndim == 3 and np.isfinite(scan.bscans).any()
    assert scan.shape == (scan.meta.n_bscans, scan.meta.height, scan.meta.width)


@pytest.mark.parametrize("rel", sorted(TARGETS))
def test_mutated_sample_headers(samples_dir: Path, rel: str) -> None:
    data = (samples_dir / rel).read_bytes()
    ranges = TARGETS[rel]

    @FUZZ
    @given(edits=mutations, cut=st.one_of(st.none(), st.integers(0, 1 << 24)))
    def run(edits: list[tuple[int, int]], cut: int | None) -> None:
        _check(_mutate(data, ranges, edits, cut), f"fuzz-{Path(rel).name}")

    run()


def test_mutated_dicom_opt() -> None:
    scan, _, _ = make_phantom("line", seed=0)
    data = write_opt(scan)

    @FUZZ
    @given(edits=mutations, cut=st.one_of(st.none(), st.integers(0, 1 << 22)))
    def run(edits: list[tuple[int, int]], cut: int | None) -> None:
        _check(_mutate(data, [(0, 4000)], edits, cut), "fuzz.dcm")

    run()


@FUZZ
@given(st.binary(min_size=0, max_size=600))
def test_random_bytes(blob: bytes) -> None:
    _check(blob, "random.bin")

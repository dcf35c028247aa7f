"""Every activation record carries what its run used, beside OpenWhisk's waitTime and
initTime: runTime, cpuTime, peakMemory, bytesRead, bytesWritten."""

from __future__ import annotations

from qmroct.runtime import EmbeddedWhisk

KEYS = ("runTime", "cpuTime", "peakMemory", "bytesRead", "bytesWritten")


def test_records_carry_the_runs_resources(whisk: EmbeddedWhisk) -> None:
    whisk.invoke("hog", {"mb": 1})  # warm: the next runs measure only themselves
    big = whisk.invoke("hog", {"mb": 300})
    small = whisk.invoke("hog", {"mb": 1})
    for rec in (big, small):
        assert rec.response.success, rec.response.result
        for key in KEYS:
            assert isinstance(rec.annotation(key), int), (key, rec.annotations)
        assert rec.annotation("runTime") <= rec.duration + 1
    # Filling 300 MB is CPU work and a 300 MB peak; the next run's peak starts afresh.
    assert big.annotation("cpuTime") > 0
    assert big.annotation("peakMemory") >= 300 * 2**20
    assert small.annotation("peakMemory") < big.annotation("peakMemory") - 250 * 2**20
    # The run ends with the log sentinels written to the container's stdout and stderr pipes.
    assert big.annotation("bytesWritten") > 0


def _rec(name: str, result: dict, **ann: int) -> object:
    from qmroct.runtime.records import ActivationRecord, ActivationResponse, KeyValue

    return ActivationRecord(
        activationId="a" * 32,
        name=name,
        namespace="guest/qmroct",
        version="0.0.3",
        start=1000,
        end=1100,
        duration=100,
        response=ActivationResponse.of(0, result),
        annotations=[KeyValue(key=k, value=v) for k, v in ann.items()],
    )


def test_rollup_per_measure_version(tmp_path) -> None:
    from click.testing import CliRunner
    from qmroct.cli.main import cli
    from qmroct.runtime.records import ActivationStore
    from qmroct.runtime.usage import rollup

    common = {"waitTime": 5, "bytesRead": 10, "bytesWritten": 20}
    recs = [
        _rec(
            "measure-signal",
            {"version": "1.0.0"},
            cpuTime=100,
            peakMemory=100 * 2**20,
            runTime=150,
            initTime=300,
            **common,
        ),
        _rec(
            "measure-signal",
            {"version": "1.0.0"},
            cpuTime=300,
            peakMemory=300 * 2**20,
            runTime=350,
            **common,
        ),
        _rec(
            "measure-signal",
            {"version": "1.1.0"},
            cpuTime=50,
            peakMemory=50 * 2**20,
            runTime=60,
            **common,
        ),
        _rec("scheduler", {"claimed": 1}, cpuTime=7, peakMemory=2**20, runTime=9, **common),
    ]
    rows = {(r.action, r.version): r for r in rollup(recs)}
    old = rows[("measure-signal", "1.0.0")]
    assert (old.activations, old.cold, old.cpu_ms_p50, old.cpu_ms_total) == (2, 1, 200.0, 400)
    assert (old.peak_memory_mb_p50, old.peak_memory_mb_max) == (200.0, 300.0)
    assert (old.run_ms_p50, old.run_ms_p95, old.init_ms_p50) == (250.0, 350.0, 300.0)
    assert old.bytes_read_total == 20 and old.bytes_written_total == 40
    assert rows[("measure-signal", "1.1.0")].activations == 1
    assert rows[("scheduler", "0.0.3")].init_ms_p50 is None  # not a measure: the entity version

    store = ActivationStore(tmp_path)
    for i, r in enumerate(recs):
        store.put(r.model_copy(update={"activationId": f"{i:032x}", "start": 1000 + i}))
    store.close()
    res = CliRunner().invoke(cli, ["activations", "--home", str(tmp_path), "--summary"])
    assert res.exit_code == 0, res.output
    assert "measure-signal" in res.output and "1.1.0" in res.output

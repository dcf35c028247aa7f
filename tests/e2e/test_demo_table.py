"""The demo's table: which value stands beside a verdict."""

from infra.embedded.demo import DemoReport, DemoScan, format_table


def _report(verdicts: list[dict[str, object]]) -> DemoReport:
    result = {
        "status": "ok",
        "values": {"bm_jump_fraction": 0.0, "ilm_jump_fraction": 0.21},
        "verdicts": verdicts,
    }
    scan = DemoScan(
        key="scans/ses-a/scan.vol",
        scan_hash="h",
        pattern="line",
        injected={},
        results={"segmentation": result},
    )
    return DemoReport(scans=[scan], measures=["segmentation"], failed=0, seconds=1.0, home="/x")


def test_a_warning_shows_the_value_that_decided_it() -> None:
    table = format_table(
        _report(
            [
                {"criterion": "O", "verdict": "pass", "graded_by": "bm_jump_fraction"},
                {"criterion": "A", "verdict": "warn", "graded_by": "ilm_jump_fraction"},
            ]
        )
    )
    assert "ilm_jump_fraction=0.21 warn" in table
    assert "bm_jump_fraction" not in table.splitlines()[2]


def test_a_pass_shows_the_headline_value() -> None:
    table = format_table(
        _report([{"criterion": "A", "verdict": "pass", "graded_by": "ilm_jump_fraction"}])
    )
    assert "bm_jump_fraction=0 ok" in table

"""OpenWhisk semantics of the embedded runtime, on throwaway actions (tests/runtime/conftest.py)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.runtime import EmbeddedWhisk, messages
from qmroct.runtime.controller import BadRequest, PayloadTooLarge
from qmroct.runtime.entities import ActionPut
from qmroct.runtime.records import ActivationStore, read_activations


def _healthy(whisk: EmbeddedWhisk) -> None:
    """The runtime keeps serving after whatever the previous test did to a container."""
    record = whisk.invoke("add_one", {"n": 41})
    assert record.response.success and record.response.result["n"] == 42


def test_warm_reuse_and_cold_start_annotations(whisk: EmbeddedWhisk) -> None:
    whisk.controller.put_action("rt/echo", ActionPut())  # fresh version: the next run is cold
    first = whisk.invoke("echo", {"x": 1})
    second = whisk.invoke("echo", {"x": 2})
    assert first.response.success and second.response.success
    assert first.annotation("initTime") is not None
    assert second.annotation("initTime") is None
    assert isinstance(second.annotation("waitTime"), int)
    assert second.annotation("limits") == {
        "timeout": 10000,
        "memory": 128,
        "logs": 1,
        "concurrency": 1,
    }
    assert second.annotation("path") == "guest/rt/echo"
    # Same process, module globals kept: module-level code ran once.
    assert first.response.result["pid"] == second.response.result["pid"]
    assert second.response.result["calls"] == first.response.result["calls"] + 1
    assert any("module level ran" in line for line in first.logs)
    assert not any("module level ran" in line for line in second.logs)
    assert any("stderr: to stderr" in line for line in second.logs)


def test_parameters_merge_package_action_invoke(whisk: EmbeddedWhisk) -> None:
    args = whisk.invoke("echo", {"other": "from-invoke"}).response.result["args"]
    assert args == {"pkg_param": "from-package", "bound": "bound-from-env", "other": "from-invoke"}


def test_environment_is_scrubbed_and_api_key_only_when_annotated(whisk: EmbeddedWhisk) -> None:
    env = whisk.invoke("echo").response.result["env"]
    assert "PATH" not in env and "HOME" not in env
    assert all(k.startswith("__OW_") or k == "PYTHONIOENCODING" for k in env)
    assert env["__OW_API_HOST"] == whisk.api_host
    assert env["__OW_NAMESPACE"] == "guest"
    assert "__OW_API_KEY" not in env
    keyed = whisk.invoke("keyed").response.result["env"]
    assert keyed["__OW_API_KEY"] == whisk.auth


def test_action_imports_qmroct_from_its_zip(whisk: EmbeddedWhisk) -> None:
    path = whisk.invoke("which_qmroct").response.result["file"]
    assert "/containers/" in path and path.endswith("qmroct/__init__.py")


def test_non_dict_result_is_developer_error(whisk: EmbeddedWhisk) -> None:
    response = whisk.invoke("not_dict").response
    assert (response.statusCode, response.result) == (2, {"error": messages.NOT_DICT})
    _healthy(whisk)


def test_exception_is_application_error_with_traceback(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("boom", {"why": "bad scan"})
    assert record.response.statusCode == 1
    assert record.response.status == "application error"
    assert record.response.result == {"error": "boom: bad scan"}
    assert any("stderr: Traceback" in line for line in record.logs)


def test_timeout_destroys_container(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("sleeper", {"seconds": 5})
    assert record.response.statusCode == 2
    assert record.response.result == {"error": messages.timed_out(1000)}
    assert record.annotation("timeout") is True
    assert any("going to sleep" in line for line in record.logs)
    again = whisk.invoke("sleeper", {"seconds": 0.05})
    assert again.response.success and again.annotation("initTime") is not None
    _healthy(whisk)


def test_memory_limit(whisk: EmbeddedWhisk) -> None:
    # The limit is on resident memory, as the cgroup's: numpy and scipy hold ~105 MB of it.
    fits = whisk.invoke("hog", {"mb": 300})
    assert fits.response.success, fits.response.result
    assert fits.response.result == {"allocated_mb": 300}
    over = whisk.invoke("hog", {"mb": 700})
    assert over.response.statusCode == 2
    assert over.response.result == {"error": messages.OUT_OF_MEMORY}
    assert any("MemoryError" in line for line in over.logs)
    assert whisk.invoke("hog", {"mb": 10}).response.success
    _healthy(whisk)


def test_twenty_megabytes_of_prints_are_truncated(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("printer", {"lines": 20000})
    assert record.response.success
    assert record.logs[-1] == messages.logs_truncated(1024 * 1024)
    kept = sum(len(line.split(": ", 1)[1]) + 1 for line in record.logs[:-1])
    assert 1000 * 1000 < kept <= 1024 * 1024
    _healthy(whisk)


def test_output_without_final_newline_is_kept(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("no_newline")
    assert record.response.success
    # The sentinel shares the line; it is found and cut off, the output kept.
    assert record.logs[-1].endswith("stdout: partial line")


def test_five_megabyte_result_is_refused(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("big_result")
    assert record.response.statusCode == 2
    error = record.response.result["error"]
    assert error.startswith("The action produced a response that exceeded the allowed length: ")
    assert error.endswith(" > 1048576 bytes.")
    _healthy(whisk)


def test_oversized_parameters_are_refused(whisk: EmbeddedWhisk) -> None:
    with pytest.raises(PayloadTooLarge, match=r"> 1048576 bytes"):
        whisk.invoke("echo", {"blob": "z" * (1024 * 1024 + 1)})


@pytest.mark.parametrize("how", [{}, {"signal": True}])
def test_crash_gives_clear_error_and_runtime_keeps_serving(whisk: EmbeddedWhisk, how: dict) -> None:
    record = whisk.invoke("crash", how)
    assert record.response.statusCode == 2
    expected = "SIGKILL" if how else "exit status 3"
    assert messages.ABNORMAL_EXIT in record.response.result["error"]
    assert expected in record.response.result["error"]
    assert whisk.invoke("crash", how).annotation("initTime") is not None  # a new container
    _healthy(whisk)


def test_sequence_passes_results_and_lists_components(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("plus_two", {"n": 1})
    assert record.response.success and record.response.result["n"] == 3
    assert record.annotation("kind") == "sequence" and record.annotation("topmost") is True
    assert len(record.logs) == 2
    components = [whisk.activation(i) for i in record.logs]
    assert [c.response.result["n"] for c in components] == [2, 3]
    assert all(c.cause == record.activationId for c in components)


def test_sequence_stops_at_first_error(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("broken_chain", {"n": 1})
    assert record.response.statusCode == 1
    assert record.response.result == {"error": "boom: no reason"}
    assert len(record.logs) == 2  # add_one, boom; the last add_one never ran


def test_final_inputs_cannot_be_overridden(whisk: EmbeddedWhisk) -> None:
    with pytest.raises(BadRequest, match=r"not allowed \(e.g., reserved properties\)"):
        whisk.invoke("guarded", {"secret": "attacker"})
    assert whisk.invoke("guarded", {"n": 1}).response.result["secret"] == "bound-secret"
    # Through a sequence, the previous result carries "secret": the bound value still wins.
    seq = whisk.invoke("plus_guarded", {"n": 1, "secret": "attacker"})
    assert seq.response.result == {"n": 3, "secret": "bound-secret"}


def test_trigger_fires_every_active_rule(whisk: EmbeddedWhisk) -> None:
    trigger_id = whisk.fire_trigger(
        "poke", {"body": 1, "from_trigger": "overridden"}, {"x-hook": "h"}
    )
    assert trigger_id is not None
    trigger = whisk.wait_for(trigger_id)
    fired = {json.loads(line)["rule"]: json.loads(line) for line in trigger.logs}
    assert set(fired) == {"guest/poke-echo", "guest/poke-add"}
    echo = whisk.wait_for(fired["guest/poke-echo"]["activationId"])
    args = echo.response.result["args"]
    assert args["body"] == 1 and args["from_trigger"] == "overridden"
    assert args["__ow_headers"] == {"x-hook": "h"}
    assert "__ow_headers" not in json.dumps(trigger.response.result)


def test_trigger_without_active_rule_fires_nothing(whisk: EmbeddedWhisk) -> None:
    assert whisk.fire_trigger("lonely", {}) is None
    whisk.controller.set_rule_state("poke-echo", False)
    whisk.controller.set_rule_state("poke-add", False)
    try:
        assert whisk.fire_trigger("poke", {}) is None
    finally:
        whisk.controller.set_rule_state("poke-echo", True)
        whisk.controller.set_rule_state("poke-add", True)


def test_alarm_feed_fires_its_rule(whisk: EmbeddedWhisk) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ticks = [r for r in whisk.activations(name="tick", limit=5)]
        if ticks:
            break
        time.sleep(0.1)
    assert ticks, "the alarm feed never fired"
    rule = json.loads(ticks[0].logs[0])
    assert rule["action"] == "guest/rt/add_one"
    assert whisk.wait_for(rule["activationId"]).response.result["n"] == 1


def test_update_bumps_version_and_forces_cold_start(whisk: EmbeddedWhisk) -> None:
    before = whisk.controller.get_action("rt/add_one").version
    whisk.invoke("add_one")
    updated = whisk.controller.put_action("rt/add_one", ActionPut())
    major, minor, patch = before.split(".")
    assert updated.version == f"{major}.{minor}.{int(patch) + 1}"
    record = whisk.invoke("add_one")
    assert record.version == updated.version
    # The alarm's rule may have run the new version first: whichever did, it started cold.
    runs = whisk.activations(name="rt/add_one", limit=50)
    first = min((r for r in runs if r.version == updated.version), key=lambda r: r.start)
    assert first.annotation("initTime") is not None


def test_records_are_readable_from_another_process(whisk: EmbeddedWhisk) -> None:
    record = whisk.invoke("add_one", {"n": 7})
    again = ActivationStore(whisk.home).get(record.activationId)
    assert again == record
    result = CliRunner().invoke(
        cli,
        [
            "activations",
            "--home",
            str(whisk.home),
            "--name",
            "rt/add_one",
            "--limit",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        read_activations(whisk.home, name="rt/add_one", limit=1)[0]["activationId"]
        == record.activationId
    )
    listed = json.loads(result.output)
    assert listed[0]["activationId"] == record.activationId
    assert listed[0]["response"]["result"]["n"] == 8

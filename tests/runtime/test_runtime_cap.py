"""The user-memory cap (429 when every slot is busy) and the idle reaper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from qmroct.runtime import EmbeddedWhisk, messages
from qmroct.runtime.invoker import Throttled


@pytest.fixture(scope="module")
def small(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWhisk]:
    # Room for two 128 MB containers; idle ones go after half a second.
    stack = EmbeddedWhisk(
        project, tmp_path_factory.mktemp("cap-home"), {}, user_memory_mb=256, idle_timeout_s=0.5
    )
    with stack:
        yield stack


def test_429_at_the_memory_cap_then_serves_again(small: EmbeddedWhisk) -> None:
    first = small.invoke_async("sleeper", {"seconds": 0.7})
    second = small.invoke_async("sleeper", {"seconds": 0.7})
    with pytest.raises(Throttled) as refused:
        small.invoke("add_one")
    assert str(refused.value) == messages.too_many_concurrent(2, 2)
    resp = requests.post(
        f"{small.api_host}/api/v1/namespaces/_/actions/rt/add_one?blocking=true",
        json={},
        auth=tuple(small.auth.split(":", 1)),
        timeout=10,
    )
    assert resp.status_code == 429
    assert resp.json()["error"].startswith("Too many concurrent requests in flight")
    assert small.wait_for(first).response.success and small.wait_for(second).response.success
    # Idle sleeper containers are evicted to make room for another action.
    assert small.invoke("add_one").response.success


def test_throttled_rule_is_dropped_and_recorded(small: EmbeddedWhisk) -> None:
    busy = [small.invoke_async("sleeper", {"seconds": 0.7}) for _ in range(2)]
    trigger_id = small.fire_trigger("poke", {})
    assert trigger_id is not None  # the fire itself is accepted, as OpenWhisk accepts it
    logs = small.wait_for(trigger_id).logs
    assert all('"success": false' in line and "Too many concurrent" in line for line in logs)
    for activation_id in busy:
        small.wait_for(activation_id)


def test_idle_containers_are_reaped(small: EmbeddedWhisk) -> None:
    assert small.invoke("add_one").response.success
    assert small.controller.invoker.containers()
    deadline = time.monotonic() + 5
    while small.controller.invoker.containers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert small.controller.invoker.containers() == []
    record = small.invoke("add_one")
    assert record.annotation("initTime") is not None  # reaped: the next one starts cold

"""The alarm feed's cron expressions."""

from __future__ import annotations

from datetime import datetime

import pytest
from qmroct.errors import ConfigError
from qmroct.runtime.alarms import Cron


def test_cron_fields() -> None:
    cron = Cron("*/15 2 * * 1-5")
    assert cron.matches(datetime(2026, 11, 23, 2, 30))  # a Monday
    assert not cron.matches(datetime(2026, 11, 23, 2, 31))
    assert not cron.matches(datetime(2026, 11, 22, 2, 30))  # a Sunday
    assert Cron("* * * * *").matches(datetime(2026, 1, 1, 0, 0))
    assert Cron("0 0 1,15 * 0").matches(datetime(2026, 11, 15, 0, 0))


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "a * * * *"])
def test_bad_cron_is_refused(expr: str) -> None:
    with pytest.raises(ConfigError, match="cron"):
        Cron(expr)

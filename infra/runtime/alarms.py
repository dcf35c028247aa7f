"""The alarm feed (``/whisk.system/alarms/alarm``): fires a trigger on its cron schedule.

The embedded stack may override the schedule with a fixed interval in seconds, so demos and
tests see ticks every few seconds instead of every minute.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from qmroct.errors import ConfigError

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _field(expr: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in expr.split(","):
        body, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if body in ("*", ""):
            first, last = lo, hi
        elif "-" in body:
            a, b = body.split("-", 1)
            first, last = int(a), int(b)
        else:
            first = int(body)
            last = hi if step_s else first
        if first < lo or last > hi or step < 1:
            raise ValueError(f"{part!r} outside {lo}-{hi}")
        out.update(range(first, last + 1, step))
    return out


class Cron:
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""

    def __init__(self, expr: str) -> None:
        fields = expr.split()
        if len(fields) != 5:
            raise ConfigError(f"cron {expr!r}: expected 5 fields, got {len(fields)}")
        try:
            self.sets = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
        except ValueError as exc:
            raise ConfigError(f"cron {expr!r}: {exc}") from exc
        self.expr = expr

    def matches(self, when: datetime) -> bool:
        minute, hour, dom, month, dow = self.sets
        return (
            when.minute in minute
            and when.hour in hour
            and when.day in dom
            and when.month in month
            and (when.isoweekday() % 7) in dow
        )


class AlarmFeed:
    """A thread that calls ``fire()`` on the cron schedule, or every ``interval_s`` seconds."""

    def __init__(
        self, fire: Callable[[], object], cron: str, interval_s: float | None = None
    ) -> None:
        self.cron = Cron(cron)
        self.interval_s = interval_s
        self._fire = fire
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alarm", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        last_minute = None
        while True:
            if self.interval_s is not None:
                if self._stop.wait(self.interval_s):
                    return
                self._safe_fire()
                continue
            # Wake at the next whole minute and fire when the cron matches it.
            if self._stop.wait(60 - time.time() % 60 + 0.01):
                return
            # The alarms provider reads cron in UTC.
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            if now != last_minute and self.cron.matches(now):
                last_minute = now
                self._safe_fire()

    def _safe_fire(self) -> None:
        try:
            self._fire()
        except Exception as exc:  # noqa: BLE001 - a failed fire must not stop the feed
            print(f"alarm feed ({self.cron.expr}): fire failed: {exc}", file=sys.stderr)

"""Invoking actions and reading activation records through the OpenWhisk client.

The client's responses and records are read by field name, whether they arrive as models or as
the REST API's JSON objects, so the orchestration depends only on the documented fields.
"""

from __future__ import annotations

import logging
from typing import Any

from qmroct.orchestration.context import ActionContext

log = logging.getLogger(__name__)


def throttled_error() -> type[BaseException]:
    """The client's error for a 429 answer (too many requests in flight or per minute)."""
    from qmroct.clients.openwhisk import Throttled

    return Throttled


def not_found_error() -> type[BaseException]:
    """The client's error for a 404 answer (no such action, or no such activation record)."""
    from qmroct.clients.openwhisk import NotFound

    return NotFound


def field(record: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present on ``record`` (a mapping or an object)."""
    for name in names:
        if isinstance(record, dict):
            if name in record:
                return record[name]
        elif hasattr(record, name):
            return getattr(record, name)
    return default


def activation_id(response: Any) -> str | None:
    """The activation id from a non-blocking invoke's answer (a string, a dict or a model)."""
    if isinstance(response, str):
        return response or None
    found = field(response, "activation_id", "activationId")
    return str(found) if found else None


def wake_scheduler(ctx: ActionContext) -> bool:
    """Ask for a scheduler tick now; the alarm tick covers a wake-up that gets throttled."""
    if ctx.ow is None:
        return False
    try:
        ctx.ow.invoke(ctx.action("scheduler"), {}, blocking=False)
    except throttled_error():
        log.info("scheduler wake-up throttled; the alarm tick will run it")
        return False
    return True

"""Firing an OpenWhisk trigger over the REST API (``POST .../triggers/{name}``, Basic auth).

The bridge takes any ``fire(trigger, params) -> activation id | None`` callable; this module
gives the default one, built on ``requests`` as the platform has no maintained Python client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from qmroct.errors import QmroctError

FireFn = Callable[[str, dict[str, Any]], "str | None"]


class TriggerFireError(QmroctError):
    """A trigger fire was refused (429 throttled, 401, 404) or the API was unreachable."""

    def __init__(self, trigger: str, reason: str, status: int | None = None) -> None:
        self.trigger = trigger
        self.reason = reason
        self.status = status
        super().__init__(f"trigger {trigger!r}: {reason}")


def openwhisk_fire(
    api_host: str,
    auth: str,
    namespace: str = "_",
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
) -> FireFn:
    """A ``fire`` callable for the OpenWhisk at ``api_host`` with ``auth`` = ``uuid:key``.

    202 gives the activation id; 204 (no active rule) gives ``None``; anything else raises
    :class:`TriggerFireError`, so the caller answers non-2xx and MinIO redelivers.
    """
    if ":" not in auth:
        raise ValueError("OpenWhisk auth must be 'uuid:key'")
    user, key = auth.split(":", 1)
    base = api_host if "://" in api_host else f"https://{api_host}"
    http = session or requests.Session()

    def fire(trigger: str, params: dict[str, Any]) -> str | None:
        url = f"{base.rstrip('/')}/api/v1/namespaces/{quote(namespace, safe='')}/triggers/{quote(trigger, safe='')}"
        try:
            resp = http.post(url, json=params, auth=(user, key), timeout=timeout)
        except requests.RequestException as exc:
            raise TriggerFireError(trigger, f"OpenWhisk unreachable: {exc}") from exc
        if resp.status_code == 204:
            return None
        if resp.status_code in (200, 202):
            try:
                return str(resp.json().get("activationId") or "") or None
            except ValueError:
                return None
        raise TriggerFireError(
            trigger, f"answered {resp.status_code}: {resp.text[:200]}", resp.status_code
        )

    return fire

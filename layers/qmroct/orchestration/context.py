"""What every orchestration action is bound to: the ledger, the object store, the OpenWhisk client.

The action's bound inputs (see manifest.yaml) name the backends; the OpenWhisk API host, key and
namespace arrive per activation as ``__OW_*`` environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qmroct.errors import ConfigError
from qmroct.objectstore.base import ObjectStore
from qmroct.storage.ledger import Ledger, Policy


class Invoker(Protocol):
    """The part of the OpenWhisk client the orchestration uses."""

    def invoke(self, name: str, params: dict[str, Any], *, blocking: bool = False) -> Any: ...

    def activations(
        self, *, name: str | None = None, since: int | None = None, limit: int = 200
    ) -> Any: ...

    def activation(self, activation_id: str) -> Any:
        """One activation record; raises the client's NotFound while it is still running."""
        ...


class BackendParams(BaseModel):
    """The inputs bound to every orchestration action."""

    model_config = ConfigDict(extra="ignore")

    ledger_url: str = Field(min_length=1)
    store: str = "local"
    store_endpoint: str = ""
    store_access_key: str = ""
    store_secret_key: str = ""
    max_inflight: int = Field(4, ge=1)
    lease_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    xnat_url: str = ""
    sweep_s: float = Field(60.0, gt=0, description="how often the scheduler resyncs buckets")

    @field_validator("max_inflight", "max_attempts", "lease_s", "sweep_s", mode="before")
    @classmethod
    def _unset_is_default(cls, v: Any, info: Any) -> Any:
        # A manifest input bound to an unset $VARIABLE arrives as "": take the default.
        if v in ("", None):
            return cls.model_fields[info.field_name].default
        return v


@dataclass
class ActionContext:
    """The backends one activation works with."""

    ledger: Ledger
    store: ObjectStore
    ow: Invoker | None
    max_inflight: int = 4
    xnat_enabled: bool = False
    sweep_s: float = 60.0
    package: str = "qmroct"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(
        cls, args: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> ActionContext:
        """Build the backends from an action's bound inputs and the ``__OW_*`` environment."""
        env = os.environ if env is None else env
        p = BackendParams.model_validate(dict(args))
        ledger = Ledger.open(
            p.ledger_url, policy=Policy(lease_s=p.lease_s, max_attempts=p.max_attempts)
        )
        from qmroct.objectstore import open_store

        store = open_store(p.store, p.store_endpoint, p.store_access_key, p.store_secret_key)
        return cls(
            ledger=ledger,
            store=store,
            ow=openwhisk_from_env(env),
            max_inflight=p.max_inflight,
            xnat_enabled=bool(p.xnat_url),
            sweep_s=p.sweep_s,
        )

    def action(self, name: str) -> str:
        """The fully qualified name of an action of this package (``qmroct/run-signal``)."""
        return f"{self.package}/{name}" if self.package else name

    def require_ow(self) -> Invoker:
        if self.ow is None:
            raise ConfigError("no OpenWhisk API: __OW_API_HOST and __OW_API_KEY are not set")
        return self.ow

    def close(self) -> None:
        self.ledger.close()


_WARM: dict[tuple[Any, ...], ActionContext] = {}


def context_for(args: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ActionContext:
    """The context for this activation, reused across warm activations of one container.

    Opening the ledger and the store once per container, not per activation, is what keeps a
    warm orchestration activation in the milliseconds.
    """
    env = os.environ if env is None else env
    bound = BackendParams.model_validate(dict(args))
    key = (
        bound.model_dump_json(),
        env.get("__OW_API_HOST", ""),
        env.get("__OW_API_KEY", ""),
        env.get("__OW_NAMESPACE", ""),
    )
    ctx = _WARM.get(key)
    if ctx is None:
        ctx = _WARM[key] = ActionContext.from_params(args, env)
    return ctx


def openwhisk_from_env(env: Mapping[str, str]) -> Invoker | None:
    """The OpenWhisk client for the API the activation runs under, or None outside OpenWhisk."""
    host, key = env.get("__OW_API_HOST", ""), env.get("__OW_API_KEY", "")
    if not host or not key:
        return None
    from qmroct.clients.openwhisk import OpenWhiskClient

    return OpenWhiskClient(host, key, namespace=env.get("__OW_NAMESPACE", "_") or "_")

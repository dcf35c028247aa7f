"""EmbeddedWhisk: the local OpenWhisk deployment, composed from manifest.yaml.

It builds the action zips (``wsk action update`` would send the same ones), deploys the
manifest's package, actions, sequences, triggers and rules through the controller, serves the
REST API on loopback, and runs the alarm feeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from qmroct.errors import ConfigError
from qmroct.runtime.actionzip import BuiltAction, build_actions, find_pyproject
from qmroct.runtime.alarms import AlarmFeed
from qmroct.runtime.api import ApiServer
from qmroct.runtime.container import encode_zip
from qmroct.runtime.controller import Controller, RequestError
from qmroct.runtime.entities import SEQUENCE_KIND, ActionPut, Exec, as_pairs
from qmroct.runtime.manifest import ALARM_FEED, Manifest, load_manifest
from qmroct.runtime.records import ActivationRecord


def deploy(
    controller: Controller, manifest: Manifest, built: list[BuiltAction], package: str | None = None
) -> None:
    """Deploy one manifest package from the built zips, as wskdeploy deploys it."""
    pkg_name, pkg = manifest.package(package)
    zips = {b.name: b for b in built}
    controller.put_package(pkg_name, pkg.inputs)
    for name, spec in pkg.actions.items():
        kind = "blackbox" if spec.docker else spec.runtime
        code = encode_zip(zips[name].path.read_bytes())
        put = ActionPut(
            exec=Exec(kind=kind, code=code, main=spec.main, binary=True, image=spec.docker),
            limits={
                "timeout": spec.limits.timeout,
                "memory": spec.limits.memorySize,
                "logs": spec.limits.logSize,
            },
            parameters=as_pairs(spec.inputs),
            annotations=as_pairs(spec.annotations),
        )
        controller.put_action(f"{pkg_name}/{name}", put)
    pending = dict(pkg.sequences)
    while pending:  # sequences may name sequences: deploy those whose parts exist first
        progressed = False
        for name, seq in list(pending.items()):
            comps = [c if "/" in c else f"{pkg_name}/{c}" for c in seq.components]
            if all(c.split("/")[-1] not in pending for c in comps):
                components = [f"/{controller.namespace}/{c}" for c in comps]
                put = ActionPut(exec=Exec(kind=SEQUENCE_KIND, components=components))
                controller.put_action(f"{pkg_name}/{name}", put)
                del pending[name]
                progressed = True
        if not progressed:
            raise ConfigError(f"sequences refer to each other in a cycle: {sorted(pending)}")
    for name, trig in pkg.triggers.items():
        # A feed trigger's inputs configure the feed (cron), not the trigger.
        controller.put_trigger(name, {} if trig.feed else trig.inputs)
    for name, rule in pkg.rules.items():
        action = rule.action if "/" in rule.action else f"{pkg_name}/{rule.action}"
        controller.put_rule(name, rule.trigger, action)


class EmbeddedWhisk:
    """A local OpenWhisk honouring the real contract, started from a wskdeploy manifest.

    ``env`` resolves the manifest's ``$VAR`` inputs. ``alarm_interval_s`` makes alarm-fed
    triggers fire every that many seconds instead of on their cron. Actions cannot see
    ``home`` nor the ``hidden`` folders (see sandbox.py).
    """

    def __init__(
        self,
        manifest: Path,
        home: Path,
        env: dict[str, str] | None = None,
        *,
        user_memory_mb: int = 2048,
        alarm_interval_s: float | None = None,
        idle_timeout_s: float = 600.0,
        namespace: str = "guest",
        pyproject: Path | None = None,
        hidden: list[Path] | None = None,
    ) -> None:
        self.manifest_path = Path(manifest).resolve()
        self.home = Path(home).resolve()
        self.env = dict(env or {})
        self.user_memory_mb = user_memory_mb
        self.alarm_interval_s = alarm_interval_s
        self.idle_timeout_s = idle_timeout_s
        self.namespace = namespace
        self.pyproject = pyproject
        self.hidden = list(hidden or [])
        self.manifest: Manifest | None = None
        self.package = ""
        self.built: list[BuiltAction] = []
        self._controller: Controller | None = None
        self._api: ApiServer | None = None
        self._alarms: dict[str, AlarmFeed] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> EmbeddedWhisk:
        self.home.mkdir(parents=True, exist_ok=True)
        self.manifest = load_manifest(self.manifest_path, self.env)
        self.package, pkg = self.manifest.package()
        pyproject = self.pyproject or find_pyproject(self.manifest_path.parent)
        self.built = build_actions(self.manifest, self.home / "build" / "actions", pyproject)
        self._controller = Controller(
            self.home,
            namespace=self.namespace,
            user_memory_mb=self.user_memory_mb,
            idle_timeout_s=self.idle_timeout_s,
            hidden=self.hidden,
        )
        self._api = ApiServer(self._controller)
        self._controller.set_api(self._api.api_host, self._api.auth)
        self._api.start()
        deploy(self._controller, self.manifest, self.built)
        self._controller.feed_provider = self._alarm_lifecycle
        for name, trig in pkg.triggers.items():
            if trig.feed == ALARM_FEED:
                self._alarm_lifecycle(
                    {**trig.inputs, "lifecycleEvent": "CREATE", "triggerName": name}
                )
        self._write_connection_file()
        return self

    def _alarm_lifecycle(self, params: dict[str, Any]) -> dict[str, Any]:
        """The alarms provider's feed action (``/whisk.system/alarms/alarm``): CREATE starts
        firing ``triggerName`` on ``cron`` (with ``trigger_payload``), DELETE stops it, as
        ``wsk trigger create/delete --feed`` and deployers drive it."""
        name = str(params.get("triggerName", "")).strip("/").split("/")[-1]
        event = str(params.get("lifecycleEvent", "")).upper()
        old = self._alarms.pop(name, None)
        if old is not None:
            old.stop()
        if event == "DELETE":
            return {}
        if event != "CREATE":
            raise ValueError(f"alarm feed: lifecycleEvent {event!r} is not CREATE or DELETE")
        payload = params.get("trigger_payload") or {}
        feed = AlarmFeed(
            lambda n=name, p=payload: self.controller.fire_trigger(n, dict(p)),
            str(params.get("cron", "* * * * *")),
            self.alarm_interval_s,
        )
        feed.start()
        self._alarms[name] = feed
        return {}

    def _write_connection_file(self) -> None:
        target = self.home / "whisk.json"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {"api_host": self.api_host, "auth": self.auth, "namespace": self.namespace}, f
            )

    def stop(self) -> None:
        for feed in self._alarms.values():
            feed.stop()
        self._alarms.clear()
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._controller is not None:
            self._controller.close()
            self._controller = None
        (self.home / "whisk.json").unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedWhisk:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- access -----------------------------------------------------------------------------
    @property
    def controller(self) -> Controller:
        if self._controller is None:
            raise RuntimeError("EmbeddedWhisk is not started")
        return self._controller

    @property
    def api_host(self) -> str:
        if self._api is None:
            raise RuntimeError("EmbeddedWhisk is not started")
        return self._api.api_host

    @property
    def auth(self) -> str:
        if self._api is None:
            raise RuntimeError("EmbeddedWhisk is not started")
        return self._api.auth

    @property
    def api_cpu_s(self) -> float:
        """CPU seconds the REST API's request threads have used (for the benchmarks)."""
        return self._api.cpu_s if self._api is not None else 0.0

    def qualify(self, name: str) -> str:
        """``measure-signal`` -> ``qmroct/measure-signal`` (names with a ``/`` are kept)."""
        return name if "/" in name else f"{self.package}/{name}"

    def invoke(
        self, name: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> ActivationRecord:
        """Invoke and wait for the activation record (TimeoutError after ``timeout_s``)."""
        invocation = self.controller.invoke(self.qualify(name), params)
        record = invocation.wait(timeout_s)
        if record is None:
            raise TimeoutError(f"activation {invocation.activation_id} of {name} still running")
        return record

    def invoke_async(self, name: str, params: dict[str, Any] | None = None) -> str:
        """Invoke without waiting; the activation id."""
        return self.controller.invoke(self.qualify(name), params).activation_id

    def fire_trigger(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str | None:
        """The trigger activation id, or None when no rule is active."""
        return self.controller.fire_trigger(name, params, headers)

    def activations(
        self, name: str | None = None, since: int | None = None, limit: int | None = 30
    ) -> list[ActivationRecord]:
        """Records, newest first; a bare name of one of the package's actions is qualified
        (``measure-signal`` -> ``qmroct/measure-signal``), as the list filter needs it."""
        if name and "/" not in name:
            with contextlib.suppress(RequestError):
                self.controller.get_action(self.qualify(name))
                name = self.qualify(name)
        return self.controller.store.list(name=name, since=since, limit=limit)

    def activation(self, activation_id: str) -> ActivationRecord | None:
        return self.controller.store.get(activation_id)

    def wait_for(self, activation_id: str, timeout_s: float = 30.0) -> ActivationRecord:
        """Poll the record store until the activation has its record."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.activation(activation_id)
            if record is not None:
                return record
            time.sleep(0.02)
        raise TimeoutError(f"no record for activation {activation_id} after {timeout_s} s")

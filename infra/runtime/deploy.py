"""Deploy manifest.yaml to any OpenWhisk over its REST API: ``qmroct deploy``.

What wskdeploy would do, with the pieces it lacks for qmroct: each action's zip is the
``qmroct build`` zip (the action folder plus the ``qmroct`` library), the runtime image (when
given) is set as a ``blackbox`` exec's image, and alarm triggers get their feed by invoking the
alarms provider's feed action with ``lifecycleEvent: CREATE`` (as ``wsk trigger create --feed``
does). Every entity is read first and written only when it differs, so a second deploy changes
nothing; each change is reported.

The order is packages, actions, sequences, triggers, rules: a rule needs its trigger and
action to exist (Rules.scala), a sequence its components (Actions.scala).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field
from qmroct.clients.openwhisk import NotFound, OpenWhiskClient, OpenWhiskError
from qmroct.runtime.actionzip import BuiltAction
from qmroct.runtime.manifest import ALARM_FEED, Manifest


class Change(BaseModel):
    kind: str  # action, sequence, package, trigger, rule, feed
    name: str
    change: str  # created, updated, unchanged, failed
    detail: str = ""

    def line(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.change:<9} {self.kind:<8} {self.name}{extra}"


class DeployReport(BaseModel):
    changes: list[Change] = Field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.change in ("created", "updated")]

    def summary(self) -> str:
        parts = [f"{self.count(c)} {c}" for c in ("created", "updated", "unchanged", "failed")]
        return ", ".join(parts)


def _pairs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def _as_dict(pairs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {p["key"]: p.get("value") for p in pairs or []}


def _differs_action(have: dict[str, Any], want: dict[str, Any]) -> str:
    """What differs between the deployed action and the wanted PUT body ('' when nothing)."""
    h_exec, w_exec = have.get("exec", {}), want["exec"]
    for key in ("kind", "code", "main", "image", "components"):
        if key in w_exec and h_exec.get(key) != w_exec[key]:
            return "code" if key == "code" else key
    h_limits = have.get("limits", {})
    for key, value in want.get("limits", {}).items():
        if h_limits.get(key) != value:
            return f"limits.{key}"
    if "parameters" in want and _as_dict(have.get("parameters")) != _as_dict(want["parameters"]):
        return "parameters"
    h_ann = _as_dict(have.get("annotations"))
    for key, value in _as_dict(want.get("annotations")).items():
        if h_ann.get(key) != value:
            return f"annotation {key}"
    return ""


class Deployer:
    """Deploys one manifest package through ``client``; ``echo`` gets each change."""

    def __init__(
        self,
        client: OpenWhiskClient,
        manifest: Manifest,
        built: list[BuiltAction],
        *,
        image: str | None = None,
        package: str | None = None,
        echo: Callable[[Change], None] | None = None,
    ) -> None:
        self.client = client
        self.manifest = manifest
        self.zips = {b.name: b for b in built}
        self.image = image
        self.package_name, self.package = manifest.package(package)
        self.echo = echo
        self.report = DeployReport()

    def _note(self, kind: str, name: str, change: str, detail: str = "") -> None:
        item = Change(kind=kind, name=name, change=change, detail=detail)
        self.report.changes.append(item)
        if self.echo is not None:
            self.echo(item)

    def _get(self, collection: str, name: str) -> dict[str, Any] | None:
        try:
            return self.client.get_entity(collection, name)
        except NotFound:
            return None

    # -- entities ---------------------------------------------------------------------------
    def deploy(self) -> DeployReport:
        self._package()
        for name, spec in self.package.actions.items():
            self._action(name, self._action_body(name, spec))
        for name in self._sequence_order():
            self._sequence(name)
        for name, trig in self.package.triggers.items():
            self._trigger(name, trig)
        for name, rule in self.package.rules.items():
            self._rule(name, rule.trigger, self._qualified(rule.action))
        return self.report

    def _qualified(self, name: str) -> str:
        return name if "/" in name else f"{self.package_name}/{name}"

    def _package(self) -> None:
        want = {"parameters": _pairs(self.package.inputs), "publish": False}
        have = self._get("packages", self.package_name)
        if have is not None and _as_dict(have.get("parameters")) == self.package.inputs:
            self._note("package", self.package_name, "unchanged")
            return
        self.client.put_entity("packages", self.package_name, want)
        self._note("package", self.package_name, "updated" if have else "created")

    def _action_body(self, name: str, spec: Any) -> dict[str, Any]:
        code = base64.b64encode(self.zips[name].path.read_bytes()).decode("ascii")
        image = self.image or spec.docker
        exec_: dict[str, Any] = {"kind": "blackbox" if image else spec.runtime, "code": code}
        exec_["main"] = spec.main
        if image:
            exec_["image"] = image
        return {
            "exec": exec_,
            "limits": {
                "timeout": spec.limits.timeout,
                "memory": spec.limits.memorySize,
                "logs": spec.limits.logSize,
            },
            "parameters": _pairs(spec.inputs),
            "annotations": _pairs(spec.annotations),
        }

    def _action(self, name: str, want: dict[str, Any], kind: str = "action") -> None:
        full = self._qualified(name)
        have = self._get("actions", full)
        if have is not None:
            why = _differs_action(have, want)
            if not why:
                self._note(kind, full, "unchanged")
                return
            self.client.put_entity("actions", full, want)
            self._note(kind, full, "updated", why)
            return
        self.client.put_entity("actions", full, want)
        self._note(kind, full, "created")

    def _sequence_order(self) -> list[str]:
        """Sequences whose components are sequences come after those."""
        order: list[str] = []
        pending = dict(self.package.sequences)
        while pending:
            ready = [
                n
                for n, s in pending.items()
                if all(c.split("/")[-1] not in pending for c in s.components)
            ]
            if not ready:
                raise OpenWhiskError("deploy", 0, f"sequences form a cycle: {sorted(pending)}")
            for n in ready:
                order.append(n)
                del pending[n]
        return order

    def _sequence(self, name: str) -> None:
        seq = self.package.sequences[name]
        ns = self.client.namespace_name()
        comps = [f"/{ns}/{self._qualified(c)}" for c in seq.components]
        self._action(name, {"exec": {"kind": "sequence", "components": comps}}, "sequence")

    def _trigger(self, name: str, trig: Any) -> None:
        annotations = dict(trig.annotations)
        if trig.feed:
            annotations["feed"] = trig.feed
        # A feed trigger's inputs configure the feed (cron), not the trigger.
        parameters = {} if trig.feed else trig.inputs
        have = self._get("triggers", name)
        same = have is not None and _as_dict(have.get("parameters")) == parameters
        same = same and all(
            _as_dict(have.get("annotations")).get(k) == v for k, v in annotations.items()
        )
        if same:
            self._note("trigger", name, "unchanged")
        else:
            body = {"parameters": _pairs(parameters), "annotations": _pairs(annotations)}
            self.client.put_entity("triggers", name, body)
            self._note("trigger", name, "updated" if have else "created")
        if trig.feed and not same:
            self._feed(name, trig)

    def _feed(self, name: str, trig: Any) -> None:
        """Register the trigger with its feed provider, as ``wsk trigger create --feed``."""
        ns = self.client.namespace_name()
        params = {
            **trig.inputs,
            "lifecycleEvent": "CREATE",
            "triggerName": f"/{ns}/{name}",
            "authKey": self.client.auth,
        }
        try:
            self.client.invoke(trig.feed, params, blocking=True, result=True)
        except OpenWhiskError as exc:
            hint = "install the alarms provider" if trig.feed == ALARM_FEED else "check the feed"
            self._note("feed", f"{name} <- {trig.feed}", "failed", f"{exc.message}; {hint}")
            return
        self._note("feed", f"{name} <- {trig.feed}", "created")

    def _rule(self, name: str, trigger: str, action: str) -> None:
        ns = self.client.namespace_name()
        want_trigger = {"path": ns, "name": trigger}
        pkg, _, short = action.rpartition("/")
        want_action = {"path": f"{ns}/{pkg}" if pkg else ns, "name": short}
        have = self._get("rules", name)
        if (
            have is not None
            and have.get("trigger") == want_trigger
            and have.get("action") == want_action
            and have.get("status") == "active"
        ):
            self._note("rule", name, "unchanged")
            return
        body = {"trigger": f"/{ns}/{trigger}", "action": f"/{ns}/{action}"}
        self.client.put_entity("rules", name, body)
        if have is not None and have.get("status") != "active":
            self.client.set_rule_status(name, active=True)
        self._note("rule", name, "updated" if have else "created")

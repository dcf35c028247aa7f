"""The controller: entities, invocation, sequences, trigger fires and activation records.

Parameters merge lowest to highest: package, action, then invoke (or trigger) parameters. With
the ``final: true`` annotation, bound parameters cannot be overridden: a direct invoke that
tries is refused (400), and in a sequence or rule the bound values win.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qmroct.errors import QmroctError
from qmroct.runtime import messages, usage
from qmroct.runtime.container import LOG_DRAIN_TIMEOUT_S, ContainerStartError
from qmroct.runtime.entities import (
    BLACKBOX_KIND,
    SEQUENCE_KIND,
    ActionEntity,
    ActionLimits,
    ActionPut,
    EntityPut,
    PackageEntity,
    RuleEntity,
    TriggerEntity,
    as_dict,
    as_pairs,
    bump,
    is_binary_code,
)
from qmroct.runtime.invoker import Invoker, Lease, Throttled
from qmroct.runtime.records import (
    DEVELOPER_ERROR,
    INTERNAL_ERROR,
    ActivationRecord,
    ActivationResponse,
    ActivationStore,
    KeyValue,
    new_activation_id,
)
from qmroct.runtime.sandbox import granted_files, sandbox_command

DEFAULT_BLOCKING_TIMEOUT_MS = 60000
# Every Python kind runs on the host interpreter: the installed site-packages stand in for the
# runtime image. ``python:default`` resolves to the first (ExecManifest.resolveDefaultRuntime).
DEFAULT_PYTHON_KIND = "python:3.11"
SUPPORTED_KINDS = (DEFAULT_PYTHON_KIND, "python:3.12", "python:default", BLACKBOX_KIND)
SEQUENCE_COMPONENT_MISSING = "Sequence component does not exist."
CONFORMANCE = "Resource by this name exists but is not in this collection."


def _keep(given: Any, old: Any) -> Any:
    """A PUT field left out keeps the current value (the ``getOrElse`` of every update)."""
    if given is not None:
        return given
    return [] if old is None else old


class RequestError(QmroctError):
    """A request the controller refuses; ``status`` is the HTTP status it answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadRequest(RequestError):
    status = 400


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


class PayloadTooLarge(RequestError):
    status = 413


class Invocation:
    """An accepted activation: its id now, its record when it ends."""

    def __init__(self, activation_id: str, future: Future[ActivationRecord]) -> None:
        self.activation_id = activation_id
        self.future = future

    def wait(self, timeout_s: float | None) -> ActivationRecord | None:
        """The record, or None when the activation is still running after ``timeout_s``."""
        try:
            return self.future.result(timeout=timeout_s)
        except TimeoutError:
            return None


def _now_ms() -> int:
    return int(time.time() * 1000)


class Controller:
    def __init__(
        self,
        home: Path,
        *,
        namespace: str = "guest",
        api_host: str = "",
        api_key: str = "",
        user_memory_mb: int = 2048,
        idle_timeout_s: float = 600.0,
        hidden: list[Path] | None = None,
    ) -> None:
        self.home = Path(home)
        self.namespace = namespace
        self.api_host = api_host
        self.api_key = api_key
        self.store = ActivationStore(self.home)
        self.invoker = Invoker(
            self.home / "containers",
            user_memory_mb=user_memory_mb,
            idle_timeout_s=idle_timeout_s,
            container_env={"__OW_API_HOST": api_host},
            # Actions never see the runtime's home (its credentials, the records) or ``hidden``.
            hidden=[self.home.resolve(), *(Path(h).resolve() for h in hidden or [])],
            sandbox=sandbox_command(),
        )
        self._lock = threading.RLock()
        self._packages: dict[str, PackageEntity] = {}
        self._actions: dict[str, ActionEntity] = {}
        self._triggers: dict[str, TriggerEntity] = {}
        self._rules: dict[str, RuleEntity] = {}
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="activation")
        # The alarms provider (``/whisk.system/alarms/alarm``), when the runtime runs one.
        self.feed_provider: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def set_api(self, api_host: str, api_key: str) -> None:
        self.api_host, self.api_key = api_host, api_key
        self.invoker.container_env["__OW_API_HOST"] = api_host

    # -- entities ---------------------------------------------------------------------------
    # Sources: core/controller/src/main/scala/org/apache/openwhisk/core/controller/Actions.scala,
    # Triggers.scala, Rules.scala, Packages.scala and ApiUtils.scala (putEntity: 409 "resource
    # already exists" without overwrite; deleteEntity answers the deleted entity).
    def _split(self, path: str) -> tuple[str | None, str]:
        parts = [p for p in path.strip("/").split("/") if p]
        if parts and parts[0] in (self.namespace, "_") and len(parts) > 1:
            parts = parts[1:]
        if len(parts) == 1:
            return None, parts[0]
        if len(parts) == 2:
            return parts[0], parts[1]
        raise BadRequest(f"{path!r} is not a valid entity name")

    def _key(self, path: str) -> str:
        pkg, name = self._split(path)
        return f"{pkg}/{name}" if pkg else name

    def _simple(self, path: str, what: str) -> str:
        """The name of a trigger, rule or package: they live in the namespace, not a package."""
        pkg, name = self._split(path)
        if pkg is not None:
            raise BadRequest(f"{what} {path!r}: {what}s cannot be in a package")
        return name

    def _exists(self, key: str, *, but: dict[str, Any]) -> None:
        """ApiUtils.putEntity: a name taken in another collection is a 409 (conformance)."""
        for other in (self._actions, self._triggers, self._rules, self._packages):
            if other is not but and key in other:
                raise Conflict(CONFORMANCE)

    def _put_simple(
        self,
        table: dict[str, Any],
        cls: type[Any],
        what: str,
        name: str,
        parameters: dict[str, Any] | None,
        put: EntityPut | None,
        overwrite: bool,
    ) -> Any:
        """Create or update a package or trigger (Packages.scala / Triggers.scala): parameters
        replace, annotations merge, the version is bumped."""
        name = self._simple(name, what)
        put = put or EntityPut(parameters=as_pairs(parameters or {}))
        with self._lock:
            self._exists(name, but=table)
            old = table.get(name)
            if old is not None and not overwrite:
                raise Conflict(messages.EXISTS)
            annotations = as_dict(old.annotations) if old else {}
            annotations.update(as_dict(put.annotations or []))
            entity = cls(
                namespace=self.namespace,
                name=name,
                version=put.version or (bump(old.version) if old else "0.0.1"),
                parameters=_keep(put.parameters, old.parameters if old else None),
                annotations=as_pairs(annotations),
                publish=_keep(put.publish, old.publish if old else False),
            )
            table[name] = entity
            return entity

    def _get_simple(self, table: dict[str, Any], what: str, name: str) -> Any:
        with self._lock:
            entity = table.get(self._simple(name, what))
        if entity is None:
            raise NotFound(messages.NOT_FOUND)
        return entity

    def put_package(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        put: EntityPut | None = None,
        *,
        overwrite: bool = True,
    ) -> PackageEntity:
        """Packages.scala create/update: parameters replace, annotations merge."""
        return self._put_simple(
            self._packages, PackageEntity, "package", name, parameters, put, overwrite
        )

    def get_package(self, name: str) -> PackageEntity:
        return self._get_simple(self._packages, "package", name)

    def packages(self) -> list[PackageEntity]:
        with self._lock:
            return list(self._packages.values())

    def package_actions(self, name: str) -> list[ActionEntity]:
        with self._lock:
            return [a for a in self._actions.values() if a.package == name]

    def delete_package(self, name: str) -> PackageEntity:
        """Packages.scala remove: a package that still holds actions is a 409."""
        entity = self.get_package(name)
        with self._lock:
            inside = self.package_actions(entity.name)
            if inside:
                raise Conflict(f"Package not empty (contains {len(inside)} entities)")
            self._packages.pop(entity.name, None)
        return entity

    def put_action(self, path: str, put: ActionPut, *, overwrite: bool = True) -> ActionEntity:
        """Create or update an action like ``PUT .../actions/{path}?overwrite=``.

        ``parameters`` replace the whole set, ``annotations`` merge, ``limits`` merge by field;
        an update bumps the patch version, which forces cold starts. Actions.scala
        amendAnnotations adds ``provide-api-key: false`` on create (unless given) and always
        sets the ``exec`` annotation to the kind; ``:default`` kinds resolve to the default
        runtime (ExecManifest.resolveDefaultRuntime).
        """
        pkg, name = self._split(path)
        key = self._key(path)
        with self._lock:
            if pkg is not None and pkg not in self._packages:
                raise NotFound(messages.NOT_FOUND)
            self._exists(key, but=self._actions)
            old = self._actions.get(key)
            if old is not None and not overwrite:
                raise Conflict(messages.EXISTS)
            if put.exec is None and old is None:
                raise BadRequest("exec undefined")
            exec_ = put.exec or old.exec  # type: ignore[union-attr]
            if exec_.kind == "python:default":
                exec_ = exec_.model_copy(update={"kind": DEFAULT_PYTHON_KIND})
            if exec_.kind == SEQUENCE_KIND:
                if not exec_.components:
                    raise BadRequest(messages.SEQUENCE_NO_COMPONENT)
                resolved = []
                for comp in exec_.components:
                    comp_key = self._key(comp)
                    if comp_key == key:
                        raise BadRequest(messages.SEQUENCE_CYCLIC)
                    if comp_key not in self._actions:
                        raise BadRequest(SEQUENCE_COMPONENT_MISSING)
                    resolved.append(self._actions[comp_key].fqn)
                exec_ = exec_.model_copy(update={"components": resolved})
            elif exec_.kind not in SUPPORTED_KINDS:
                raise BadRequest(messages.invalid_runtime(exec_.kind, SUPPORTED_KINDS))
            elif not exec_.code and exec_.kind != BLACKBOX_KIND:
                raise BadRequest("exec.code undefined")
            exec_ = exec_.model_copy(update={"binary": is_binary_code(exec_.code)})
            limits = (old.limits if old else ActionLimits()).model_dump()
            limits.update(put.limits or {})
            annotations = as_dict(old.annotations) if old else {"provide-api-key": False}
            annotations.update(as_dict(put.annotations or []))
            annotations["exec"] = exec_.kind
            params = _keep(put.parameters, old.parameters if old else None)
            if exec_.kind == SEQUENCE_KIND:
                params = []
            entity = ActionEntity(
                namespace=self.namespace,
                package=pkg,
                name=name,
                version=put.version or (bump(old.version) if old else "0.0.1"),
                exec=exec_,
                limits=ActionLimits.model_validate(limits),
                parameters=params,
                annotations=as_pairs(annotations),
                publish=_keep(put.publish, old.publish if old else False),
            )
            self._actions[key] = entity
        if old is not None:
            self.invoker.retire(f"{entity.fqn}@")
        return entity

    def get_action(self, path: str) -> ActionEntity:
        with self._lock:
            entity = self._actions.get(self._key(path))
        if entity is None:
            raise NotFound(f"{messages.NOT_FOUND[:-1]}: action {path}")
        return entity

    def actions(self) -> list[ActionEntity]:
        with self._lock:
            return list(self._actions.values())

    def delete_action(self, path: str) -> ActionEntity:
        """Actions.scala remove: the entity goes, its warm containers with it."""
        entity = self.get_action(path)
        with self._lock:
            self._actions.pop(self._key(path), None)
        self.invoker.retire(f"{entity.fqn}@")
        return entity

    def put_trigger(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        put: EntityPut | None = None,
        *,
        overwrite: bool = True,
    ) -> TriggerEntity:
        return self._put_simple(
            self._triggers, TriggerEntity, "trigger", name, parameters, put, overwrite
        )

    def get_trigger(self, name: str) -> TriggerEntity:
        return self._get_simple(self._triggers, "trigger", name)

    def triggers(self) -> list[TriggerEntity]:
        with self._lock:
            return list(self._triggers.values())

    def trigger_rules(self, name: str) -> list[RuleEntity]:
        with self._lock:
            return [r for r in self._rules.values() if r.trigger == name]

    def delete_trigger(self, name: str) -> TriggerEntity:
        """Triggers.scala remove: the rules stay, pointing at a trigger that no longer fires."""
        entity = self.get_trigger(name)
        with self._lock:
            self._triggers.pop(entity.name, None)
        return entity

    def put_rule(
        self,
        name: str,
        trigger: str,
        action: str,
        *,
        active: bool = True,
        overwrite: bool = True,
        annotations: list[KeyValue] | None = None,
    ) -> RuleEntity:
        """Rules.scala create/update: trigger and action must exist (400 otherwise); an
        update keeps the rule's status, a new rule is active."""
        name = self._simple(name, "rule")
        trigger = self._simple(trigger, "trigger")
        with self._lock:
            self._exists(name, but=self._rules)
            old = self._rules.get(name)
            if old is not None and not overwrite:
                raise Conflict(messages.EXISTS)
            action_key = self._key(action)
            if trigger not in self._triggers or action_key not in self._actions:
                raise BadRequest(messages.RULE_NEEDS_TRIGGER_AND_ACTION)
            merged = as_dict(old.annotations) if old else {}
            merged.update(as_dict(annotations or []))
            rule = RuleEntity(
                namespace=self.namespace,
                name=name,
                trigger=trigger,
                action=action_key,
                status=old.status if old else ("active" if active else "inactive"),
                version=bump(old.version) if old else "0.0.1",
                annotations=as_pairs(merged),
            )
            self._rules[name] = rule
            return rule

    def get_rule(self, name: str) -> RuleEntity:
        with self._lock:
            rule = self._rules.get(self._simple(name, "rule"))
        if rule is None:
            raise NotFound(messages.NOT_FOUND)
        return rule

    def rules(self) -> list[RuleEntity]:
        with self._lock:
            return list(self._rules.values())

    def set_rule_state(self, name: str, active: bool) -> None:
        """Rules.scala activate: the requested state, also when it is the current one (200)."""
        rule = self.get_rule(name)
        with self._lock:
            if rule.trigger not in self._triggers:
                raise NotFound("Only rules with existing triggers can be activated")
            rule.status = "active" if active else "inactive"

    def delete_rule(self, name: str) -> RuleEntity:
        rule = self.get_rule(name)
        with self._lock:
            self._rules.pop(rule.name, None)
        return rule

    # -- invocation -------------------------------------------------------------------------
    def _bound(self, action: ActionEntity) -> dict[str, Any]:
        with self._lock:
            pkg = self._packages.get(action.package or "")
            bound = as_dict(pkg.parameters) if pkg else {}
        bound.update(as_dict(action.parameters))
        return bound

    def _merge(
        self, action: ActionEntity, given: dict[str, Any], *, strict: bool
    ) -> dict[str, Any]:
        bound = self._bound(action)
        if action.annotation("final") is True:
            if strict and set(given) & set(bound):
                raise BadRequest(messages.PARAMS_NOT_ALLOWED)
            return {**given, **bound}
        return {**bound, **given}

    @staticmethod
    def _check_size(params: dict[str, Any]) -> None:
        size = len(json.dumps(params).encode())
        if size > messages.MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(messages.request_too_large(size))

    def _first_action(self, entity: ActionEntity) -> ActionEntity:
        while entity.is_sequence:
            entity = self.get_action((entity.exec.components or [""])[0])
        return entity

    def _acquire(self, action: ActionEntity, wait_s: float | None) -> Lease:
        return self.invoker.acquire(
            f"{action.fqn}@{action.version}", action.limits.memory, wait_s=wait_s
        )

    def invoke(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        cause: str | None = None,
        strict: bool = True,
    ) -> Invocation:
        """Admit one activation (action or sequence) and run it in the background.

        Raises NotFound, BadRequest (final parameters), PayloadTooLarge (over 1 MB) or
        Throttled (429: no room under the memory cap).
        """
        params = dict(params or {})
        self._check_size(params)
        entity = self.get_action(path)
        merged = self._merge(entity, params, strict=strict)
        lease = self._acquire(self._first_action(entity), wait_s=None)
        activation_id = new_activation_id()
        submitted = _now_ms()
        if entity.is_sequence:
            future = self._pool.submit(
                self._run_sequence, entity, merged, activation_id, lease, cause, submitted
            )
        else:
            future = self._pool.submit(
                self._run_action, entity, merged, activation_id, lease, cause, submitted
            )
        return Invocation(activation_id, future)

    def _run_action(
        self,
        action: ActionEntity,
        params: dict[str, Any],
        activation_id: str,
        lease: Lease,
        cause: str | None,
        submitted: int,
    ) -> ActivationRecord:
        """Run one activation; whatever goes wrong, the lease is returned and a record kept."""
        start = _now_ms()
        try:
            return self._run_in_container(action, params, activation_id, lease, cause, submitted)
        except Exception as exc:  # noqa: BLE001 - an internal failure becomes the record
            if lease.container is not None:
                self.invoker.release(lease.container, destroy=True)
            response = ActivationResponse.error(INTERNAL_ERROR, f"whisk internal error: {exc}")
            return self._record(action, activation_id, start, response, [], {}, cause)

    def _run_in_container(
        self,
        action: ActionEntity,
        params: dict[str, Any],
        activation_id: str,
        lease: Lease,
        cause: str | None,
        submitted: int,
    ) -> ActivationRecord:
        start = _now_ms()
        limits = action.limits
        annotations: dict[str, Any] = {
            "path": action.fqn.lstrip("/"),
            "waitTime": start - submitted,
            "kind": action.exec.kind,
            "limits": limits.model_dump(),
            "timeout": False,
        }
        if cause:
            annotations["causedBy"] = "sequence"
        cold = lease.cold
        try:
            granted = granted_files(self._bound(action))
            container = lease.container or self.invoker.start(lease, granted)
        except (ContainerStartError, OSError) as exc:
            msg = messages.container_failed(str(exc))
            response = ActivationResponse.error(INTERNAL_ERROR, msg)
            return self._record(action, activation_id, start, response, [], annotations, cause)
        container.logs.begin(limits.logs * 1024 * 1024)
        outcome = None
        if cold:
            t0 = time.perf_counter()
            init_env = {
                "__OW_API_HOST": self.api_host,
                "__OW_NAMESPACE": self.namespace,
                "__OW_ACTION_NAME": action.fqn,
                "__OW_ACTION_VERSION": action.version,
            }
            outcome = container.init(
                action.name,
                action.exec.main or "main",
                action.exec.code or "",
                init_env,
                limits.timeout,
                binary=action.exec.binary,
            )
            annotations["initTime"] = int((time.perf_counter() - t0) * 1000)
            if outcome.ok:
                outcome = None
        if outcome is None:
            body: dict[str, Any] = {
                "value": params,
                "namespace": self.namespace,
                "action_name": action.fqn,
                "action_version": action.version,
                "activation_id": activation_id,
                "transaction_id": uuid.uuid4().hex,
                "deadline": str(_now_ms() + limits.timeout),
            }
            if action.annotation("provide-api-key") is True:
                body["api_key"] = self.api_key
            pid = container.pid
            snap = usage.before_run(pid) if pid is not None else None
            t_run = time.perf_counter()
            outcome = container.run(body, limits.timeout)
            annotations["runTime"] = int((time.perf_counter() - t_run) * 1000)
            if snap is not None and pid is not None:
                annotations.update(usage.after_run(pid, snap).annotations())
        response = outcome.response
        if outcome.destroy and response.statusCode == DEVELOPER_ERROR:
            annotations["timeout"] = "exceeded its time limits" in str(response.result)
        if outcome.destroy:
            container.kill()  # ends the log streams, so the logs so far can be taken
        logs = container.logs.take(LOG_DRAIN_TIMEOUT_S)
        self.invoker.release(container, destroy=outcome.destroy)
        return self._record(action, activation_id, start, response, logs, annotations, cause)

    def _record(
        self,
        action: ActionEntity,
        activation_id: str,
        start: int,
        response: ActivationResponse,
        logs: list[str],
        annotations: dict[str, Any],
        cause: str | None,
    ) -> ActivationRecord:
        end = _now_ms()
        record = ActivationRecord(
            activationId=activation_id,
            name=action.name,
            # WhiskActivation: the invoking namespace; the package is in the path annotation.
            namespace=self.namespace,
            subject=self.namespace,
            version=action.version,
            start=start,
            end=end,
            duration=end - start,
            cause=cause,
            response=response,
            logs=logs,
            annotations=[KeyValue(key=k, value=v) for k, v in annotations.items()],
        )
        self.store.put(record)
        return record

    def _run_sequence(
        self,
        seq: ActionEntity,
        params: dict[str, Any],
        activation_id: str,
        lease: Lease | None,
        cause: str | None,
        submitted: int,
    ) -> ActivationRecord:
        start = _now_ms()
        component_ids: list[str] = []
        current: Any = params
        response = ActivationResponse.of(0, params)
        for i, comp_path in enumerate(seq.exec.components or []):
            try:
                comp = self.get_action(comp_path)
            except NotFound:
                if i == 0 and lease is not None:
                    self.invoker.release_lease(lease)
                response = ActivationResponse.error(INTERNAL_ERROR, SEQUENCE_COMPONENT_MISSING)
                break
            value = current if isinstance(current, dict) else {}
            merged = self._merge(comp, value, strict=False)
            first = i == 0 and lease is not None
            if comp.is_sequence:
                if first:
                    assert lease is not None
                    self.invoker.release_lease(lease)
                record = self._run_sequence(
                    comp, merged, new_activation_id(), None, activation_id, _now_ms()
                )
            else:
                try:
                    comp_lease = lease if first else self._acquire(comp, comp.limits.timeout / 1000)
                except Throttled as exc:
                    response = ActivationResponse.error(INTERNAL_ERROR, str(exc))
                    break
                assert comp_lease is not None
                record = self._run_action(
                    comp, merged, new_activation_id(), comp_lease, activation_id, _now_ms()
                )
            component_ids.append(record.activationId)
            response = record.response
            if not response.success:
                break
            current = response.result
        annotations = {
            "path": seq.fqn.lstrip("/"),
            "waitTime": start - submitted,
            "kind": SEQUENCE_KIND,
            "topmost": cause is None,
            "limits": seq.limits.model_dump(),
        }
        return self._record(seq, activation_id, start, response, component_ids, annotations, cause)

    # -- triggers ---------------------------------------------------------------------------
    def fire_trigger(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str | None:
        """Fire a trigger; the trigger activation id, or None when no rule is active (204).

        Each active rule's action gets trigger parameters < ``{"__ow_headers": ...}`` < body.
        A rule whose action is throttled is dropped, as OpenWhisk drops it; the trigger's own
        record says so.
        """
        params = dict(params or {})
        self._check_size(params)
        with self._lock:
            trigger = self._triggers.get(name)
            if trigger is None:
                raise NotFound(f"The requested resource does not exist: trigger {name}")
            rules = [r for r in self._rules.values() if r.trigger == name and r.status == "active"]
        if not rules:
            return None
        start = _now_ms()
        activation_id = new_activation_id()
        payload = {**as_dict(trigger.parameters), "__ow_headers": dict(headers or {}), **params}
        logs = []
        for rule in rules:
            entry: dict[str, Any] = {"rule": f"{self.namespace}/{rule.name}"}
            try:
                action = self.get_action(rule.action)
                entry["action"] = action.fqn.lstrip("/")
                inv = self.invoke(rule.action, payload, cause=activation_id, strict=False)
                entry.update(statusCode=0, success=True, activationId=inv.activation_id)
            except (Throttled, RequestError) as exc:
                entry.update(statusCode=1, success=False, error=str(exc))
            logs.append(json.dumps(entry))
        end = _now_ms()
        record = ActivationRecord(
            activationId=activation_id,
            name=name,
            namespace=self.namespace,
            subject=self.namespace,
            version=trigger.version,
            start=start,
            end=end,
            duration=end - start,
            # The body only: headers carry the caller's credentials.
            response=ActivationResponse.of(0, params),
            logs=logs,
            annotations=[KeyValue(key="kind", value="trigger")],
        )
        self.store.put(record)
        return activation_id

    # -- reading ----------------------------------------------------------------------------
    def limits(self) -> dict[str, Any]:
        return {
            "concurrentInvocations": max(1, self.invoker.user_memory_mb // 128),
            "userMemory": self.invoker.user_memory_mb * 1024 * 1024,
            "minActionMemory": 128 * 1024 * 1024,
            "maxActionMemory": 512 * 1024 * 1024,
            "minActionTimeout": 100,
            "maxActionTimeout": 300000,
            "minActionLogs": 0,
            "maxActionLogs": 10 * 1024 * 1024,
            "maxParameterSize": messages.MAX_PAYLOAD_BYTES,
            "maxPayloadSize": messages.MAX_PAYLOAD_BYTES,
            "maxActionCodeSize": 48 * 1024 * 1024,
            "idleContainerTimeout": int(self.invoker.idle_timeout_s * 1000),
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.invoker.shutdown()
        self.store.close()

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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qmroct.errors import QmroctError
from qmroct.runtime import messages
from qmroct.runtime.container import LOG_DRAIN_TIMEOUT_S, ContainerStartError
from qmroct.runtime.entities import (
    SEQUENCE_KIND,
    ActionEntity,
    ActionLimits,
    ActionPut,
    RuleEntity,
    TriggerEntity,
    as_dict,
    bump,
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

DEFAULT_BLOCKING_TIMEOUT_MS = 60000
SUPPORTED_KINDS = ("python:3.11", "blackbox")
SEQUENCE_COMPONENT_MISSING = "Sequence component does not exist."


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
        )
        self._lock = threading.RLock()
        self._packages: dict[str, dict[str, Any]] = {}
        self._actions: dict[str, ActionEntity] = {}
        self._triggers: dict[str, TriggerEntity] = {}
        self._rules: dict[str, RuleEntity] = {}
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="activation")

    def set_api(self, api_host: str, api_key: str) -> None:
        self.api_host, self.api_key = api_host, api_key
        self.invoker.container_env["__OW_API_HOST"] = api_host

    # -- entities ---------------------------------------------------------------------------
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

    def put_package(self, name: str, parameters: dict[str, Any]) -> None:
        with self._lock:
            self._packages[name] = dict(parameters)

    def put_action(self, path: str, put: ActionPut, *, overwrite: bool = True) -> ActionEntity:
        """Create or update an action like ``PUT .../actions/{path}?overwrite=``.

        ``parameters`` replace the whole set, ``annotations`` merge, ``limits`` merge by field;
        an update bumps the patch version, which forces cold starts.
        """
        pkg, name = self._split(path)
        key = self._key(path)
        with self._lock:
            old = self._actions.get(key)
            if old is not None and not overwrite:
                raise Conflict("resource already exists")
            if put.exec is None and old is None:
                raise BadRequest("exec undefined")
            exec_ = put.exec or old.exec  # type: ignore[union-attr]
            if exec_.kind == SEQUENCE_KIND:
                for comp in exec_.components or []:
                    if self._key(comp) not in self._actions:
                        raise BadRequest(f"sequence component does not exist: {comp}")
            elif exec_.kind not in SUPPORTED_KINDS:
                raise BadRequest(messages.invalid_runtime(exec_.kind, SUPPORTED_KINDS))
            elif not exec_.code:
                raise BadRequest("exec.code undefined")
            limits = (old.limits if old else ActionLimits()).model_dump()
            limits.update(put.limits or {})
            annotations = as_dict(old.annotations) if old else {}
            annotations.update(as_dict(put.annotations or []))
            params = (
                put.parameters if put.parameters is not None else (old.parameters if old else [])
            )
            entity = ActionEntity(
                namespace=self.namespace,
                package=pkg,
                name=name,
                version=bump(old.version) if old else "0.0.1",
                exec=exec_,
                limits=ActionLimits.model_validate(limits),
                parameters=params,
                annotations=[KeyValue(key=k, value=v) for k, v in annotations.items()],
                publish=put.publish if put.publish is not None else (old.publish if old else False),
            )
            self._actions[key] = entity
        if old is not None:
            self.invoker.retire(f"{entity.fqn}@")
        return entity

    def get_action(self, path: str) -> ActionEntity:
        with self._lock:
            entity = self._actions.get(self._key(path))
        if entity is None:
            raise NotFound(f"The requested resource does not exist: action {path}")
        return entity

    def actions(self) -> list[ActionEntity]:
        with self._lock:
            return list(self._actions.values())

    def put_trigger(self, name: str, parameters: dict[str, Any] | None = None) -> TriggerEntity:
        with self._lock:
            old = self._triggers.get(name)
            entity = TriggerEntity(
                namespace=self.namespace,
                name=name,
                version=bump(old.version) if old else "0.0.1",
                parameters=[KeyValue(key=k, value=v) for k, v in (parameters or {}).items()],
            )
            self._triggers[name] = entity
            return entity

    def put_rule(self, name: str, trigger: str, action: str, *, active: bool = True) -> RuleEntity:
        with self._lock:
            if trigger not in self._triggers:
                raise NotFound(f"The requested resource does not exist: trigger {trigger}")
            self.get_action(action)
            rule = RuleEntity(
                namespace=self.namespace,
                name=name,
                trigger=trigger,
                action=self._key(action),
                status="active" if active else "inactive",
            )
            self._rules[name] = rule
            return rule

    def set_rule_state(self, name: str, active: bool) -> None:
        with self._lock:
            rule = self._rules.get(name)
            if rule is None:
                raise NotFound(f"The requested resource does not exist: rule {name}")
            rule.status = "active" if active else "inactive"

    # -- invocation -------------------------------------------------------------------------
    def _bound(self, action: ActionEntity) -> dict[str, Any]:
        with self._lock:
            bound = dict(self._packages.get(action.package or "", {}))
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
            container = lease.container or self.invoker.start(lease)
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
            outcome = container.run(body, limits.timeout)
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
            namespace=action.path,
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

"""MinIO-style webhook delivery for the local folder store.

Each target (one ARN) has an on-disk queue, like MinIO's ``queue_dir``: an event is written to
disk before the write that caused it returns, then a worker thread POSTs the events in order.
Any non-2xx answer (429 included) or a connection error leaves the head event in place and the
worker retries it every ``retry_interval`` seconds, so delivery is at-least-once, in order,
with head-of-line blocking, and it survives a restart: a new worker on the same folder
redelivers whatever is still queued.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import requests
from qmroct.objectstore.base import NotificationTarget

log = logging.getLogger(__name__)

_SUFFIX = ".event"


def authorization_header(token: str) -> str | None:
    """MinIO's rule: a one-word token becomes ``Bearer <token>``, a two-word token is sent
    verbatim (``Basic <base64>`` fires an OpenWhisk trigger directly), anything else none."""
    fields = token.split()
    if len(fields) == 2:
        return token
    if len(fields) == 1:
        return f"Bearer {token}"
    return None


def target_matches(target: NotificationTarget, event_name: str, key: str) -> bool:
    """Whether ``target`` wants ``event_name`` on ``key`` (its event patterns, prefix, suffix)."""
    if not key.startswith(target.prefix) or not key.endswith(target.suffix):
        return False
    for pattern in target.events:
        if pattern.endswith("*") and event_name.startswith(pattern[:-1]):
            return True
        if pattern == event_name:
            return True
    return False


class WebhookQueue:
    """One target's on-disk queue and the thread that delivers it."""

    def __init__(
        self,
        folder: Path,
        target: NotificationTarget,
        *,
        retry_interval: float = 3.0,
        timeout: float = 10.0,
    ) -> None:
        self.folder = folder
        self.target = target
        self.retry_interval = retry_interval
        self.timeout = timeout
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        existing = self._files()
        self._next = int(existing[-1].stem) + 1 if existing else 1
        self._session = requests.Session()
        self._thread = threading.Thread(
            target=self._run, name=f"webhook-{folder.name}", daemon=True
        )
        self._thread.start()

    def _files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.suffix == _SUFFIX and p.stem.isdigit())

    def put(self, body: bytes) -> None:
        """Persist one event (durably, before returning) and wake the worker."""
        with self._lock:
            seq = self._next
            self._next += 1
            tmp = self.folder / f".{seq:020d}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.folder / f"{seq:020d}{_SUFFIX}")
            self._wake.notify_all()

    def pending(self) -> int:
        with self._lock:
            return len(self._files())

    def update(self, target: NotificationTarget) -> None:
        with self._lock:
            self.target = target

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
        self._thread.join(timeout)
        self._session.close()

    def _post(self, body: bytes) -> bool:
        headers = {"Content-Type": "application/json"}
        auth = authorization_header(self.target.auth_token)
        if auth:
            headers["Authorization"] = auth
        try:
            resp = self._session.post(
                self.target.endpoint, data=body, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            log.warning("webhook %s unreachable, will retry: %s", self.target.endpoint, exc)
            return False
        if 200 <= resp.status_code <= 299:
            return True
        log.warning(
            "webhook %s answered %s, will retry in %.1f s",
            self.target.endpoint,
            resp.status_code,
            self.retry_interval,
        )
        return False

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and not self._files():
                    self._wake.wait(1.0)
                if self._stopped:
                    return
                head = self._files()[0]
            body = head.read_bytes()
            if self._post(body):
                with self._lock:
                    head.unlink(missing_ok=True)
                continue
            with self._lock:
                if not self._stopped:
                    self._wake.wait(self.retry_interval)
                if self._stopped:
                    return


def queue_folder_name(arn: str) -> str:
    return "webhook-" + re.sub(r"[^A-Za-z0-9_.-]", "_", arn)


class Notifier:
    """All webhook queues of one store, keyed by target ARN."""

    def __init__(self, queue_dir: Path, *, retry_interval: float = 3.0) -> None:
        self.queue_dir = queue_dir
        self.retry_interval = retry_interval
        self._queues: dict[str, WebhookQueue] = {}
        self._lock = threading.Lock()

    def queue(self, target: NotificationTarget) -> WebhookQueue:
        with self._lock:
            q = self._queues.get(target.arn)
            if q is None:
                q = WebhookQueue(
                    self.queue_dir / queue_folder_name(target.arn),
                    target,
                    retry_interval=self.retry_interval,
                )
                self._queues[target.arn] = q
            else:
                q.update(target)
            return q

    def emit(
        self, targets: list[NotificationTarget], event_name: str, key: str, body: bytes
    ) -> int:
        """Queue ``body`` for every target that matches; returns how many did."""
        n = 0
        for target in targets:
            if target.endpoint and target_matches(target, event_name, key):
                self.queue(target).put(body)
                n += 1
        return n

    def pending(self) -> int:
        with self._lock:
            queues = list(self._queues.values())
        return sum(q.pending() for q in queues)

    def close(self) -> None:
        with self._lock:
            queues = list(self._queues.values())
            self._queues.clear()
        for q in queues:
            q.close()

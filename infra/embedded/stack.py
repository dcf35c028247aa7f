"""The one-machine qmroct stack: folder object store, embedded OpenWhisk, SQLite ledger.

It wires the pieces exactly as a production deployment is wired: the store's bucket
notifications POST MinIO-format events straight into the OpenWhisk trigger URLs (with a two-word
``Basic`` token, as a MinIO webhook target would), and every action runs from its zip under the
runtime protocol. Nothing here computes a measure or schedules a job: the actions do.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from qmroct.clients.openwhisk import OpenWhiskClient
from qmroct.embedded.paths import manifest_path
from qmroct.errors import ConfigError
from qmroct.localstore.server import LocalStoreServer
from qmroct.localstore.store import LocalFolderStore
from qmroct.measures.devtest import TEST_BUCKET
from qmroct.objectstore.base import NotificationTarget
from qmroct.objectstore.local import LocalStoreClient
from qmroct.policies import ROLES, role_policy
from qmroct.runtime import EmbeddedWhisk
from qmroct.secretfiles import write_private
from qmroct.storage import buckets
from qmroct.storage.ledger import Ledger, Policy

INGEST_TRIGGER = "image-stored"
MEASURES_TRIGGER = "measure-published"
TICK_TRIGGER = "scheduler-tick"


class StackOptions(BaseModel):
    cap: int = 4
    alarm_interval_s: float = 2.0
    # The invoker's user memory. None sizes it so every action of the manifest stays warm at
    # once (ten 512 MB compute actions, six 256 MB orchestration ones): otherwise the nine
    # measures evict each other and every activation pays a cold start. Memory limits are
    # address-space caps, so this reserves nothing.
    user_memory_mb: int | None = None
    lease_s: float = 300.0
    # How often the scheduler compares the buckets with the catalog, re-driving uploads and
    # publications whose trigger activation OpenWhisk dropped while throttled.
    sweep_s: float = 10.0
    max_attempts: int = 3
    event_retry_s: float = 1.0
    xnat_url: str = ""
    xnat_alias: str = ""
    xnat_secret: str = ""
    # The ledger: a SQLite file in the home by default, or a PostgreSQL URL (an empty database).
    ledger_url: str = ""


class Idle(BaseModel):
    """What was outstanding when :meth:`EmbeddedStack.wait_idle` returned."""

    idle: bool
    queued: int
    in_flight: int
    pending_events: int
    done: int
    dead: int
    seconds: float


RESTART_REASON = "the stack restarted; its activation died with the previous one"


def _refuse_if_running(home: Path) -> None:
    """Two stacks on one home would re-queue each other's jobs: refuse the second."""
    try:
        pid = int(json.loads((home / "stack.json").read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return  # no stack announced, or its process is gone
    if pid != os.getpid() and b"qmroct" in cmdline:
        raise ConfigError(f"{home}: another qmroct stack (pid {pid}) is running on this home")


def _secrets(home: Path) -> dict[str, Any]:
    # Kept beside the data so a restarted stack can still verify URLs it signed before.
    path = home / "secrets.json"
    values: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    changed = "store_secret" not in values
    values.setdefault("store_secret", secrets.token_urlsafe(32))
    roles = values.setdefault("roles", {})
    for role in ROLES:
        if role not in roles:
            roles[role] = {
                "access_key": f"qmroct-{role}",
                "secret_key": secrets.token_urlsafe(32),
            }
            changed = True
    if changed:
        write_private(path, json.dumps(values, indent=1).encode())
    return values


class EmbeddedStack:
    """Start with :meth:`start` (or ``with EmbeddedStack(home) as stack:``)."""

    def __init__(self, home: str | Path, options: StackOptions | None = None) -> None:
        self.home = Path(home).resolve()
        self.options = options or StackOptions()
        self.folder_store: LocalFolderStore | None = None
        self.store_server: LocalStoreServer | None = None
        self.whisk: EmbeddedWhisk | None = None
        self.ledger: Ledger | None = None
        self.store: LocalStoreClient | None = None
        self.ow: OpenWhiskClient | None = None
        self.roles: dict[str, dict[str, str]] = {}
        self.requeued_on_start: list[str] = []

    @property
    def ledger_url(self) -> str:
        return self.options.ledger_url or f"sqlite:///{self.home / 'ledger.sqlite3'}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EmbeddedStack:
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        _refuse_if_running(self.home)
        opts = self.options
        kept = _secrets(self.home)
        secret = kept["store_secret"]
        self.ledger = Ledger.open(
            self.ledger_url, policy=Policy(lease_s=opts.lease_s, max_attempts=opts.max_attempts)
        )
        # This stack's runtime has not started yet: an activation holding a lease died with
        # the previous stack (killed, crashed), so its job goes back to the queue now, for
        # the first scheduler tick, instead of after the lease.
        self.requeued_on_start = self.ledger.reclaim_expired(every_lease=RESTART_REASON)
        self.folder_store = LocalFolderStore(self.home / "store", retry_interval=opts.event_retry_s)
        self.store_server = LocalStoreServer(self.folder_store, secret=secret).start()
        access_key = self.store_server.access_key
        # One credential per role, held to the role's policy as MinIO would hold it: the
        # actions get the orchestration role's keys, the CLI commands the keys of theirs.
        self.roles = kept["roles"]
        for role, keys in self.roles.items():
            self.store_server.add_user(
                keys["access_key"], keys["secret_key"], role_policy(role), role=role
            )
        self.store = LocalStoreClient(self.store_server.endpoint, access_key, secret)
        orch = self.roles["orchestration"]
        env = {
            "QMROCT_LEDGER_URL": self.ledger_url,
            "QMROCT_STORE": "local",
            "QMROCT_STORE_ENDPOINT": self.store_server.endpoint,
            "QMROCT_STORE_ACCESS_KEY": orch["access_key"],
            "QMROCT_STORE_SECRET_KEY": orch["secret_key"],
            "QMROCT_MAX_INFLIGHT": str(opts.cap),
            "QMROCT_LEASE_S": str(opts.lease_s),
            "QMROCT_MAX_ATTEMPTS": str(opts.max_attempts),
            "QMROCT_SWEEP_S": str(opts.sweep_s),
            "QMROCT_XNAT_URL": opts.xnat_url,
            "QMROCT_XNAT_ALIAS": opts.xnat_alias,
            "QMROCT_XNAT_SECRET": opts.xnat_secret,
        }
        self.whisk = EmbeddedWhisk(
            manifest_path(),
            self.home / "whisk",
            env,
            user_memory_mb=opts.user_memory_mb or max(8192, opts.cap * 512 + 2048),
            alarm_interval_s=opts.alarm_interval_s,
            # The stack's home holds the credentials, the ledger and the store: no action
            # sees it but for the files its bound parameters name (the ledger).
            hidden=[self.home],
        )
        self.whisk.start()
        self.ow = OpenWhiskClient(self.whisk.api_host, self.whisk.auth)
        self._wire_notifications()
        self._announce(access_key, secret)
        if self.requeued_on_start:
            # Tick now rather than one alarm period later: those jobs have waited enough.
            self.whisk.fire_trigger(TICK_TRIGGER, {})
        return self

    def _announce(self, access_key: str, secret: str) -> None:
        """Tell other commands on this machine where this stack is (``qmroct measure publish``,
        ``qmroct gateway upload``, ``qmroct status``); readable by the owner only."""
        assert self.store_server is not None and self.whisk is not None
        info = {
            "store_endpoint": self.store_server.endpoint,
            "store_access_key": access_key,
            "store_secret_key": secret,
            "roles": self.roles,
            "ow_api_host": self.whisk.api_host,
            "ledger_url": self.ledger_url,
            "pid": os.getpid(),
        }
        write_private(self.home / "stack.json", json.dumps(info, indent=2).encode())

    def _wire_notifications(self) -> None:
        assert self.folder_store is not None and self.whisk is not None
        token = "Basic " + base64.b64encode(self.whisk.auth.encode()).decode()
        api = self.whisk.api_host.rstrip("/")
        wiring = {
            buckets.INGEST_BUCKET: (INGEST_TRIGGER, ""),
            buckets.MEASURES_BUCKET: (MEASURES_TRIGGER, ".json"),
        }
        # The test set of measure developers (qmroct measure test) lives in its own bucket.
        for bucket in (buckets.RESULTS_BUCKET, buckets.DERIVED_BUCKET, TEST_BUCKET):
            self.folder_store.ensure_bucket(bucket, versioning=True)
        for bucket, (trigger, suffix) in wiring.items():
            self.folder_store.ensure_bucket(bucket, versioning=True)
            target = NotificationTarget(
                arn=f"arn:minio:sqs::{trigger}:webhook",
                endpoint=f"{api}/api/v1/namespaces/_/triggers/{trigger}",
                auth_token=token,
                events=["s3:ObjectCreated:*"],
                suffix=suffix,
            )
            self.folder_store.set_notification(bucket, [target])

    def stop(self) -> None:
        (self.home / "stack.json").unlink(missing_ok=True)
        if self.whisk is not None:
            self.whisk.stop()
        if self.store_server is not None:
            self.store_server.close()
        if self.folder_store is not None:
            self.folder_store.notifier.close()
        if self.ledger is not None:
            self.ledger.close()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ operations
    def require(self) -> tuple[Ledger, LocalStoreClient, OpenWhiskClient]:
        if self.ledger is None or self.store is None or self.ow is None:
            raise ConfigError("the embedded stack is not started")
        return self.ledger, self.store, self.ow

    def role_store(self, role: str) -> LocalStoreClient:
        """A client of the embedded store holding ``role``'s keys (and only its rights)."""
        if self.store_server is None:
            raise ConfigError("the embedded stack is not started")
        keys = self.roles[role]
        return LocalStoreClient(self.store_server.endpoint, keys["access_key"], keys["secret_key"])

    def publish_suite(self, names: list[str] | None = None) -> list[str]:
        """Publish every measure in the code's registry (or ``names``) at its own version,
        unless that version is already published. Returns what was published."""
        from qmroct.measures.base import registry
        from qmroct.orchestration.publication import publish_measure

        ledger, _, _ = self.require()
        store = self.role_store("measure-developer")
        published = {(m.name, m.version) for m in ledger.catalog.active_measures()}
        done = []
        for name, cls in sorted(registry().items()):
            if names is not None and name not in names:
                continue
            if (name, cls.version) in published:
                continue
            publish_measure(store, name, cls.version)
            done.append(f"{name} {cls.version}")
        return done

    def wait_published(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until ``count`` measure versions are active (their events went through)."""
        ledger, _, _ = self.require()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(ledger.catalog.active_measures()) >= count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"measure publications did not arrive within {timeout_s:.0f} s")

    def wait_idle(
        self,
        *,
        timeout_s: float = 600.0,
        expect_jobs: int = 0,
        settle_s: float = 1.0,
        progress: Callable[[Idle], None] | None = None,
    ) -> Idle:
        """Wait until no event is pending and no job is queued or in flight.

        ``expect_jobs`` guards the window before the first event has created any job.
        """
        ledger, _, _ = self.require()
        assert self.folder_store is not None
        start = time.monotonic()
        quiet_since: float | None = None
        state = self._idle_state(ledger, start)
        while time.monotonic() - start < timeout_s:
            state = self._idle_state(ledger, start)
            if progress is not None:
                progress(state)
            enough = state.done + state.dead >= expect_jobs
            if state.idle and enough:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return state
            else:
                quiet_since = None
            time.sleep(0.2)
        return state

    def _idle_state(self, ledger: Ledger, start: float) -> Idle:
        assert self.folder_store is not None
        counts = ledger.counts()
        queued = counts.total("queued") + counts.total("failed")
        pending = self.folder_store.notifier.pending()
        return Idle(
            idle=queued == 0 and counts.in_flight == 0 and pending == 0,
            queued=queued,
            in_flight=counts.in_flight,
            pending_events=pending,
            done=counts.total("done"),
            dead=counts.total("dead"),
            seconds=round(time.monotonic() - start, 2),
        )

    def activations(self, **kw: Any) -> list[dict[str, Any]]:
        _, _, ow = self.require()
        return list(ow.activations(**kw))

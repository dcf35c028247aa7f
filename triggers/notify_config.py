"""The MinIO side of the wiring, for production: the webhook target's environment and the
``mc event add`` commands that subscribe buckets to it.

Two shapes, both with ``queue_dir`` (without it MinIO drops an event whose POST fails):

- straight into OpenWhisk: endpoint ``https://OW/api/v1/namespaces/_/triggers/image-stored``
  with auth token ``"Basic <base64(uuid:key)>"`` (two words, so MinIO sends it verbatim);
- through the bridge (:mod:`qmroct.triggers.bridge`): the bridge URL and a one-word token,
  which MinIO sends as ``Bearer <token>``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator
from qmroct.secretfiles import write_private

_ID_RE = re.compile(r"^[A-Za-z0-9_]+$")


class Subscription(BaseModel):
    """``mc event add ALIAS/<bucket> <arn> --event put`` with optional prefix and suffix."""

    bucket: str
    prefix: str = ""
    suffix: str = ""
    events: str = "put"


class NotifyConfig(BaseModel):
    target_id: str = Field(description="the <ID> in MINIO_NOTIFY_WEBHOOK_*_<ID>")
    endpoint: str
    auth_token: str
    # Outside the drive `minio server` serves: a folder inside it would show up as a bucket
    # (and shares the data disk's failures).
    queue_dir: str = "/var/lib/minio-events"
    data_dir: str = Field("/data", description="the drive `minio server` serves")
    queue_limit: int = 100_000
    alias: str = "qmroct"
    subscriptions: list[Subscription]

    @field_validator("target_id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("the target id is letters, digits and '_'")
        return v

    @field_validator("queue_dir")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("MinIO requires an absolute queue_dir")
        return v

    @model_validator(mode="after")
    def _outside_data(self) -> NotifyConfig:
        data = self.data_dir.rstrip("/") + "/"
        if (self.queue_dir.rstrip("/") + "/").startswith(data):
            raise ValueError(
                f"queue_dir {self.queue_dir} is inside the data drive {self.data_dir}: "
                "MinIO would list it as a bucket; put it on another path"
            )
        return self

    @property
    def arn(self) -> str:
        return f"arn:minio:sqs::{self.target_id}:webhook"

    def env_lines(self) -> list[str]:
        i = self.target_id
        return [
            # Queue each event before the PUT is answered: without it an event can be lost
            # between the reply and the queue write, and the in-memory buffer drops past 50000.
            "MINIO_API_SYNC_EVENTS=on",
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{i}=on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{i}={self.endpoint}",
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{i}={shlex.quote(self.auth_token)}",
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{i}={self.queue_dir}",
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_LIMIT_{i}={self.queue_limit}",
        ]

    def mc_commands(self) -> list[str]:
        out = []
        for sub in self.subscriptions:
            cmd = [
                "mc",
                "event",
                "add",
                f"{self.alias}/{sub.bucket}",
                self.arn,
                "--event",
                sub.events,
            ]
            if sub.prefix:
                cmd += ["--prefix", sub.prefix]
            if sub.suffix:
                cmd += ["--suffix", sub.suffix]
            out.append(shlex.join(cmd))
        return out


def write_notify_config(config: NotifyConfig, out_dir: str | Path) -> list[Path]:
    """Write ``notify-<id>.env`` (the server's environment) and ``notify-<id>.sh`` (the ``mc``
    subscriptions) into ``out_dir`` (``infra/minio`` by convention). Returns both paths.

    The .env holds the auth token: keep it out of version control when it is a real one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = out / f"notify-{config.target_id.lower()}.env"
    text = "# MinIO webhook target (restart MinIO after changing it)\n"
    write_private(env, (text + "\n".join(config.env_lines()) + "\n").encode())
    script = out / f"notify-{config.target_id.lower()}.sh"
    script.write_text(
        "#!/bin/sh\n# Subscribe the buckets to the webhook target (MinIO must already have it).\n"
        "set -eu\n" + "\n".join(config.mc_commands()) + "\n"
    )
    script.chmod(0o755)
    return [env, script]

"""The IAM policy of each qmroct role, one JSON file per role.

The same files go to MinIO (``mc admin policy create``) and to the embedded store, which
enforces them for the per-role credentials ``qmroct up`` creates.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: Every role, in the order the docs list them.
ROLES: tuple[str, ...] = ("gateway", "orchestration", "researcher", "measure-developer", "admin")


def role_policy(role: str) -> dict[str, Any]:
    """The policy document of ``role`` (``infra/minio/policies/<role>.json``)."""
    if role not in ROLES:
        raise KeyError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    text = resources.files(__name__).joinpath(f"{role}.json").read_text()
    return json.loads(text)

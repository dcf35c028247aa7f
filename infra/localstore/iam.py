"""A small IAM evaluator for the embedded store: the S3 subset of AWS/MinIO policy documents.

The embedded store enforces the same JSON the production MinIO gets (``infra/minio/policies``),
with the semantics both share:

- a request is allowed only if some ``Allow`` statement matches it and no ``Deny`` statement
  does: an explicit deny always wins, and no match at all is a deny (AWS IAM "policy evaluation
  logic"; MinIO ``minio/pkg`` ``policy/policy.go`` ``IsAllowed`` checks every deny statement
  first, then the allows);
- ``Action`` and ``NotAction``, ``Resource`` and ``NotResource`` take a string or a list, with
  ``*`` (any run of characters) and ``?`` (one character) as wildcards (MinIO
  ``minio/pkg`` ``wildcard.Match``); action names compare without case (AWS: "action names are
  case-insensitive"), resources with case;
- S3 resources are ``arn:aws:s3:::bucket`` for bucket calls and ``arn:aws:s3:::bucket/key`` for
  object calls; ``*`` in a resource also spans ``/``.

A statement with a ``Condition`` or a ``Principal`` is refused when the policy is loaded, not
silently ignored: the roles' policies use neither, and honouring half a policy would allow more
than it says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from qmroct.errors import ConfigError

S3_ARN = "arn:aws:s3:::"
_KNOWN = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource"}


@lru_cache(maxsize=1024)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard_match(glob: str, value: str, *, ignore_case: bool = False) -> bool:
    """``*`` matches any run of characters (``/`` included), ``?`` exactly one."""
    return _pattern(glob, ignore_case).match(value) is not None


def resource_arn(bucket: str, key: str = "") -> str:
    """The ARN a request on ``bucket`` (or on one of its objects) is authorised against."""
    return f"{S3_ARN}{bucket}/{key}" if key else f"{S3_ARN}{bucket}"


def _strings(stmt: Mapping[str, Any], name: str, where: str) -> list[str]:
    value = stmt[name]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or not values:
        raise ConfigError(f"{where}: {name} must be a string or a non-empty list of strings")
    return values


class Statement:
    def __init__(self, stmt: Mapping[str, Any], where: str) -> None:
        unknown = set(stmt) - _KNOWN
        if unknown:
            raise ConfigError(f"{where}: unsupported statement fields {sorted(unknown)}")
        effect = stmt.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise ConfigError(f"{where}: Effect must be Allow or Deny, got {effect!r}")
        if ("Action" in stmt) == ("NotAction" in stmt):
            raise ConfigError(f"{where}: exactly one of Action and NotAction is required")
        if ("Resource" in stmt) == ("NotResource" in stmt):
            raise ConfigError(f"{where}: exactly one of Resource and NotResource is required")
        self.allow = effect == "Allow"
        self.not_action = "NotAction" in stmt
        self.actions = _strings(stmt, "NotAction" if self.not_action else "Action", where)
        self.not_resource = "NotResource" in stmt
        self.resources = _strings(stmt, "NotResource" if self.not_resource else "Resource", where)

    def matches(self, action: str, resource: str) -> bool:
        hit = any(wildcard_match(a, action, ignore_case=True) for a in self.actions)
        if hit == self.not_action:
            return False
        hit = any(wildcard_match(r, resource) for r in self.resources)
        return hit != self.not_resource


class Policy:
    """One policy document; :meth:`allows` answers one (action, resource) question."""

    def __init__(self, document: Mapping[str, Any], *, name: str = "policy") -> None:
        raw = document.get("Statement")
        stmts = [raw] if isinstance(raw, Mapping) else raw
        if not isinstance(stmts, list) or not stmts:
            raise ConfigError(f"{name}: Statement must be an object or a non-empty list")
        self.name = name
        self.statements = [Statement(s, f"{name} statement {i}") for i, s in enumerate(stmts)]

    def allows(self, action: str, resource: str) -> bool:
        matching = [s for s in self.statements if s.matches(action, resource)]
        if any(not s.allow for s in matching):
            return False  # an explicit deny wins over every allow
        return any(s.allow for s in matching)

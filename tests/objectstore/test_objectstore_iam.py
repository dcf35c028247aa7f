"""The embedded store's IAM evaluator: AWS/MinIO policy semantics on small documents."""

from __future__ import annotations

import pytest
from qmroct.errors import ConfigError
from qmroct.localstore.iam import Policy, resource_arn, wildcard_match
from qmroct.policies import ROLES, role_policy


def _policy(*statements: dict) -> Policy:
    return Policy({"Version": "2012-10-17", "Statement": list(statements)})


def test_default_is_deny_and_allow_needs_action_and_resource() -> None:
    p = _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a/*"})
    assert p.allows("s3:GetObject", resource_arn("a", "k/1"))
    assert not p.allows("s3:PutObject", resource_arn("a", "k/1"))
    assert not p.allows("s3:GetObject", resource_arn("b", "k/1"))
    assert not p.allows("s3:GetObject", resource_arn("a"))  # the bucket is not an object


def test_explicit_deny_wins_whatever_the_order() -> None:
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "s3:Get*", "Resource": "arn:aws:s3:::scans/*"}
    for p in (_policy(allow, deny), _policy(deny, allow)):
        assert not p.allows("s3:GetObject", resource_arn("scans", "x"))
        assert p.allows("s3:PutObject", resource_arn("scans", "x"))
        assert p.allows("s3:GetObject", resource_arn("results", "x"))


def test_wildcards_and_case() -> None:
    assert wildcard_match("oct-*", "oct-ingest")
    assert wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b/c")  # * spans "/"
    assert wildcard_match("s3:Get?bject", "s3:GetObject")
    assert not wildcard_match("s3:Get?bject", "s3:GetObjectVersion")
    assert not wildcard_match("oct-.*", "oct-ingest")  # regex characters are literal
    p = _policy({"Effect": "Allow", "Action": "S3:getobject", "Resource": "arn:aws:s3:::B/*"})
    assert p.allows("s3:GetObject", resource_arn("B", "k"))  # action names ignore case
    assert not p.allows("s3:GetObject", resource_arn("b", "k"))  # resources do not


def test_not_action_and_not_resource() -> None:
    p = _policy(
        {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "NotResource": ["arn:aws:s3:::ok", "arn:aws:s3:::ok/*"]},
    )
    assert p.allows("s3:PutObject", resource_arn("ok", "k"))
    assert not p.allows("s3:DeleteObject", resource_arn("ok", "k"))
    assert not p.allows("s3:PutObject", resource_arn("other", "k"))


@pytest.mark.parametrize(
    "stmt",
    [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"x": {}}},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"},
        {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"},
        {"Effect": "Allow", "Action": [], "Resource": "*"},
    ],
)
def test_what_it_cannot_honour_is_refused_at_load(stmt: dict) -> None:
    with pytest.raises(ConfigError):
        _policy(stmt)


def test_every_role_policy_loads_and_only_admin_creates_buckets() -> None:
    for role in ROLES:
        p = Policy(role_policy(role), name=role)
        assert p.allows("s3:CreateBucket", resource_arn("oct-ingest")) == (role == "admin")
    dev = Policy(role_policy("measure-developer"))
    assert dev.allows("s3:PutObject", resource_arn("oct-measures", "snr/1.0.0.json"))
    assert not dev.allows("s3:GetObject", resource_arn("oct-ingest", "p/s/ses/a.vol"))

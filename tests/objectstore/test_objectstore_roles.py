"""Each role's real code path, with the role's own keys and policy (infra/minio/policies), on
moto's S3 server with IAM enforcement on and on the embedded store: what the role's code does
succeeds, and what the role must not do is refused."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from qmroct.objectstore import open_store
from qmroct.objectstore.errors import AccessDenied
from qmroct.policies import ROLES, role_policy
from qmroct.storage import buckets

BUCKETS = [
    buckets.INGEST_BUCKET,
    buckets.MEASURES_BUCKET,
    buckets.RESULTS_BUCKET,
    buckets.DERIVED_BUCKET,
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Roles:
    """One backend with a user per role; ``store(role)`` is a client holding that role's keys."""

    def __init__(self, kind: str, endpoint: str, keys: dict[str, tuple[str, str]]) -> None:
        self.kind, self.endpoint, self.keys = kind, endpoint, keys

    def store(self, role: str) -> Any:
        access, secret = self.keys[role]
        return open_store(
            "minio" if self.kind == "moto" else "local", self.endpoint, access, secret
        )

    def env(self, role: str) -> dict[str, str]:
        """The environment a command run with ``role``'s keys gets (QMROCT_* settings)."""
        access, secret = self.keys[role]
        return {
            "QMROCT_STORE": "minio" if self.kind == "moto" else "local",
            "QMROCT_STORE_ENDPOINT": self.endpoint,
            "QMROCT_STORE_ACCESS_KEY": access,
            "QMROCT_STORE_SECRET_KEY": secret,
        }


def _moto_with_iam() -> Iterator[Roles]:
    """A moto server in its own process (its IAM switch is process-wide), one IAM user per role
    with the role's policy, then enforcement on (moto's /moto-api/reset-auth with 0 free calls,
    moto/core/authorization.py)."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        keys = {}
        for role in ROLES:
            iam.create_user(UserName=f"qmroct-{role}")
            iam.put_user_policy(
                UserName=f"qmroct-{role}",
                PolicyName=role,
                PolicyDocument=json.dumps(role_policy(role)),
            )
            k = iam.create_access_key(UserName=f"qmroct-{role}")["AccessKey"]
            keys[role] = (k["AccessKeyId"], k["SecretAccessKey"])
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
        yield Roles("moto", f"127.0.0.1:{port}", keys)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _embedded(root: Path) -> Iterator[Roles]:
    from qmroct.localstore.server import LocalStoreServer
    from qmroct.localstore.store import LocalFolderStore

    store = LocalFolderStore(root, min_part_size=1024)
    with LocalStoreServer(store, secret=secrets.token_hex(16)) as server:
        keys = {}
        for role in ROLES:
            keys[role] = (f"qmroct-{role}", secrets.token_hex(16))
            server.add_user(*keys[role], role_policy(role), role=role)
        yield Roles("local", server.endpoint, keys)
    store.close()


@pytest.fixture(scope="module", params=["moto", "local"])
def roles(request, tmp_path_factory) -> Iterator[Roles]:  # noqa: ANN001
    gen = _moto_with_iam() if request.param == "moto" else _embedded(tmp_path_factory.mktemp("st"))
    r = next(gen)
    # The admin's setup: the buckets and their versioning (infra/minio/setup.sh does this with mc).
    admin = r.store("admin")
    for b in BUCKETS:
        admin.ensure_bucket(b, versioning=True)
    yield r
    next(gen, None)


@pytest.fixture(scope="module")
def uploaded(roles: Roles, tmp_path_factory) -> dict[str, Any]:  # noqa: ANN001
    """One phantom scan uploaded through the gateway's code path with the gateway's keys."""
    from qmroct.embedded.demo import make_demo_scans
    from qmroct.gateway.pseudonyms import PseudonymStore
    from qmroct.gateway.state import GatewayState
    from qmroct.gateway.upload import Uploader

    work = tmp_path_factory.mktemp("gw")
    (src, _pattern, _defects) = make_demo_scans(1, work / "in")[0]

    def uploader() -> Uploader:
        return Uploader(
            roles.store("gateway"),
            PseudonymStore(work / "pseudonyms.sqlite3"),
            GatewayState(work / "state.sqlite3"),
            project="roles",
            compress="none",
            retries=0,
        )

    first = uploader().upload_file(src)
    again = uploader().upload_file(src)
    return {"first": first, "again": again, "src": src}


def test_admin_sets_up_buckets_and_others_cannot(roles: Roles) -> None:
    roles.store("admin").set_versioning(buckets.DERIVED_BUCKET, True)
    for role in ("gateway", "orchestration", "researcher", "measure-developer"):
        with pytest.raises(AccessDenied):
            roles.store(role).ensure_bucket("oct-other", versioning=True)
        with pytest.raises(AccessDenied):
            roles.store(role).set_versioning(buckets.INGEST_BUCKET, False)


def test_gateway_uploads_and_reports_success(roles: Roles, uploaded: dict[str, Any]) -> None:
    first, again = uploaded["first"], uploaded["again"]
    assert first.status == "uploaded", first.reason
    # A rerun finds the object by its hash (a HEAD, s3:GetObject on oct-ingest) and sends
    # nothing: one version, so one event.
    assert again.status == "duplicate", again.reason
    versions = roles.store("admin").list_versions(buckets.INGEST_BUCKET, first.key)
    assert len(versions) == 1
    stored = roles.store("admin").get(buckets.INGEST_BUCKET, first.key)
    assert hashlib.sha256(stored).hexdigest() == first.sha256


def test_gateway_multipart_upload_reports_success(roles: Roles) -> None:
    gw = roles.store("gateway")
    key = "roles/s1/ses1/multi.vol"
    upload_id = gw.start_multipart(buckets.INGEST_BUCKET, key, "application/octet-stream", {})
    etag = gw.upload_part(buckets.INGEST_BUCKET, key, upload_id, 1, b"x" * 2048)
    assert [p.part_number for p in gw.list_parts(buckets.INGEST_BUCKET, key, upload_id)] == [1]
    info = gw.complete_multipart(buckets.INGEST_BUCKET, key, upload_id, [(1, etag)])
    assert info.size == 2048
    assert roles.store("admin").stat(buckets.INGEST_BUCKET, key).size == 2048


def test_gateway_cannot_touch_other_buckets(roles: Roles, uploaded: dict[str, Any]) -> None:
    gw = roles.store("gateway")
    with pytest.raises(AccessDenied):
        gw.put(buckets.MEASURES_BUCKET, "snr/9.0.0.json", b"{}", content_type="application/json")
    with pytest.raises(AccessDenied):
        list(gw.list(buckets.INGEST_BUCKET))
    roles.store("admin").put(buckets.RESULTS_BUCKET, "r/x.json", b"{}")
    with pytest.raises(AccessDenied):
        gw.get(buckets.RESULTS_BUCKET, "r/x.json")


def test_measure_publish_succeeds_with_the_developers_keys(
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qmroct.cli.main import cli

    env = roles.env("measure-developer")
    if roles.kind == "local":
        # On a laptop the command finds the running stack in QMROCT_HOME/stack.json and takes
        # the developer's keys from it; the top-level keys are wrong on purpose.
        access, secret = roles.keys["measure-developer"]
        (tmp_path / "stack.json").write_text(
            json.dumps(
                {
                    "store_endpoint": roles.endpoint,
                    "store_access_key": "nobody",
                    "store_secret_key": "wrong",
                    "roles": {"measure-developer": {"access_key": access, "secret_key": secret}},
                }
            )
        )
        env = {"QMROCT_STORE": "local", "QMROCT_STORE_ENDPOINT": ""}
    env["QMROCT_HOME"] = str(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = CliRunner().invoke(cli, ["measure", "publish", "snr", "--version", "9.1.0"])
    assert out.exit_code == 0, out.output
    body = json.loads(roles.store("admin").get(buckets.MEASURES_BUCKET, "snr/9.1.0.json"))
    assert (body["name"], body["version"], body["state"]) == ("snr", "9.1.0", "published")


def test_developer_cannot_read_a_scan(roles: Roles, uploaded: dict[str, Any]) -> None:
    dev = roles.store("measure-developer")
    key = uploaded["first"].key
    with pytest.raises(AccessDenied):
        dev.get(buckets.INGEST_BUCKET, key)
    with pytest.raises(AccessDenied):
        dev.stat(buckets.INGEST_BUCKET, key)
    with pytest.raises(AccessDenied):
        list(dev.list(buckets.INGEST_BUCKET))
    with pytest.raises(AccessDenied):
        dev.put(buckets.INGEST_BUCKET, "p/s/ses/forged.vol", b"x")
    with pytest.raises(AccessDenied):
        dev.get(buckets.RESULTS_BUCKET, "r/x.json")


def test_researcher_reads_results_and_scans_and_cannot_write(
    roles: Roles, uploaded: dict[str, Any]
) -> None:
    roles.store("orchestration").put(buckets.RESULTS_BUCKET, "r/v.json", b'{"snr": 3}')
    res = roles.store("researcher")
    assert res.get(buckets.RESULTS_BUCKET, "r/v.json") == b'{"snr": 3}'
    assert "r/v.json" in {o.key for o in res.list(buckets.RESULTS_BUCKET)}
    assert len(res.get(buckets.INGEST_BUCKET, uploaded["first"].key)) > 0
    for bucket, key in [
        (buckets.RESULTS_BUCKET, "r/v.json"),
        (buckets.INGEST_BUCKET, "p/s/ses/x.vol"),
        (buckets.MEASURES_BUCKET, "snr/9.9.9.json"),
    ]:
        with pytest.raises(AccessDenied):
            res.put(bucket, key, b"overwritten")
    assert roles.store("admin").get(buckets.RESULTS_BUCKET, "r/v.json") == b'{"snr": 3}'


def test_orchestration_reads_versions_lists_and_writes_results_only(
    roles: Roles, uploaded: dict[str, Any]
) -> None:
    orch = roles.store("orchestration")
    first = uploaded["first"]
    version = roles.store("admin").stat(buckets.INGEST_BUCKET, first.key).version_id
    # What on-image-stored and xnat-callback do: read the scan at the event's version.
    data = orch.get(buckets.INGEST_BUCKET, first.key, version_id=version)
    assert len(data) > 0
    # The resync sweep lists the ingest and measures buckets.
    assert first.key in {o.key for o in orch.list(buckets.INGEST_BUCKET)}
    list(orch.list(buckets.MEASURES_BUCKET))
    orch.put(buckets.DERIVED_BUCKET, "d/seg.npz", b"npz")
    with pytest.raises(AccessDenied):
        orch.put(buckets.INGEST_BUCKET, first.key, b"overwrite a scan")
    with pytest.raises(AccessDenied):
        orch.put(buckets.MEASURES_BUCKET, "snr/9.9.9.json", b"{}")
    with pytest.raises(AccessDenied):
        orch.ensure_bucket(buckets.RESULTS_BUCKET, versioning=False)


def test_presigned_urls_carry_their_signers_rights(tmp_path: Path) -> None:
    # Embedded store only: moto checks no IAM policy on query-string (presigned) requests.
    gen = _embedded(tmp_path / "st")
    r = next(gen)
    try:
        r.store("admin").ensure_bucket(buckets.INGEST_BUCKET)
        r.store("gateway").put(buckets.INGEST_BUCKET, "p/s/ses/a.vol", b"scan")
        ok = r.store("orchestration").presign_get(buckets.INGEST_BUCKET, "p/s/ses/a.vol")
        assert requests.get(ok, timeout=10).content == b"scan"
        denied = r.store("measure-developer").presign_get(buckets.INGEST_BUCKET, "p/s/ses/a.vol")
        assert requests.get(denied, timeout=10).status_code == 403
        put = r.store("researcher").presign_put(buckets.RESULTS_BUCKET, "r/p.png")
        resp = requests.put(put, data=b"png", headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 403
    finally:
        next(gen, None)

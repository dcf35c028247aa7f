"""The measure developer's store credentials, under IAM enforcement (moto server, its own
process, the project's policy file): the test set is readable, a patient scan and a production
result are not, and the developer cannot write into the cleared scans."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from qmroct.measures.devtest import TEST_BUCKET, authorised_scans, ensure_phantoms
from qmroct.objectstore import open_store
from qmroct.objectstore.errors import AccessDenied

POLICY = Path(__file__).resolve().parents[2] / "infra" / "minio" / "policies"
PATIENT_KEY = "P1/sub-001/ses-1/scan.vol"
RESULT_KEY = "ab/cd/signal/1.0.0/values.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def enforcing_moto() -> Iterator[str]:
    """A moto server whose IAM enforcement is switched on once the setup is done."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def developer_keys(enforcing_moto: str) -> tuple[str, str]:
    import boto3

    url = f"http://{enforcing_moto}"
    admin = open_store("minio", enforcing_moto, "admin", "admin-secret", region="us-east-1")
    for bucket in ("oct-ingest", "oct-results", "oct-measures", TEST_BUCKET):
        admin.ensure_bucket(bucket)
    admin.put("oct-ingest", PATIENT_KEY, b"patient scan bytes")
    admin.put("oct-results", RESULT_KEY, b'{"snr": 20}')
    admin.put(TEST_BUCKET, "cleared/scan_cleared.vol", b"cleared scan bytes")
    ensure_phantoms(admin)
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="admin",
        aws_secret_access_key="admin-secret",
    )
    doc = (POLICY / "measure-developer.json").read_text()
    arn = iam.create_policy(PolicyName="measure-developer", PolicyDocument=doc)["Policy"]["Arn"]
    iam.create_user(UserName="dev")
    iam.attach_user_policy(UserName="dev", PolicyArn=arn)
    key = iam.create_access_key(UserName="dev")["AccessKey"]
    # From here on every request is authenticated and authorised by IAM.
    requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_developer_keys_are_refused_on_a_patient_scan(enforcing_moto, developer_keys):
    dev = open_store("minio", enforcing_moto, *developer_keys, region="us-east-1")
    with pytest.raises(AccessDenied) as err:
        dev.get("oct-ingest", PATIENT_KEY)
    assert "oct-ingest" in str(err.value)
    with pytest.raises(AccessDenied):
        dev.stat("oct-ingest", PATIENT_KEY)
    with pytest.raises(AccessDenied):
        list(dev.list("oct-ingest", "P1/"))
    # Nor a production result.
    with pytest.raises(AccessDenied):
        dev.get("oct-results", RESULT_KEY)
    # Nor by a URL signed with their keys. MinIO answers 403 AccessDenied; moto's query-string
    # authorisation answers 500 under IAM enforcement. Either way no byte of the scan.
    resp = requests.get(dev.presign_get("oct-ingest", PATIENT_KEY), timeout=5)
    assert resp.status_code in (403, 500) and b"patient scan bytes" not in resp.content


def test_developer_keys_read_the_test_set_only(enforcing_moto, developer_keys):
    dev = open_store("minio", enforcing_moto, *developer_keys, region="us-east-1")
    scans = authorised_scans(dev, "test")
    assert {s.key for s in scans} == {
        "phantoms/clean.vol",
        "phantoms/low_signal.vol",
        "phantoms/blur.vol",
        "cleared/scan_cleared.vol",
    }
    assert dev.get(TEST_BUCKET, "cleared/scan_cleared.vol") == b"cleared scan bytes"
    assert dev.get(TEST_BUCKET, "phantoms/clean.vol")[:3] == b"HSF"  # a Heyex .vol
    dev.put(TEST_BUCKET, "runs/x/picture.png", b"png")
    # Only operators clear scans for development.
    with pytest.raises(AccessDenied):
        dev.put(TEST_BUCKET, "cleared/mine.vol", b"not cleared")
    with pytest.raises(AccessDenied):
        dev.put("oct-ingest", "P1/x.vol", b"x")

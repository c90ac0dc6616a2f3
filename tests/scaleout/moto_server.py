"""Fixtures: moto's S3 as a real HTTP server process on 127.0.0.1, and a fresh bucket per test.

Not a ``conftest.py`` (see ``tests/completion/completion_env.py``): test modules import the
fixtures from here (``*_fixture``; pytest knows them by their ``name``).

The server is ``python -m moto.server`` in a subprocess on a free loopback port, started once
per session and terminated at the end.  While it runs, the environment holds fake credentials
and points no AWS variable anywhere else, so nothing can reach a real account.  Without moto
the tests are skipped, unless ``BEAUTYSPOT_REQUIRE_SCALEOUT=1`` (CI), which makes them fail.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
PREFIX = "blobs/etl"

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# Variables that could send a client elsewhere than the test server.
CLEARED_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    pid: int


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_moto() -> None:
    """Skip (or, with BEAUTYSPOT_REQUIRE_SCALEOUT=1, fail) when moto/boto3 are missing."""
    missing = [name for name in ("boto3", "moto", "flask") if not _importable(name)]
    if not missing:
        return
    reason = f"S3 tests need {', '.join(missing)}: pip install 'beautyspot[test]'"
    if os.environ.get("BEAUTYSPOT_REQUIRE_SCALEOUT") == "1":
        pytest.fail(f"BEAUTYSPOT_REQUIRE_SCALEOUT=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# No proxy for the readiness probe either: only loopback traffic.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://{HOST}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(FAKE_ENV)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _answers(url + "/moto-api/"):
            return proc, url
        time.sleep(0.1)
    _stop(proc)
    tail = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"moto server did not start on {url} (exit {proc.returncode}):\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto in server mode on a free 127.0.0.1 port, with fake AWS credentials in the env."""
    require_moto()
    patch = pytest.MonkeyPatch()
    for name in CLEARED_ENV:
        patch.delenv(name, raising=False)
    for name, value in FAKE_ENV.items():
        patch.setenv(name, value)
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    try:
        proc, url = _start(log_path)
        try:
            yield MotoServer(url, proc.pid)
        finally:
            _stop(proc)
    finally:
        patch.undo()


def make_client(endpoint_url: str, **config: Any) -> Any:
    """A boto3 S3 client for the test server (``config``: extra botocore Config options)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=32, **config),
    )


@pytest.fixture(scope="session", name="s3_client")
def s3_client_fixture(s3_server: MotoServer) -> Any:
    return make_client(s3_server.endpoint_url)


def _empty_bucket(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents") or []]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(name="s3_bucket")
def s3_bucket_fixture(s3_client: Any) -> Iterator[str]:
    """A new, empty bucket (unique name), emptied and removed after the test."""
    bucket = f"bs-test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=bucket)
    yield bucket
    _empty_bucket(s3_client, bucket)


@pytest.fixture(name="s3_storage")
def s3_storage_fixture(s3_client: Any, s3_bucket: str) -> Any:
    """An S3Storage on prefix ``blobs/etl`` of a fresh bucket."""
    from beautyspot.s3storage import S3Storage

    return S3Storage(s3_bucket, PREFIX, client=s3_client)

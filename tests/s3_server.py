"""A real S3 API for the tests: moto's standalone server on a free port, one per session.

``s3_endpoint`` starts it and puts test credentials in ``os.environ`` for the session, so the standard AWS
credential chain finds them in this process and in every process a test starts; ``s3_bucket`` is a fresh
bucket per test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any key
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Set elsewhere, these would outrank or disturb the test credentials above.
_CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(port: int) -> list[str]:
    beside = Path(sys.executable).with_name("moto_server")
    program = str(beside) if beside.exists() else shutil.which("moto_server")
    base = [program] if program else [sys.executable, "-m", "moto.server"]
    return [*base, "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server that lives for the session."""
    saved = {name: os.environ.get(name) for name in (*_CREDENTIALS, *_CLEARED)}
    os.environ.update(_CREDENTIALS)
    for name in _CLEARED:
        os.environ.pop(name, None)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(_command(port), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}; see {log.name}")
            try:
                httpx.get(url + "/", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {url}") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@lru_cache
def _admin(endpoint: str) -> Any:
    # Making a client costs a few hundred milliseconds (its service model): one per server.
    return boto3.client("s3", endpoint_url=endpoint, region_name=_CREDENTIALS["AWS_DEFAULT_REGION"])


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the session's S3 server."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    _admin(s3_endpoint).create_bucket(Bucket=name)
    return name

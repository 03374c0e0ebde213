"""An S3-compatible server on 127.0.0.1 for the object-store tests: moto's server mode (the test
extra's `moto[server]`), one process per test module, nothing downloaded, no other address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.processes import dies_with_this_process

# Every AWS variable a test might inherit is replaced: no profile, no instance metadata (169.254.169.254).
AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(endpoint: str | None, credentials: bool = True) -> dict[str, str]:
    """The environment variables a driver (or a Ray node) uses to reach the test server."""
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return env


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any AWS or Ray address variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES and k != "RAY_ADDRESS"}
    return {**env, **extra}


class S3Server:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.env = aws_env(endpoint)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        name = f"s3l-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, dict]:
        """key -> {ETag, LastModified, Size} of every object under `prefix`."""
        found: dict[str, dict] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = {"ETag": item["ETag"], "LastModified": item["LastModified"], "Size": item["Size"]}
        return found

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def start_server() -> Iterator[S3Server]:
    pytest.importorskip("moto.server", reason="the object-store tests need the test extra's moto[server]")
    port = free_port()
    log = open(os.devnull, "wb")
    # killed with pytest, even by SIGKILL (the `finally` below ends it on every other way out)
    server = subprocess.Popen(dies_with_this_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]),
                              stdout=log, stderr=log, env=clean_env({}))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()

"""An S3-compatible server on loopback for tests and local runs: moto's server mode.

    with S3Server(bucket="ml-pipeline") as s3:
        env = s3.env("runs")      # ML_PIPELINE_STORAGE=s3://ml-pipeline/runs, AWS_* for it
        ...
        s3.keys("runs/")          # what landed in the bucket

No MinIO build is reachable here; `moto_server` (moto[server], a dev requirement, next to
the running Python) speaks the S3 protocol well enough for s3fs and boto3. The server
keeps everything in memory and is stopped (its process group killed) on `stop()`.
Credentials are dummies: moto accepts any.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devtools.ports import free_port

DUMMY_KEY_ID = "testing"
DUMMY_SECRET = "testing"  # moto accepts any credentials
REGION = "us-east-1"


def moto_server_command() -> Path:
    """`moto_server` of the running environment (beside `sys.executable`)."""
    found = Path(sys.executable).parent / "moto_server"
    if not found.exists():
        raise FileNotFoundError(
            f"{found}: moto's server is not installed in this environment; install the dev "
            "requirements (moto[server]) or use another S3 endpoint"
        )
    return found


class S3Server:
    """One `moto_server` process on a free loopback port, with `bucket` created."""

    def __init__(self, bucket: str = "ml-pipeline", host: str = "127.0.0.1", port: int = 0):
        self.bucket = bucket
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> S3Server:
        if self.process is not None:
            return self
        self.process = subprocess.Popen(
            [str(moto_server_command()), "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with {self.process.returncode} on {self.endpoint_url}"
                )
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answered
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"moto_server did not answer on {self.endpoint_url}"
                    ) from exc
                time.sleep(0.1)
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(timeout=10)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, prefix: str = "") -> dict[str, str]:
        """The environment that points the pipeline's storage root at this bucket (under
        `prefix`), with the standard AWS variables for the endpoint and dummy keys."""
        root = f"s3://{self.bucket}" + (f"/{prefix.strip('/')}" if prefix.strip("/") else "")
        return {
            "ML_PIPELINE_STORAGE": root,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET,
            region_name=REGION,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`, sorted."""
        found: list[str] = []
        pages = self.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

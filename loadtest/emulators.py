"""Object-store emulators for the benchmarks, each a subprocess on a free port of
127.0.0.1, stopped with the ``ExitStack`` that started it: moto's S3 server,
gcp-storage-emulator (in the test extra) and Azurite (``make emulators``).
``Store.put`` uploads an object, ``Store.env`` points a server's sources at it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from loadtest.common import ROOT, free_port

AZURITE = ROOT / "tests" / "emulators" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_NAME = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


@dataclass
class Store:
    scheme: str  # s3, gs, abs
    endpoint: str
    client: Any = None
    buckets: set[str] = field(default_factory=set)

    def create(self, bucket: str) -> None:
        if bucket in self.buckets:
            return
        if self.scheme == "s3":
            self.client.create_bucket(Bucket=bucket)
        elif self.scheme == "gs":
            _call(self.endpoint + "/storage/v1/b", json.dumps({"name": bucket}).encode(),
                  "application/json")
        else:
            self.client.create_container(bucket)
        self.buckets.add(bucket)

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.create(bucket)
        if self.scheme == "s3":
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        elif self.scheme == "gs":
            query = urlencode({"uploadType": "media", "name": key})
            _call(f"{self.endpoint}/upload/storage/v1/b/{bucket}/o?{query}", data, content_type)
        else:
            from azure.storage.blob import ContentSettings
            self.client.get_blob_client(bucket, key).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    def env(self) -> dict[str, str]:
        """Settings that enable this store's sources."""
        if self.scheme == "s3":
            return {"IMGPROXY_USE_S3": "1", "IMGPROXY_S3_ENDPOINT": self.endpoint,
                    "IMGPROXY_S3_REGION": "us-east-1"}
        if self.scheme == "gs":
            return {"IMGPROXY_USE_GCS": "1", "IMGPROXY_GCS_ENDPOINT": self.endpoint,
                    "VIPSGATE_GCS_NO_AUTH": "1"}
        return {"IMGPROXY_USE_ABS": "1", "IMGPROXY_ABS_NAME": AZURITE_NAME,
                "IMGPROXY_ABS_KEY": AZURITE_KEY, "IMGPROXY_ABS_ENDPOINT": self.endpoint}


def _call(url: str, body: bytes, content_type: str) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def spawn(stack: contextlib.ExitStack, argv: list[str]) -> None:
    """Start ``argv`` quietly; ``stack`` stops it."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (proc.terminate(), proc.wait(10)))


def until_ready(ready: Callable[[], object], what: str) -> None:
    """Poll ``ready`` for up to 30 s while a subprocess starts."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # polling a subprocess's start-up
        try:
            ready()
            return
        except Exception:  # not listening yet
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def moto(stack: contextlib.ExitStack) -> Store:
    import boto3
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    port = free_port()
    spawn(stack, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    until_ready(client.list_buckets, "moto's server")
    return Store("s3", endpoint, client)


# gcp-storage-emulator serves one request at a time (http.server) and closes every
# connection (HTTP/1.0); with the standard listen backlog of 5, connections beyond it are
# dropped and retried a second later. A deeper backlog keeps that out of the figures.
_GCS_MAIN = ("import socketserver, sys; socketserver.TCPServer.request_queue_size = 256; "
             "from gcp_storage_emulator.__main__ import main; main(sys.argv[1:])")


def gcs(stack: contextlib.ExitStack) -> Store:
    port = free_port()
    spawn(stack, [sys.executable, "-c", _GCS_MAIN, "start", "--host", "127.0.0.1",
                   "--port", str(port), "--in-memory", "-q"])
    endpoint = f"http://127.0.0.1:{port}"
    until_ready(lambda: urllib.request.urlopen(f"{endpoint}/storage/v1/b?project=p", timeout=1),
           "gcp-storage-emulator")
    return Store("gs", endpoint)


def azurite(stack: contextlib.ExitStack) -> Store:
    binary = str(AZURITE) if AZURITE.exists() else shutil.which("azurite-blob")
    if not binary:
        raise SystemExit("Azurite not found: make emulators (needs npm)")
    port = free_port()
    spawn(stack, [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                   "--inMemoryPersistence", "--silent", "--disableTelemetry",
                   "--skipApiVersionCheck"])
    from azure.storage.blob import BlobServiceClient
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_NAME}"
    client = BlobServiceClient(endpoint, credential={"account_name": AZURITE_NAME,
                                                     "account_key": AZURITE_KEY})
    until_ready(lambda: list(client.list_containers()), "Azurite")
    return Store("abs", endpoint, client)


STARTERS = {"s3": moto, "gs": gcs, "abs": azurite}

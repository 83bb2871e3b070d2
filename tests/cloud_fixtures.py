"""Real emulators of the cloud object stores on 127.0.0.1, once per test session (test
modules import the ``gcs`` and ``azurite`` fixtures, as they do ``s3``):

``gcs`` runs ``gcp-storage-emulator`` (PyPI, in the test extra) in a thread of the test
process, like moto's server for S3; ``azurite`` runs Azurite's blob service (npm,
installed into tests/emulators/ by ``make emulators``, which ``make test`` runs) as a
subprocess on a free port, in memory, and stops it after. Each skips, with the reason,
where its emulator cannot be installed. Both arrange the objects the tests read.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from conftest import ROOT, Output, free_port
from imagegen import jpeg

BUCKET = "vg-images"  # in both stores
OTHER = "vg-other"
# Azurite's well-known development account (public, in every Azure SDK's docs)
AZURITE_NAME = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
AZURITE_BINARY = ROOT / "tests" / "emulators" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_MISSING = ("Azurite is not installed: `make emulators` (run by `make test`) installs "
                   "it into tests/emulators/ with npm")


# --- Google Cloud Storage: gcp-storage-emulator -----------------------------------------

@dataclass(frozen=True)
class GcsWorld:
    endpoint: str

    def env(self, **extra: str) -> dict[str, str]:
        """Settings that point the proxy's ``gs://`` source at the emulator."""
        return {"IMGPROXY_USE_GCS": "1", "IMGPROXY_GCS_ENDPOINT": self.endpoint,
                "VIPSGATE_GCS_NO_AUTH": "1", **extra}

    def _call(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.endpoint + path, data=body, method=method,
                                         headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as answer:
            data = answer.read()
        return json.loads(data) if data else None

    def create_bucket(self, name: str) -> None:
        self._call("POST", "/storage/v1/b", json.dumps({"name": name}).encode(),
                   {"Content-Type": "application/json"})

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "image/jpeg"
            ) -> dict[str, Any]:
        """Upload (or replace) an object; returns its resource (``generation``, ...)."""
        query = urlencode({"uploadType": "media", "name": name})
        result: dict[str, Any] = self._call("POST", f"/upload/storage/v1/b/{bucket}/o?{query}",
                                            data, {"Content-Type": content_type})
        return result

    def names(self, bucket: str) -> list[str]:
        listing = self._call("GET", f"/storage/v1/b/{quote(bucket)}/o")
        return [item["name"] for item in listing.get("items") or []]

    def buckets(self) -> list[str]:
        listing = self._call("GET", "/storage/v1/b?project=vipsgate")
        return [item["name"] for item in listing.get("items") or []]


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsWorld]:
    emulator = pytest.importorskip(
        "gcp_storage_emulator.server",
        reason="gcp-storage-emulator is not installed (it is in the test extra: make install)")
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        world = GcsWorld(f"http://127.0.0.1:{port}")
        for bucket in (BUCKET, OTHER):
            world.create_bucket(bucket)
        world.put(BUCKET, "photos/cat.jpg", jpeg(80, 60))
        world.put(BUCKET, "dir with space/cat+1.jpg", jpeg(80, 60))
        yield world
    finally:
        server.stop()


# --- Azure Blob Storage: Azurite ---------------------------------------------------------

@dataclass(frozen=True)
class AzureWorld:
    endpoint: str
    service: Any  # a synchronous BlobServiceClient, for arranging blobs
    name: str = AZURITE_NAME
    key: str = AZURITE_KEY

    def env(self, **extra: str) -> dict[str, str]:
        """Settings that point the proxy's ``abs://`` source at Azurite."""
        return {"IMGPROXY_USE_ABS": "1", "IMGPROXY_ABS_NAME": AZURITE_NAME,
                "IMGPROXY_ABS_KEY": AZURITE_KEY, "IMGPROXY_ABS_ENDPOINT": self.endpoint,
                **extra}

    def put(self, container: str, name: str, data: bytes, content_type: str = "image/jpeg",
            cache_control: str | None = None) -> dict[str, Any]:
        from azure.storage.blob import ContentSettings
        blob = self.service.get_blob_client(container, name)
        settings = ContentSettings(content_type=content_type, cache_control=cache_control)
        result: dict[str, Any] = blob.upload_blob(data, overwrite=True,
                                                  content_settings=settings)
        return result

    def snapshot(self, container: str, name: str) -> str:
        snapshot: str = self.service.get_blob_client(container, name).create_snapshot()[
            "snapshot"]
        return snapshot

    def properties(self, container: str, name: str) -> Any:
        return self.service.get_blob_client(container, name).get_blob_properties()

    def names(self, container: str) -> list[str]:
        return [b.name for b in self.service.get_container_client(container).list_blobs()]


def azurite_binary() -> str:
    if AZURITE_BINARY.exists():
        return str(AZURITE_BINARY)
    found = shutil.which("azurite-blob")
    if found is None:
        pytest.skip(AZURITE_MISSING)
    return found


class Azurite:
    """``azurite-blob`` on a free port of 127.0.0.1, in memory (``extra``: more options,
    e.g. ``--cert``/``--key``/``--oauth basic``); a context manager that stops it."""

    def __init__(self, binary: str, workspace: Path, extra: tuple[str, ...] = (),
                 scheme: str = "http") -> None:
        self.proc = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
             "--extentMemoryLimit", "256", "--disableTelemetry", "--skipApiVersionCheck",
             "--silent", *extra],
            cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.output = Output(self.proc.stdout, "azurite")
        try:
            banner = self.output.wait_for(rf"listens on ({scheme}://127\.0\.0\.1:\d+)",
                                          timeout=60)[0]
        except BaseException:
            self.stop()
            raise
        self.endpoint = f"{banner.group(1)}/{AZURITE_NAME}"

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.output.rest()


def arrange(endpoint: str, **client_options: Any) -> AzureWorld:
    """A world on the Azurite at ``endpoint``: the containers and blobs the tests read."""
    from azure.storage.blob import BlobServiceClient
    service = BlobServiceClient(endpoint, credential={"account_name": AZURITE_NAME,
                                                      "account_key": AZURITE_KEY},
                                **client_options)
    world = AzureWorld(endpoint, service)
    for container in (BUCKET, OTHER):
        service.create_container(container)
    world.put(BUCKET, "photos/cat.jpg", jpeg(80, 60), cache_control="public, max-age=600")
    world.put(BUCKET, "dir with space/cat+1.jpg", jpeg(80, 60))
    return world


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureWorld]:
    binary = azurite_binary()
    pytest.importorskip("azure.storage.blob",
                        reason="azure-storage-blob is not installed (vipsgate[azure])")
    with Azurite(binary, tmp_path_factory.mktemp("azurite")) as server:
        world = arrange(server.endpoint)
        try:
            yield world
        finally:
            world.service.close()

"""Real parts for the shared-tier tests (a pytest plugin: test modules name it in
``pytest_plugins`` and never import it; the helpers are in tierkit.py): a Redis
(or Valkey) server on 127.0.0.1, an origin that counts its hits, and pods (apps) that
share one tier.

``redis_server`` (one per session) and ``redis_factory`` (private servers a test may
stop) start Debian's ``redis-server`` (``make test`` installs it when it runs as root)
or a ``valkey-server`` on PATH, on a free port, without persistence, and stop it
after; without either binary the tests that need it skip with the reason.
``tier_env`` is parametrized over the adapters; the module using it imports the
``s3`` fixture (s3_fixtures.py) and the ``gcs`` and ``azurite`` emulators
(cloud_fixtures.py).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tierkit import TIER_BUCKET, free_port

REDIS_BINARIES = ("redis-server", "valkey-server")
MISSING = ("redis-server not available: install Debian's redis-server package "
           "(make test does it when run as root)")


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 (no disk persistence)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--maxmemory", "128mb",
             "--maxmemory-policy", "allkeys-lru"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:  # polling a subprocess's start-up: no event announces it
            try:
                if self.command("PING") in (b"PONG", "PONG", True):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.02)

    def command(self, *args: str) -> object:
        """Send one command with a short-lived client; returns the decoded reply."""
        import redis
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                         socket_connect_timeout=1) as client:
            return client.execute_command(*args)

    def keys(self) -> list[bytes]:
        result = self.command("KEYS", "*")
        assert isinstance(result, list)
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def redis_binary() -> str:
    for name in REDIS_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(MISSING)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Private servers (stopped at the end of the test, if the test did not)."""
    binary = redis_binary()
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        servers.append(RedisServer(binary, tmp_path / f"redis-{len(servers)}").start())
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


# --- pods sharing a tier ---------------------------------------------------------------

def s3_tier_env(world: Any, prefix: str) -> dict[str, str]:
    with contextlib.suppress(world.client.exceptions.BucketAlreadyOwnedByYou):
        world.client.create_bucket(Bucket=TIER_BUCKET)
    return {"IMGPROXY_CACHE_USE": "s3", "IMGPROXY_CACHE_BUCKET": TIER_BUCKET,
            "IMGPROXY_CACHE_S3_ENDPOINT": world.endpoint, "IMGPROXY_CACHE_S3_REGION": "us-east-1",
            "IMGPROXY_CACHE_PATH_PREFIX": prefix}


#: the emulators share the test machine's CPUs (one serves a request at a time): a busy
#: moment must not turn a write into a timeout, which these tests do not measure
EMULATED = {"VIPSGATE_CACHE_TIMEOUT": "5"}


def gcs_tier_env(world: Any, prefix: str) -> dict[str, str]:
    if TIER_BUCKET not in world.buckets():
        world.create_bucket(TIER_BUCKET)
    return {"IMGPROXY_CACHE_USE": "gcs", "IMGPROXY_CACHE_BUCKET": TIER_BUCKET,
            "IMGPROXY_CACHE_GCS_ENDPOINT": world.endpoint, "VIPSGATE_CACHE_GCS_NO_AUTH": "1",
            "IMGPROXY_CACHE_PATH_PREFIX": prefix, **EMULATED}


def abs_tier_env(world: Any, prefix: str) -> dict[str, str]:
    from azure.core.exceptions import ResourceExistsError
    with contextlib.suppress(ResourceExistsError):
        world.service.create_container(TIER_BUCKET)
    return {"IMGPROXY_CACHE_USE": "abs", "IMGPROXY_CACHE_BUCKET": TIER_BUCKET,
            "IMGPROXY_CACHE_ABS_NAME": world.name, "IMGPROXY_CACHE_ABS_KEY": world.key,
            "IMGPROXY_CACHE_ABS_ENDPOINT": world.endpoint, "IMGPROXY_CACHE_PATH_PREFIX": prefix,
            **EMULATED}


@pytest.fixture(params=["fs", "s3", "redis", "gcs", "abs"])
def tier_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Settings of one shared tier; a fresh prefix per test keeps tests apart."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    if request.param == "fs":
        return {"IMGPROXY_CACHE_USE": "fs", "IMGPROXY_CACHE_FS_ROOT": str(tmp_path / "tier"),
                "IMGPROXY_CACHE_PATH_PREFIX": prefix}
    if request.param == "s3":
        return s3_tier_env(request.getfixturevalue("s3"), prefix)
    if request.param == "gcs":
        return gcs_tier_env(request.getfixturevalue("gcs"), prefix)
    if request.param == "abs":
        return abs_tier_env(request.getfixturevalue("azurite"), prefix)
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"IMGPROXY_CACHE_USE": "redis", "VIPSGATE_CACHE_REDIS_URL": server.url,
            "IMGPROXY_CACHE_PATH_PREFIX": prefix}


@pytest.fixture
def fs_env(tmp_path: Path) -> dict[str, str]:
    return {"IMGPROXY_CACHE_USE": "fs", "IMGPROXY_CACHE_FS_ROOT": str(tmp_path / "tier")}


@pytest.fixture
def pod(make_client):  # type: ignore[no-untyped-def]
    """``await pod(**env)``: a server (app) that may fetch from 127.0.0.1."""
    def factory(**env: str):  # type: ignore[no-untyped-def]
        return make_client(IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES="1", **env)
    return factory

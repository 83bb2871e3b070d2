"""The shared tier is never a single point of failure: a stopped, slow, unwritable or
corrupt tier answers 200 by computing (503 only with IMGPROXY_CACHE_REPORT_ERRORS);
writes never delay a response, and a full write queue drops (and counts) them."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from s3_fixtures import AWS_ENV
from tierkit import get, lookups, processed, tier_of, writes

from conftest import make_settings, signed
from imagegen import jpeg
from vipsgate.config import from_env
from vipsgate.errors import ConfigError

pytest_plugins = ("tier_fixtures",)


def redis_env(url: str, **extra: str) -> dict[str, str]:
    return {"IMGPROXY_CACHE_USE": "redis", "VIPSGATE_CACHE_REDIS_URL": url, **extra}


async def test_writes_never_delay_the_response(pod, origin, redis_factory):  # type: ignore[no-untyped-def]
    server = redis_factory()
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**redis_env(server.url, VIPSGATE_CACHE_TIMEOUT="30"))
    server.command("CLIENT", "PAUSE", "30000", "WRITE")  # reads go on, writes wait
    try:
        status, _, body = await get(a, signed(f"/rs:fit:100:100/plain/{url}"))
        assert status == 200
        assert tier_of(a).queued_bytes == len(body)  # answered while its write waits
        assert writes(a, "stored") == 0
    finally:
        server.command("CLIENT", "UNPAUSE")
    await tier_of(a).flush()
    assert writes(a, "stored") == 1 and len(server.keys()) == 1


async def test_a_full_write_queue_drops_writes(pod, origin, redis_factory):  # type: ignore[no-untyped-def]
    server = redis_factory()
    url = origin.add("/cat.jpg", jpeg(300, 200))
    plain = await pod()
    size = len((await get(plain, signed(f"/rs:fit:100:100/plain/{url}")))[2])
    # room for one result: cachebusters change the key, not the bytes
    a = await pod(**redis_env(server.url, VIPSGATE_CACHE_TIMEOUT="30",
                              VIPSGATE_CACHE_WRITE_QUEUE_BYTES=str(size * 3 // 2)))
    server.command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        for n in range(3):
            assert (await get(a, signed(f"/rs:fit:100:100/cb:{n}/plain/{url}")))[0] == 200
        assert writes(a, "dropped") == 2
    finally:
        server.command("CLIENT", "UNPAUSE")
    await tier_of(a).flush()
    assert writes(a, "stored") == 1 and len(server.keys()) == 1


async def test_a_redis_stopped_mid_run_is_a_miss(pod, origin, redis_factory):  # type: ignore[no-untyped-def]
    server = redis_factory()
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**redis_env(server.url))
    assert (await get(a, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
    await tier_of(a).flush()
    server.stop()
    b = await pod(**redis_env(server.url))
    assert (await get(b, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
    await tier_of(b).flush()
    assert lookups(b, "error") == 1 and writes(b, "error") == 1 and processed(b) == 1


async def test_a_slow_tier_times_out_and_the_image_is_computed(pod, origin, redis_factory):  # type: ignore[no-untyped-def]
    server = redis_factory()
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**redis_env(server.url, VIPSGATE_CACHE_TIMEOUT="0.2"))
    # every command waits ten minutes (even UNPAUSE: the fixture stops the server)
    server.command("CLIENT", "PAUSE", "600000", "ALL")
    async with asyncio.timeout(60):  # far below the pause: the tier's timeout answered
        assert (await get(a, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
        await tier_of(a).flush()
    assert lookups(a, "timeout") == 1 and writes(a, "timeout") == 1 and processed(a) == 1


@pytest.fixture
def unwritable(tmp_path: Path) -> dict[str, str]:
    """A tier root that cannot be a directory (a file is in the way): every read and
    write fails, even as root (permissions would not stop root)."""
    (tmp_path / "blocked").write_text("not a directory")
    return {"IMGPROXY_CACHE_USE": "fs", "IMGPROXY_CACHE_FS_ROOT": str(tmp_path / "blocked")}


async def test_an_unwritable_directory_answers_200_by_computing(pod, origin, unwritable, caplog):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**unwritable)
    with caplog.at_level(logging.WARNING, "vipsgate.tier"):
        for n in range(3):
            assert (await get(a, signed(f"/rs:fit:100:100/cb:{n}/plain/{url}")))[0] == 200
        await tier_of(a).flush()
    assert lookups(a, "error") == 3 and writes(a, "error") == 3 and processed(a) == 3
    failures = [r for r in caplog.records if "read failed" in r.getMessage()]
    assert len(failures) == 1  # once, not once per request


async def test_report_errors_fails_the_request_with_503(pod, origin, unwritable):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**unwritable, IMGPROXY_CACHE_REPORT_ERRORS="1")
    status, _, body = await get(a, signed(f"/rs:fit:100:100/plain/{url}"))
    assert (status, body) == (503, b"Result cache is unavailable\n")
    assert origin.hits["/cat.jpg"] == 0 and processed(a) == 0


async def test_corrupt_and_truncated_objects_are_ignored(pod, origin, tmp_path):  # type: ignore[no-untyped-def]
    env = {"IMGPROXY_CACHE_USE": "fs", "IMGPROXY_CACHE_FS_ROOT": str(tmp_path / "tier")}
    url = origin.add("/cat.jpg", jpeg(300, 200))
    paths = [signed(f"/rs:fit:{n}:{n}/plain/{url}") for n in (60, 70, 80)]
    a = await pod(**env)
    originals = [(await get(a, path))[2] for path in paths]
    await tier_of(a).flush()
    files = sorted((p for p in (tmp_path / "tier").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)
    assert len(files) == 3
    files[0].write_bytes(files[0].read_bytes()[:-100])  # truncated
    flipped = bytearray(files[1].read_bytes())
    flipped[len(flipped) // 2] ^= 0x01  # one bit in the image
    files[1].write_bytes(bytes(flipped))
    files[2].write_bytes(b"")  # empty
    b = await pod(**env)
    for path, original in zip(paths, originals, strict=True):
        assert (await get(b, path)) [::2] == (200, original)
    await tier_of(b).flush()
    assert lookups(b, "corrupt") == 3 and processed(b) == 3
    c = await pod(**env)  # b wrote whole entries again
    for path in paths:
        assert (await get(c, path))[0] == 200
    assert lookups(c, "hit") == 3 and processed(c) == 0


async def test_an_s3_tier_stopped_mid_run_is_a_miss(pod, origin, monkeypatch):  # type: ignore[no-untyped-def]
    import boto3
    from moto.server import ThreadedMotoServer

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="tier")
        env = {"IMGPROXY_CACHE_USE": "s3", "IMGPROXY_CACHE_BUCKET": "tier",
               "IMGPROXY_CACHE_S3_ENDPOINT": endpoint, "IMGPROXY_CACHE_S3_REGION": "us-east-1"}
        url = origin.add("/cat.jpg", jpeg(300, 200))
        a = await pod(**env)
        assert (await get(a, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
        await tier_of(a).flush()
        assert writes(a, "stored") == 1
    finally:
        server.stop()
    b = await pod(**env)
    assert (await get(b, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
    assert lookups(b, "error") == 1 and processed(b) == 1


async def test_queued_writes_finish_when_the_server_stops(pod, origin, tmp_path):  # type: ignore[no-untyped-def]
    env = {"IMGPROXY_CACHE_USE": "fs", "IMGPROXY_CACHE_FS_ROOT": str(tmp_path / "tier")}
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**env)
    for n in range(5):
        assert (await get(a, signed(f"/rs:fit:100:100/cb:{n}/plain/{url}")))[0] == 200
    await a.close()  # the app's cleanup: the tier's queue is written before it closes
    assert len([p for p in (tmp_path / "tier").rglob("*") if p.is_file()]) == 5


@pytest.mark.parametrize(("env", "message"), [
    ({"IMGPROXY_CACHE_USE": "gcs"}, "IMGPROXY_CACHE_USE"),
    ({"IMGPROXY_CACHE_USE": "fs"}, "needs IMGPROXY_CACHE_FS_ROOT"),
    ({"IMGPROXY_CACHE_USE": "s3"}, "needs IMGPROXY_CACHE_BUCKET"),
    ({"IMGPROXY_CACHE_USE": "redis"}, "needs VIPSGATE_CACHE_REDIS_URL"),
    ({"IMGPROXY_CACHE_USE": "redis", "VIPSGATE_CACHE_REDIS_URL": "127.0.0.1:6379"},
     "VIPSGATE_CACHE_REDIS_URL"),
    ({"VIPSGATE_CACHE_TTL": "-1"}, "VIPSGATE_CACHE_TTL"),
    ({"VIPSGATE_CACHE_TIMEOUT": "0"}, "VIPSGATE_CACHE_TIMEOUT"),
])
def test_settings_are_checked_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(**env)


def test_no_tier_by_default() -> None:
    assert from_env({"VIPSGATE_INSECURE": "1"}).cache_use == ""

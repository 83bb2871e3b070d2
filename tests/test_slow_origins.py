"""Slow origins: one origin holds at most its share of the request queue
(``VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN``) and of the origin connections, and the
connection pool is never the bottleneck, so a slow origin cannot make requests for
another origin get 429 or wait for its connections."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest

from conftest import LOOPBACK, Origin, make_settings, signed, wait_until
from imagegen import jpeg
from vipsgate.admission import Admission
from vipsgate.config import ConfigError, from_env
from vipsgate.errors import TooManyRequests
from vipsgate.probes import ADMISSION
from vipsgate.sources import origin_of


def origin(url: str) -> str:
    return origin_of(urlsplit(url).scheme, urlsplit(url))


def test_an_origin_is_its_host_or_its_bucket():
    assert origin("http://Example.COM./a.jpg") == "http:example.com"
    assert origin("https://example.com:8443/a.jpg") == origin("http://user@example.com/b")
    assert origin("http://[::1]:8080/a.jpg") == "http:::1"
    assert origin("s3://photos/a/b.jpg") == "s3:photos" != origin("s3://other/a/b.jpg")
    assert origin("local:///a.jpg") == ""  # the disk is no origin that can stall


async def test_one_origin_holds_at_most_its_share_of_the_queue():
    admission = Admission(workers=1, queue_size=3, per_origin=2)
    async with admission.admit("http:slow"), admission.admit("http:slow"):
        with pytest.raises(TooManyRequests) as refused:
            async with admission.admit("http:slow"):
                pass
        assert refused.value.headers["Retry-After"] == "1"
        assert "http:slow" in refused.value.reason
        async with admission.admit("http:other"), admission.admit(""):  # "": no share
            assert admission.full
            with pytest.raises(TooManyRequests):
                async with admission.admit("http:third"):
                    pass
    assert admission.admitted == 0 and admission.by_origin == {}
    async with admission.admit("http:slow"), admission.admit("http:slow"):
        pass  # its places came back


def test_the_share_and_the_connection_pool_follow_the_queue():
    s = make_settings(IMGPROXY_WORKERS="4", IMGPROXY_REQUESTS_QUEUE_SIZE="64")
    assert (s.queue_capacity, s.origin_places, s.origin_connections) == (68, 34, (84, 10))
    s = make_settings(IMGPROXY_WORKERS="8", VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN="1")
    assert (s.origin_places, s.origin_connections) == (0, (88, 16))
    s = make_settings(IMGPROXY_WORKERS="4", IMGPROXY_REQUESTS_QUEUE_SIZE="0")
    assert (s.queue_capacity, s.origin_places, s.origin_connections) == (0, 0, (256, 10))
    s = make_settings(IMGPROXY_WORKERS="4", VIPSGATE_MAX_ORIGIN_CONNECTIONS="5")
    assert s.origin_connections == (84, 5)
    for bad in ("0", "1.5", "-1", "x"):
        with pytest.raises(ConfigError, match="VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN"):
            from_env({"VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN": bad})


async def test_a_slow_origin_cannot_starve_another(make_client, origin: Origin):
    """40 requests for a held origin: 16 (half the 32 places) are admitted, 10 of them
    (its connections) reach it, and the other 24 get 429 at once; a request for another
    origin (``localhost``, the same server under another name) is admitted and fetched
    meanwhile, though the pool used to have 10 connections in all."""
    origin.add("/slow/*", jpeg(64, 48), hold=True)
    origin.add("/fast.jpg", jpeg(64, 48))
    client = await make_client(IMGPROXY_WORKERS="2", IMGPROXY_REQUESTS_QUEUE_SIZE="30",
                               IMGPROXY_TIMEOUT="30", IMGPROXY_DOWNLOAD_TIMEOUT="30",
                               **LOOPBACK)
    slow = [asyncio.create_task(client.get(signed(f"/plain/{origin.base}/slow/{i}.jpg")))
            for i in range(40)]
    try:
        await origin.arrived(10)
        await wait_until(lambda: sum(task.done() for task in slow) == 24)
        for task in (t for t in slow if t.done()):
            assert task.result().status == 429 and task.result().headers["Retry-After"]
        assert client.app[ADMISSION].admitted == 16
        started = time.monotonic()
        async with asyncio.timeout(10):
            fast = await client.get(signed(f"/plain/{origin.url('/fast.jpg', 'localhost')}"))
        assert fast.status == 200, await fast.text()
        assert time.monotonic() - started < 5
        assert origin.hits["/fast.jpg"] == 1
        assert len(origin.requests) == 11  # nothing more reached the slow one
    finally:
        origin.release()
    statuses = [response.status for response in await asyncio.gather(*slow)]
    assert statuses.count(200) == 16 and statuses.count(429) == 24

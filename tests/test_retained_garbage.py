"""Failed requests release their buffers at once (issue 24, defect 3).

An error's traceback holds the frames it passed through, and their locals hold the
source bytes and decoded images; a reference cycle through the traceback (a task
holding the error, a frame holding the task) would keep all that until the cycle
collector's next full pass, which a busy server runs rarely. These tests turn the
collector off and measure, with ``tracemalloc``, what several failed requests leave
behind: less than one source's worth, whatever the failure.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest
from aiohttp import web

from conftest import LOOPBACK, ClientFactory, Origin, signed, wait_until
from hostilegen import corrupt, noise_png
from vipsgate.app import FETCHER, POOL, RESULTS

SOURCE = 6 << 20  # bytes, about: larger than anything else a request allocates


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees memory (the cycle collector is off), traced."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        gc.enable()


async def released(client, paths: list[str], status: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether what the requests to ``paths`` allocated (each failing with ``status``) is
    freed within seconds of their answers: less than half a source stays allocated
    once every job, download and worker they started has ended. (A worker thread drops
    its last references just after its answer is out, hence the wait.)"""
    app = client.server.app
    first = await client.get(signed("/rs:fit:10:10/plain/local:///missing.png"))
    assert first.status == 404  # what a first request sets up (imports, pools) is not counted
    before = tracemalloc.get_traced_memory()[0]
    for path in paths:
        response = await client.get(signed(path))
        assert response.status == status, await response.text()
        response.release()
    await wait_until(lambda: not app[FETCHER].downloads and app[RESULTS].in_flight == 0
                     and app[POOL].busy == 0)
    try:
        await wait_until(lambda: tracemalloc.get_traced_memory()[0] - before < SOURCE // 2,
                         timeout=5)
    except TimeoutError:
        return False
    return True


ENV = {"VIPSGATE_SOURCE_CACHE_BYTES": "0", **LOOPBACK}


async def test_a_corrupt_local_source_is_not_retained(make_client: ClientFactory, images,
                                                      no_collector: None) -> None:
    (images / "broken.png").write_bytes(corrupt(noise_png(1400)))
    client = await make_client(**ENV)
    paths = [f"/rs:fit:100:100/cb:{n}/plain/local:///broken.png" for n in range(3)]
    assert await released(client, paths, 422)


async def test_a_corrupt_streamed_source_is_not_retained(make_client: ClientFactory,
                                                         origin: Origin,
                                                         no_collector: None) -> None:
    url = origin.add("/broken.png", corrupt(noise_png(1400)), content_type="image/png")
    client = await make_client(**ENV)
    paths = [f"/rs:fit:100:100/cb:{n}/plain/{url}" for n in range(3)]
    assert await released(client, paths, 422)


async def test_a_source_over_the_size_limit_is_not_retained(make_client: ClientFactory,
                                                            origin: Origin,
                                                            no_collector: None) -> None:
    """Sent without a length, so the limit is found part-way through the download."""
    body = noise_png(1400)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 1 << 18):
            await response.write(body[start:start + (1 << 18)])
        return response

    url = origin.route("/big.png", chunked)
    client = await make_client(IMGPROXY_MAX_SRC_FILE_SIZE=str(len(body) - 1000), **ENV)
    paths = [f"/rs:fit:100:100/cb:{n}/plain/{url}" for n in range(3)]
    assert await released(client, paths, 422)


async def test_a_truncated_source_is_not_retained(make_client: ClientFactory, origin: Origin,
                                                  no_collector: None) -> None:
    """The origin promises more bytes than it sends."""
    body = noise_png(1400)

    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png",
                                               "Content-Length": str(len(body) + 4096)})
        await response.prepare(request)
        await response.write(body)
        assert request.transport is not None
        request.transport.close()
        return response

    url = origin.route("/short.png", truncated)
    client = await make_client(**ENV)
    paths = [f"/rs:fit:100:100/cb:{n}/plain/{url}" for n in range(3)]
    assert await released(client, paths, 422)


async def test_an_s3_body_shorter_than_declared_is_422(make_client: ClientFactory,
                                                       origin: Origin, monkeypatch) -> None:
    """Issue 24, defect 5: an S3-shaped origin (path-style, 127.0.0.1) sends less than its
    Content-Length and closes: a typed 422, like the HTTP source, never a 500."""
    body = noise_png(300)

    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "image/png", "Content-Length": str(len(body) + 4096),
            "ETag": '"abc"', "Last-Modified": "Mon, 30 Nov 2026 10:00:00 GMT"})
        await response.prepare(request)
        await response.write(body)
        assert request.transport is not None
        request.transport.close()
        return response

    origin.route("/bucket/short.png", short)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    client = await make_client(IMGPROXY_USE_S3="1", IMGPROXY_S3_ENDPOINT=origin.base,
                               IMGPROXY_S3_REGION="us-east-1", **ENV)
    response = await client.get(signed("/rs:fit:100:100/plain/s3://bucket/short.png"))
    assert response.status == 422, await response.text()

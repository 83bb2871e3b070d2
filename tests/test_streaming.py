"""Sources decoded while they arrive: a real origin on 127.0.0.1 that sends a body in
pieces and holds it at a gate, so each test can look at the server mid-download.

What is checked: JPEG and PNG are decoded as they arrive (the decoder has read bytes
while the origin still holds the rest), formats that need the whole file wait for it,
limits and broken bodies mid-stream answer as buffered sources did, jobs share one
download, the originals cache keeps what fits, and a job waiting for bytes does not
keep a worker from other work.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from conftest import LOOPBACK, Origin, signed, wait_until
from imagegen import load, photo
from vipsgate.app import FETCHER, ORIGINALS, POOL

PIECE = 16 * 1024


@dataclass
class Body:
    """One origin file sent in pieces: it may stop at ``hold_at`` bytes until ``gate``
    is set (``held`` tells the test it got there), or be cut off there."""

    data: bytes
    declared: int | None = None  # Content-Length (None: chunked)
    hold_at: int | None = None
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    cut: bool = False  # close the connection at ``hold_at`` instead of waiting

    async def serve(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if self.declared is not None:
            response.content_length = self.declared
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        hold = len(self.data) if self.hold_at is None else self.hold_at
        await send(response, self.data[:hold])
        if hold < len(self.data):
            self.held.set()
            if self.cut:
                assert request.transport is not None
                request.transport.close()
                return response
            await self.gate.wait()
            await send(response, self.data[hold:])
        await response.write_eof()
        return response


async def send(response: web.StreamResponse, data: bytes) -> None:
    for start in range(0, len(data), PIECE):
        await response.write(data[start:start + PIECE])


def serve(origin: Origin, path: str, body: Body) -> str:
    return origin.route(path, body.serve)


def reader_positions(app: web.Application) -> list[int]:
    return [r.position for d in app[FETCHER].downloads.values() for r in d.stream.readers]


SOURCES = {
    "jpeg": lambda: photo(1600, 1200).jpegsave_buffer(Q=90),
    "png": lambda: photo(800, 600).pngsave_buffer(compression=1),
}


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
async def test_sequential_formats_are_decoded_while_they_arrive(make_client, origin, fmt):
    data = SOURCES[fmt]()
    half = len(data) // 2
    body = Body(data, declared=len(data), hold_at=half)
    url = serve(origin, f"/photo.{fmt}", body)
    client = await make_client(**LOOPBACK)
    request = asyncio.create_task(client.get(signed(f"/rs:fit:200:200/plain/{url}@png")))
    await body.held.wait()
    # the origin holds the second half: the decoder has already read into the first
    await wait_until(lambda: any(p > half // 2 for p in reader_positions(client.app)))
    assert not request.done()
    body.gate.set()
    response = await request
    assert response.status == 200
    image = load(await response.read())
    assert max(image.width, image.height) == 200


@pytest.mark.parametrize("fmt", ["webp", "gif", "tif"])
async def test_formats_that_need_the_whole_file_wait_for_it(make_client, origin, fmt):
    data = photo(600, 400).write_to_buffer(f".{fmt}")
    body = Body(data, declared=len(data), hold_at=len(data) // 2)
    url = serve(origin, f"/photo.{fmt}", body)
    client = await make_client(**LOOPBACK)
    request = asyncio.create_task(client.get(signed(f"/rs:fit:100:100/plain/{url}@png")))
    await body.held.wait()
    await wait_until(lambda: client.app[FETCHER].downloads)
    assert reader_positions(client.app) == []  # no decoder reads it before it is whole
    assert client.app[POOL].busy == 0
    body.gate.set()
    response = await request
    assert response.status == 200 and load(await response.read()).width == 100


async def test_a_limit_crossed_mid_stream_cuts_the_download(make_client, origin):
    data = SOURCES["jpeg"]()
    url = serve(origin, "/big.jpg", Body(data))  # chunked: no Content-Length to refuse early
    client = await make_client(IMGPROXY_MAX_SRC_FILE_SIZE=str(len(data) // 3), **LOOPBACK)
    response = await client.get(signed(f"/rs:fit:100:100/plain/{url}"))
    assert response.status == 422
    assert "too large" in (await response.text()).lower()
    await wait_until(lambda: not client.app[FETCHER].downloads)
    assert client.app[POOL].busy == 0


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_cut_short_is_refused_and_frees_the_worker(make_client, origin, declared):
    data = SOURCES["jpeg"]()
    body = Body(data, declared=len(data) if declared else None, hold_at=len(data) // 2,
                cut=True)
    url = serve(origin, "/cut.jpg", body)
    client = await make_client(**LOOPBACK)
    response = await client.get(signed(f"/rs:fit:100:100/plain/{url}"))
    assert response.status == 422, await response.text()
    await wait_until(lambda: client.app[POOL].busy == 0)


async def test_a_stalled_body_times_out_and_frees_the_worker(make_client, origin):
    data = SOURCES["jpeg"]()
    body = Body(data, declared=len(data), hold_at=len(data) // 2)
    url = serve(origin, "/stall.jpg", body)
    client = await make_client(IMGPROXY_DOWNLOAD_TIMEOUT="0.5", **LOOPBACK)
    response = await client.get(signed(f"/rs:fit:100:100/plain/{url}"))
    assert response.status == 504, await response.text()
    await wait_until(lambda: client.app[POOL].busy == 0 and not client.app[FETCHER].downloads)
    body.gate.set()


async def test_jobs_for_one_cold_source_share_its_download(make_client, origin):
    data = SOURCES["jpeg"]()
    body = Body(data, declared=len(data), hold_at=len(data) // 2)
    url = serve(origin, "/shared.jpg", body)
    client = await make_client(VIPSGATE_DEBUG_HEADERS="1", **LOOPBACK)
    requests = [asyncio.create_task(client.get(signed(f"/rs:fit:{n}:{n}/plain/{url}")))
                for n in (100, 150, 200)]
    await body.held.wait()
    await wait_until(lambda: len(reader_positions(client.app)) == 3)  # three decoders
    assert len(client.app[FETCHER].downloads) == 1
    body.gate.set()
    responses = await asyncio.gather(*requests)
    assert [r.headers["X-Result-Width"] for r in responses] == ["100", "150", "200"]
    assert origin.hits["/shared.jpg"] == 1


async def test_the_originals_cache_keeps_a_streamed_source_that_fits(make_client, origin):
    data = SOURCES["jpeg"]()
    small = serve(origin, "/small.jpg", Body(data, declared=len(data)))
    big = serve(origin, "/big.jpg", Body(data, declared=len(data)))
    client = await make_client(VIPSGATE_SOURCE_CACHE_BYTES=str(len(data) * 8 + 4096),
                               VIPSGATE_DEBUG_HEADERS="1", **LOOPBACK)
    for n in (100, 200):
        assert (await client.get(signed(f"/rs:fit:{n}:{n}/plain/{small}"))).status == 200
    assert origin.hits["/small.jpg"] == 1 and client.app[ORIGINALS].get(small).data == data
    # a source over the cache's per-entry limit streams through and is not kept
    other = await make_client(VIPSGATE_SOURCE_CACHE_BYTES=str(len(data) * 4),
                              **LOOPBACK)
    for n in (100, 200):
        assert (await other.get(signed(f"/rs:fit:{n}:{n}/plain/{big}"))).status == 200
    assert origin.hits["/big.jpg"] == 2 and other.app[ORIGINALS].get(big) is None


async def test_a_job_waiting_for_bytes_lends_its_worker(make_client, origin, images):
    """One worker: a slow source holds the decoder mid-file, and a request for a local
    image is processed in the meantime."""
    data = SOURCES["jpeg"]()
    body = Body(data, declared=len(data), hold_at=len(data) // 2)
    url = serve(origin, "/slow.jpg", body)
    (images / "fast.jpg").write_bytes(photo(400, 300).jpegsave_buffer())
    client = await make_client(IMGPROXY_WORKERS="1", **LOOPBACK)
    slow = asyncio.create_task(client.get(signed(f"/rs:fit:100:100/plain/{url}")))
    await body.held.wait()
    await wait_until(lambda: any(p > len(data) // 4 for p in reader_positions(client.app)))
    await wait_until(lambda: client.app[POOL].busy == 0)  # lent while it waits
    fast = await client.get(signed("/rs:fit:50:50/plain/local:///fast.jpg"))
    assert fast.status == 200 and not slow.done()
    body.gate.set()
    assert (await slow).status == 200


async def test_a_body_that_arrived_before_the_job_is_decoded_from_memory() -> None:
    """A job that starts after its download ended reads the bytes in place, and only
    then: not after reading some, not past its limit, not before the end."""
    from vipsgate.processing import codecs
    from vipsgate.sources.stream import SourceStream

    data = photo(64, 48).jpegsave_buffer()
    stream = SourceStream()
    partial = stream.reader()
    for i in range(0, len(data), 1000):
        await stream.write(data[i:i + 1000])
    assert partial.arrived() is None  # not finished yet
    stream.finish()
    assert codecs.Input(partial).data == data  # the whole body, in memory
    assert stream.reader(limit=len(data) - 1).arrived() is None  # past the limit
    started = stream.reader()
    started.read(10)
    assert started.arrived() is None  # it has read bytes: it goes on reading
    assert isinstance(codecs.Input(started).data, type(started))
    failed = SourceStream()
    reader = failed.reader()
    await failed.write(data)
    failed.fail(OSError("reset"))
    assert reader.arrived() is None

"""Shedding a flood cheaply (proxy/shedding.py): the excess is refused at once without
a job, an early retry of a refused result is held until its Retry-After has passed,
a request that can join a job in flight is never refused, and a well-behaved retry is
never held."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from conftest import LOOPBACK, Origin, signed, wait_until
from imagegen import jpeg
from vipsgate.admission import Admission
from vipsgate.app import RESULTS
from vipsgate.cache import ByteLRU
from vipsgate.errors import Forbidden, Overloaded, TooManyRequests
from vipsgate.middleware import METRICS
from vipsgate.probes import ADMISSION
from vipsgate.shedding import Shedder

ENV = {**LOOPBACK, "IMGPROXY_DOWNLOAD_TIMEOUT": "30", "IMGPROXY_TIMEOUT": "30",
       "IMGPROXY_WORKERS": "1", "IMGPROXY_REQUESTS_QUEUE_SIZE": "1",  # 2 places in all
       "VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN": "1"}  # one origin may hold both


@pytest.fixture
def origin(origin: Origin) -> Origin:
    """The shared origin, holding every request until ``origin.release()``."""
    origin.add("/*", jpeg(160, 120))
    origin.hold()
    return origin


async def fill(client, origin: Origin) -> list[asyncio.Task]:  # type: ignore[no-untyped-def]
    """Two requests held by the origin: the worker's place and the queue's."""
    held = [asyncio.create_task(client.get(signed(f"/plain/{origin.base}/held{i}.jpg")))
            for i in range(2)]
    await origin.arrived(2)
    assert client.app[ADMISSION].full
    return held


async def test_excess_is_refused_at_once_without_a_job(make_client, origin):
    client = await make_client(**ENV)
    held = await fill(client, origin)
    results, jobs = client.app[RESULTS], []
    compute = results.get_or_compute
    results.get_or_compute = lambda key, factory: jobs.append(key) or compute(key, factory)
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.get(signed(f"/plain/{origin.base}/new{i}.jpg"))
                                     for i in range(20)))
    assert time.perf_counter() - started < 5
    for response in answers:
        assert response.status == 429, await response.text()
        assert response.headers["Retry-After"] == "1"
    assert jobs == [] and results.in_flight == 2  # no job was started for any of them
    assert len(origin.paths) == 2
    origin.release()
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]


async def test_a_request_that_can_join_a_job_is_not_refused(make_client, origin):
    client = await make_client(**ENV)
    held = await fill(client, origin)
    joining = asyncio.create_task(client.get(signed(f"/plain/{origin.base}/held0.jpg")))
    # it is refused or joins the job in the turn that reads it: either is final
    await wait_until(lambda: client.app[METRICS].in_flight == 3)
    origin.release()
    response = await joining
    assert response.status == 200 and len(await response.read()) > 0
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]


async def test_an_early_retry_is_held_until_retry_after(make_client, origin, caplog):
    client = await make_client(**ENV)
    held = await fill(client, origin)
    url = signed(f"/plain/{origin.base}/retried.jpg")
    first = await client.get(url)
    assert first.status == 429
    refused_at = time.monotonic()
    other = await client.get(signed(f"/rs:fit:10:10/plain/{origin.base}/retried.jpg"))
    assert other.status == 429  # another result: refused at once, not held
    assert time.monotonic() - refused_at < 0.9
    with caplog.at_level(logging.INFO, logger="vipsgate.access"):
        retry = await client.get(url)  # at once, ignoring Retry-After
    waited = time.monotonic() - refused_at
    assert retry.status == 429 and retry.headers["Retry-After"] == "1"
    assert 0.9 <= waited < 5  # answered only once its Retry-After had passed
    [line] = [r for r in caplog.records if r.name == "vipsgate.access"]
    assert 900 <= line.fields["stages_ms"]["held"] <= 1000
    origin.release()
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]


async def test_a_held_retry_gets_its_image_when_a_place_has_freed(make_client, origin):
    client = await make_client(**ENV)
    held = await fill(client, origin)
    url = signed(f"/plain/{origin.base}/later.jpg")
    assert (await client.get(url)).status == 429
    retry = asyncio.create_task(client.get(url))
    origin.release()  # the places free while the retry is held
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
    response = await retry
    assert response.status == 200 and len(await response.read()) > 0


# --- the shedder on its own -------------------------------------------------------------

def shedder(remembered: int = 8) -> tuple[Shedder, Admission]:
    admission = Admission(workers=1, queue_size=1)
    return Shedder(admission, ByteLRU(0, len), remembered=remembered), admission


async def test_a_retry_after_retry_after_is_not_held():
    shed, _ = shedder()
    shed.refused("key", TooManyRequests(headers={"Retry-After": "1"}))
    shed.refused_until["key"] = time.monotonic() - 0.01  # its Retry-After has passed
    assert await shed.hold("key") == 0.0
    assert "key" not in shed.refused_until


async def test_only_overload_with_retry_after_is_remembered():
    shed, _ = shedder()
    shed.refused("forbidden", Forbidden())
    shed.refused("no-retry-after", TooManyRequests())
    shed.refused("memory", Overloaded(headers={"Retry-After": "2"}))
    assert list(shed.refused_until) == ["memory"]
    assert 1.9 < shed.refused_until["memory"] - time.monotonic() <= 2


async def test_what_is_remembered_is_bounded_oldest_first():
    shed, _ = shedder(remembered=3)
    for n in range(5):
        shed.refused(n, TooManyRequests(headers={"Retry-After": "1"}))
    assert list(shed.refused_until) == [2, 3, 4]
    shed.refused_until[2] = time.monotonic() - 1  # passed: dropped by the next refusal
    shed.refused(5, TooManyRequests(headers={"Retry-After": "1"}))
    assert list(shed.refused_until) == [3, 4, 5]


async def test_check_refuses_only_without_a_job_to_join():
    shed, admission = shedder()
    shed.check("a")  # room: nothing raised
    admission.admitted = 2
    with pytest.raises(TooManyRequests):
        shed.check("a")
    shed.direct = False  # a shared tier may answer: the job decides
    shed.check("a")

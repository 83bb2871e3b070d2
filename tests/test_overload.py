"""Overload: bounded queue (429 + Retry-After at once), the request deadline (503),
work nobody waits for is never started, and worker slots never undercount."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import aiohttp
import pytest

from conftest import LOOPBACK, Origin, signed, wait_until
from imagegen import jpeg
from vipsgate import memory
from vipsgate.app import POOL
from vipsgate.probes import ADMISSION
from vipsgate.workers import WorkerPool

# one origin may fill the whole queue here (test_slow_origins.py tests the per-origin share)
ORIGIN_ENV = {**LOOPBACK, "IMGPROXY_DOWNLOAD_TIMEOUT": "30",
              "VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN": "1"}


@pytest.fixture
def origin(origin: Origin) -> Origin:
    """The shared origin, holding every request until ``origin.release()``."""
    origin.add("/*", jpeg(160, 120))
    origin.hold()
    return origin


async def test_flood_gets_429_at_once_while_cached_urls_are_served(make_client, images, origin):
    (images / "cat.jpg").write_bytes(jpeg(200, 150))
    client = await make_client(IMGPROXY_WORKERS="1", IMGPROXY_REQUESTS_QUEUE_SIZE="2",
                               IMGPROXY_TIMEOUT="30", **ORIGIN_ENV)
    cached = signed("/rs:fit:50:50/plain/local:///cat.jpg")
    assert (await client.get(cached)).status == 200
    slow = [asyncio.create_task(client.get(signed(f"/plain/{origin.base}/held{i}.jpg")))
            for i in range(3)]  # 1 worker + 2 queue places
    await origin.arrived(3)
    started = time.perf_counter()
    flood = await asyncio.gather(*(client.get(signed(f"/plain/{origin.base}/flood{i}.jpg"))
                                   for i in range(24)))
    assert time.perf_counter() - started < 5
    for response in flood:
        assert response.status == 429, await response.text()
        assert int(response.headers["Retry-After"]) >= 1
    during = await client.get(cached)
    assert during.status == 200 and len(await during.read()) > 0
    assert (await client.get("/health")).status == 200
    ready = await client.get("/ready")  # a flood never takes the pod out of the Service
    assert ready.status == 200 and "busy" in await ready.text()
    assert not any(task.done() for task in slow)  # the 429s never waited for them
    assert len(origin.paths) == 3  # the excess never reached the origin
    origin.release()
    for response in await asyncio.gather(*slow):
        assert response.status == 200
    assert client.app[ADMISSION].admitted == 0
    assert (await client.get(signed(f"/plain/{origin.base}/after.jpg"))).status == 200


async def test_deadline_answers_503_with_a_slow_origin(make_client, origin):
    client = await make_client(IMGPROXY_TIMEOUT="0.5", **ORIGIN_ENV)
    started = time.perf_counter()
    response = await client.get(signed(f"/plain/{origin.base}/slow.jpg"))
    elapsed = time.perf_counter() - started
    assert response.status == 503, await response.text()
    assert 0.5 <= elapsed < 3
    assert origin.paths == ["/slow.jpg"]
    await wait_until(lambda: client.app[ADMISSION].admitted == 0)  # its place is free


class Blocker:
    """Holds one worker thread of a real pool until ``release()``."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.hold = threading.Event()
        self.entered = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def block() -> None:
            loop.call_soon_threadsafe(self.entered.set)
            self.hold.wait(10)

        self.task = asyncio.create_task(self.pool.run(block))
        await asyncio.wait_for(self.entered.wait(), 5)

    async def release(self) -> None:
        self.hold.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


async def test_deadline_while_waiting_for_a_worker_is_503_and_never_starts(make_client,
                                                                          images):
    (images / "cat.jpg").write_bytes(jpeg(200, 150))
    client = await make_client(IMGPROXY_WORKERS="1", IMGPROXY_TIMEOUT="0.5")
    pool, admission = client.app[POOL], client.app[ADMISSION]
    blocker = Blocker(pool)
    await blocker.start()
    try:
        started = time.perf_counter()
        response = await client.get(signed("/rs:fit:50:50/plain/local:///cat.jpg"))
        assert response.status == 503
        assert time.perf_counter() - started < 3
        await wait_until(lambda: admission.admitted == 0)
    finally:
        await blocker.release()
    assert pool.started == 1  # only the blocker ever ran
    assert (await client.get(signed("/rs:fit:50:50/plain/local:///cat.jpg"))).status == 200
    assert pool.started == 2


async def test_work_of_a_client_that_hung_up_is_never_started(make_client, images):
    (images / "cat.jpg").write_bytes(jpeg(200, 150))
    client = await make_client(IMGPROXY_WORKERS="1", IMGPROXY_TIMEOUT="30")
    pool, admission = client.app[POOL], client.app[ADMISSION]
    blocker = Blocker(pool)
    await blocker.start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await client.get(signed("/rs:fit:60:60/plain/local:///cat.jpg"),
                             timeout=aiohttp.ClientTimeout(total=0.3))
        await wait_until(lambda: admission.admitted == 0)  # the server let go of it
    finally:
        await blocker.release()
    assert pool.started == 1
    assert pool.busy == 0


async def test_a_cancelled_job_keeps_its_worker_until_the_thread_is_done():
    pool = WorkerPool(workers=1)
    await pool.start()
    blocker = Blocker(pool)
    await blocker.start()
    assert blocker.task is not None
    blocker.task.cancel()  # the request gave up; libvips cannot be interrupted
    await asyncio.gather(blocker.task, return_exceptions=True)
    assert pool.busy == 1  # the thread still works: its slot is not handed out
    waiting = asyncio.create_task(pool.run(lambda: "next"))
    await wait_until(lambda: pool._slots._waiters)  # it waits on the pool's semaphore
    assert not waiting.done() and pool.started == 1
    blocker.hold.set()
    assert (await asyncio.wait_for(waiting, 5))[0] == "next"
    assert pool.busy == 0 and pool.started == 2
    pool.shutdown()


async def test_errors_in_jobs_release_their_worker():
    pool = WorkerPool(workers=1)
    await pool.start()

    def boom() -> None:
        raise ValueError("bad input")

    for _ in range(3):
        with pytest.raises(ValueError):
            await pool.run(boom)
    assert pool.busy == 0 and (await pool.run(lambda: 7))[0] == 7
    pool.shutdown()


async def test_the_app_trims_memory_only_while_idle(make_client):
    if not memory.available():
        pytest.skip("no glibc malloc_trim here")
    client = await make_client(IMGPROXY_FREE_MEMORY_INTERVAL="0.05")
    assert any(t.get_name() == "malloc-trim" for t in asyncio.all_tasks())
    pool = client.app[POOL]
    asked = asyncio.Event()
    answers: list[bool] = []

    def idle() -> bool:
        answers.append(pool.idle)
        if len(answers) >= 3:
            asked.set()
        return answers[-1]

    blocker = Blocker(pool)
    await blocker.start()  # a busy worker: the trimmer must see it and leave memory alone
    try:
        async with memory.trimmer(0.01, idle):
            await asyncio.wait_for(asked.wait(), 5)
    finally:
        await blocker.release()
    assert answers[:3] == [False, False, False] and pool.idle
    off = await make_client(IMGPROXY_FREE_MEMORY_INTERVAL="0")
    assert off.app[POOL].executor is not None
    assert sum(t.get_name() == "malloc-trim" for t in asyncio.all_tasks()) == 1


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_workers_run_at_a_lower_cpu_priority_than_the_event_loop(executor):
    """Pixel work yields the CPU to the event loop (VIPSGATE_WORKER_NICENESS), so
    refusals, hits and probes are answered at once on a saturated CPU."""
    pool = WorkerPool(workers=1, executor=executor, niceness=5)
    await pool.start()
    try:
        worker, _ = await pool.run(_own_niceness)
        assert worker == min(19, _own_niceness() + 5)
        same = WorkerPool(workers=1, executor=executor, niceness=0)
        await same.start()
        try:
            assert (await same.run(_own_niceness))[0] == _own_niceness()
        finally:
            same.shutdown()
    finally:
        pool.shutdown()

"""The memory budget: downloads and decodes are counted, waits and refusals are clean,
and every byte counted comes back when the work ends, whatever the outcome."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from conftest import LOOPBACK, signed, wait_until
from imagegen import jpeg, photo
from vipsgate.app import FETCHER
from vipsgate.errors import RequestTimeout, TooMuchMemory
from vipsgate.memory_budget import MemoryBudget, auto_limit
from vipsgate.probes import ADMISSION
from vipsgate.processing import memory_model


def test_a_reservation_waits_until_memory_is_given_back():
    budget = MemoryBudget(100)
    budget.hold(80)
    done = threading.Event()

    def decoder() -> None:
        with budget.reserve(50, deadline=time.monotonic() + 10):
            done.set()

    thread = threading.Thread(target=decoder)
    thread.start()
    assert not done.wait(0.05)  # 80 + 50 > 100: it waits
    budget.give(80)
    thread.join(10)
    assert done.is_set() and budget.used == 0 and budget.peak == 80


def test_waiting_reservations_are_served_in_order():
    """A reservation that fits never overtakes one that waits (with every decoder
    waiting and its slot lent, whoever woke first used to win, and some waited until
    their deadline)."""
    budget = MemoryBudget(100)
    budget.hold(90)
    order: list[str] = []
    deadline = time.monotonic() + 10

    def decoder(name: str, nbytes: int) -> None:
        with budget.reserve(nbytes, deadline):
            order.append(name)

    first = threading.Thread(target=decoder, args=("first", 60))
    first.start()
    wait_until_sync(lambda: budget.waiting == 1)
    second = threading.Thread(target=decoder, args=("second", 5))  # 90 + 5 fits now
    second.start()
    wait_until_sync(lambda: budget.waiting == 2)  # but it waits behind the first
    assert order == []
    budget.give(90)
    first.join(10)
    second.join(10)
    assert order == ["first", "second"] and budget.used == 0 and budget.waiting == 0


def wait_until_sync(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` from a test thread (threads, not the event loop, wait here)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.001)


def test_what_can_never_fit_is_refused_and_a_deadline_ends_the_wait():
    budget = MemoryBudget(100)
    with pytest.raises(TooMuchMemory), budget.reserve(101, deadline=None):
        pass
    budget.hold(100)
    with pytest.raises(RequestTimeout), budget.reserve(10, deadline=time.monotonic() + 0.05):
        pass
    assert budget.used == 100 and budget.over


def test_auto_limit_follows_the_cgroup(tmp_path):
    limit = tmp_path / "memory.max"
    limit.write_text("max\n")
    assert auto_limit(0, str(limit)) == 0
    limit.write_text(str(512 * 2**20))
    assert auto_limit(192 * 2**20, str(limit)) == (512 - 192 - 128) * 2**20 * 3 // 4
    assert auto_limit(0, str(tmp_path / "missing")) == 0


async def test_every_counted_byte_comes_back(make_client, origin, images):
    """Streamed, buffered, cached, refused, cut and cancelled work: afterwards the budget
    is back at zero (a leak in the accounting would slowly refuse all work)."""
    big = photo(1600, 1200).jpegsave_buffer(Q=90)
    origin.add("/a.jpg", big)
    origin.add("/b.webp", photo(400, 300).webpsave_buffer())
    origin.add("/stall.jpg", big[:len(big) // 2], hold_body=True,  # then stalls
               **{"Content-Length": str(len(big))})
    (images / "c.png").write_bytes(photo(300, 200).pngsave_buffer())
    client = await make_client(VIPSGATE_MEMORY_BUDGET="256MiB", IMGPROXY_DOWNLOAD_TIMEOUT="1",
                               VIPSGATE_SOURCE_CACHE_BYTES=str(len(big) * 2), **LOOPBACK)
    budget = client.app[ADMISSION].budget
    origin.release()
    urls = [f"/rs:fit:{n}:{n}/plain/{origin.base}/a.jpg" for n in (50, 60)] + [
        f"/rs:fit:40:40/plain/{origin.base}/b.webp", "/rs:fit:30:30/plain/local:///c.png",
        f"/rs:fit:30:30/plain/{origin.base}/stall.jpg",
        f"/rs:fit:30:30/plain/{origin.base}/missing.jpg"]
    statuses = [(await client.get(signed(url))).status for url in urls]
    assert statuses == [200, 200, 200, 200, 504, 404]
    assert budget.peak > 0
    await wait_until(lambda: budget.used == 0 and not client.app[FETCHER].downloads)


async def test_a_decode_that_can_never_fit_is_422_and_a_full_budget_is_503(make_client,
                                                                          images):
    (images / "big.jpg").write_bytes(jpeg(3000, 2000))
    client = await make_client(VIPSGATE_MEMORY_BUDGET="48MiB")  # FIXED (32) + a little
    response = await client.get(signed("/rs:fit:2000:2000/plain/local:///big.jpg"))
    assert response.status == 422 and "memory" in (await response.text()).lower()
    budget = client.app[ADMISSION].budget
    budget.hold(budget.limit)  # held by other work
    try:
        refused = await client.get(signed("/rs:fit:20:20/plain/local:///big.jpg"))
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert (await client.get("/health")).status == 200
    finally:
        budget.give(budget.limit)
    assert (await client.get(signed("/rs:fit:20:20/plain/local:///big.jpg"))).status == 200


async def test_a_decode_waits_for_memory_without_holding_its_worker(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(3000, 2000))
    (images / "b.jpg").write_bytes(jpeg(80, 60))
    client = await make_client(VIPSGATE_MEMORY_BUDGET="128MiB", IMGPROXY_WORKERS="1")
    budget = client.app[ADMISSION].budget
    room = memory_model.FIXED + (8 << 20)  # for a small decode only
    budget.hold(budget.limit - room)
    waiting = asyncio.create_task(client.get(signed("/rs:fit:2900:2900/plain/local:///a.jpg")))
    await wait_until(lambda: budget.waiting == 1)  # its decode waits for memory
    small = asyncio.create_task(client.get(signed("/rs:fit:10:10/plain/local:///b.jpg")))
    # the one worker was lent: the second job reached its reservation too, and waits
    # behind the first (first come, first served) though it would fit
    await wait_until(lambda: budget.waiting == 2)
    assert not waiting.done() and not small.done()
    budget.give(budget.limit - room)
    assert (await waiting).status == 200 and (await small).status == 200

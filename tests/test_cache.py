"""ByteLRU (byte bound, LRU order, coalescing, cancellation, errors) and the result key."""

from __future__ import annotations

import asyncio
import random

import pytest

from conftest import wait_until
from vipsgate.cache import ByteLRU, Outcome


def lru(max_bytes: int, ratio: float = 1.0) -> ByteLRU[bytes]:
    return ByteLRU(max_bytes, len, ratio)


# --- byte bound and LRU order ----------------------------------------------------------

def test_byte_bound_holds_after_many_inserts():
    cache = lru(10_000, ratio=0.25)
    rng = random.Random(5)
    for i in range(2_000):
        cache.put(i, b"x" * rng.randint(1, 3_000))
        assert cache.current_bytes <= 10_000
    assert cache.current_bytes == sum(len(cache.get(k) or b"") for k in list(cache._lru or ()))
    assert 4 <= len(cache) < 2_000


def test_entries_over_the_share_are_not_kept():
    cache = lru(1_000, ratio=0.1)
    cache.put("small", b"s" * 100)
    cache.put("big", b"b" * 101)
    assert "small" in cache and "big" not in cache
    cache.put("small", b"S" * 500)  # a too-large new value also drops the older one
    assert cache.get("small") is None and cache.current_bytes == 0


def test_ratio_above_one_is_clamped():
    cache = lru(100, ratio=5.0)
    cache.put("a", b"a" * 100)
    cache.put("b", b"b" * 101)  # would make cachetools raise "value too large"
    assert cache.get("a") == b"a" * 100 and "b" not in cache


def test_least_recently_used_goes_first():
    cache = lru(300)
    for key in "abc":
        cache.put(key, key.encode() * 100)
    assert cache.get("a") is not None  # "b" is now the oldest
    cache.put("d", b"d" * 100)
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}


def test_zero_bytes_disables_storage():
    cache = lru(0)
    cache.put("a", b"a")
    assert cache.get("a") is None and len(cache) == 0 and cache.current_bytes == 0


# --- coalescing ------------------------------------------------------------------------

class Job:
    """A factory that blocks until released and records what happened to it."""

    def __init__(self, value: bytes = b"v", fail: int = 0) -> None:
        self.value, self.fail = value, fail
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self) -> bytes:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.calls <= self.fail:
            raise RuntimeError("origin failed")
        return self.value


async def test_concurrent_identical_requests_run_the_job_once():
    cache, job = lru(1_000), Job()
    tasks = [asyncio.create_task(cache.get_or_compute("k", job)) for _ in range(50)]
    await job.started.wait()
    job.release.set()
    results = await asyncio.gather(*tasks)
    assert job.calls == 1
    assert [v for v, _ in results] == [b"v"] * 50
    outcomes = [o for _, o in results]
    assert outcomes.count(Outcome.MISS) == 1 and outcomes.count(Outcome.COALESCED) == 49
    assert await cache.get_or_compute("k", job) == (b"v", Outcome.HIT)
    assert job.calls == 1 and cache.in_flight == 0


async def test_different_keys_do_not_coalesce():
    cache, a, b = lru(1_000), Job(b"a"), Job(b"b")
    a.release.set()
    b.release.set()
    assert await asyncio.gather(cache.get_or_compute(1, a), cache.get_or_compute(2, b)) == [
        (b"a", Outcome.MISS), (b"b", Outcome.MISS)]


async def test_errors_are_shared_but_never_cached():
    cache, job = lru(1_000), Job(fail=1)
    tasks = [asyncio.create_task(cache.get_or_compute("k", job)) for _ in range(3)]
    await job.started.wait()
    job.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and job.calls == 1
    assert "k" not in cache and cache.in_flight == 0
    assert await cache.get_or_compute("k", job) == (b"v", Outcome.MISS)  # retried
    assert job.calls == 2


async def test_cancelled_waiter_does_not_cancel_the_others():
    cache, job = lru(1_000), Job()
    first = asyncio.create_task(cache.get_or_compute("k", job))
    await job.started.wait()
    second = asyncio.create_task(cache.get_or_compute("k", job))
    await wait_until(lambda: cache.waiters("k") == 2)  # ``second`` joined the flight
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not job.cancelled.is_set()
    job.release.set()
    assert await second == (b"v", Outcome.COALESCED)
    assert job.calls == 1 and cache.get("k") == b"v"


async def test_job_is_cancelled_when_its_last_waiter_leaves():
    cache, job = lru(1_000), Job()
    waiters = [asyncio.create_task(cache.get_or_compute("k", job)) for _ in range(2)]
    await job.started.wait()
    assert cache.waiters("k") == 2
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.wait_for(job.cancelled.wait(), 5)
    assert cache.in_flight == 0 and "k" not in cache
    job.release.set()
    assert await cache.get_or_compute("k", job) == (b"v", Outcome.MISS)  # starts afresh
    assert job.calls == 2


async def test_coalescing_works_with_storage_off():
    cache, job = lru(0), Job()
    tasks = [asyncio.create_task(cache.get_or_compute("k", job)) for _ in range(5)]
    await job.started.wait()
    job.release.set()
    await asyncio.gather(*tasks)
    assert job.calls == 1 and len(cache) == 0

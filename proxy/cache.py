"""In-process caches: a byte-bounded LRU, with coalescing of identical work.

``ByteLRU.get_or_compute(key, factory)`` returns a cached value, joins an
identical computation already in flight, or starts one. The computation runs
as its own task: a client that disconnects does not cancel it for the others,
but when the last waiter leaves before it finished, it is cancelled (work
nobody waits for is not done). Errors are never cached.

The result cache's key and values are in ``results.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from enum import StrEnum
from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")


class Outcome(StrEnum):
    HIT = "hit"
    MISS = "miss"
    COALESCED = "coalesced"


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


class ByteLRU(Generic[T]):
    """LRU bounded by the total ``sizeof`` of its values, plus in-flight coalescing.

    A value larger than ``max_entry_ratio`` of the cache is returned but not kept.
    ``max_bytes=0`` disables storage; coalescing still works.
    """

    def __init__(self, max_bytes: int, sizeof: Callable[[T], int],
                 max_entry_ratio: float = 0.125) -> None:
        self.max_bytes = max_bytes
        self.max_entry = int(max_bytes * min(max(max_entry_ratio, 0.0), 1.0))
        self._sizeof = sizeof
        self._lru: LRUCache[Hashable, T] | None = (
            LRUCache(maxsize=max_bytes, getsizeof=sizeof) if max_bytes > 0 else None)
        self._flights: dict[Hashable, _Flight[T]] = {}

    @property
    def current_bytes(self) -> int:
        return int(self._lru.currsize) if self._lru is not None else 0

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def waiters(self, key: Hashable) -> int:
        """Requests waiting on the computation of ``key`` now (0 when none runs)."""
        flight = self._flights.get(key)
        return flight.waiters if flight is not None else 0

    def __len__(self) -> int:
        return len(self._lru) if self._lru is not None else 0

    def __contains__(self, key: Hashable) -> bool:
        return self._lru is not None and key in self._lru

    def get(self, key: Hashable) -> T | None:
        """The cached value (marking it recently used), or None."""
        return self._lru.get(key) if self._lru is not None else None

    def put(self, key: Hashable, value: T) -> None:
        """Keep ``value`` unless it is larger than the per-entry limit."""
        if self._lru is None:
            return
        if self._sizeof(value) <= self.max_entry:
            self._lru[key] = value
        else:
            self._lru.pop(key, None)  # never leave an older value for this key behind

    async def get_or_compute(self, key: Hashable, factory: Callable[[], Awaitable[T]]
                             ) -> tuple[T, Outcome]:
        """The value for ``key`` and how it was obtained (hit, miss or coalesced)."""
        value = self.get(key)
        if value is not None:
            return value, Outcome.HIT
        flight = self._flights.get(key)
        outcome = Outcome.COALESCED
        if flight is None:
            outcome = Outcome.MISS
            flight = _Flight(asyncio.ensure_future(self._run(key, factory)))
            self._flights[key] = flight
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task), outcome
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody is waiting any more
                if self._flights.get(key) is flight:
                    del self._flights[key]
            # an error's traceback holds this frame, and the task holds the error: no
            # local may lead back to the task, or the source bytes wait for the collector
            del flight

    async def _run(self, key: Hashable, factory: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await factory()
            self.put(key, value)
            return value
        finally:  # (no local keeps the flight: see get_or_compute)
            if self._flights.get(key) is not None and \
                    self._flights[key].task is asyncio.current_task():
                del self._flights[key]

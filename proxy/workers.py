"""Admission control and the thread pool that does all pixel work.

``async with pool.admit():`` takes a place in the bounded queue (429 at once
when it is full); ``await pool.run(fn, ...)`` then waits for one of the
``workers`` slots and runs ``fn`` in the executor. Nothing else calls
``run_in_executor``: this is the one helper for blocking work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from .errors import TooManyRequests

P = ParamSpec("P")
R = TypeVar("R")


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, retry_after: int = 1) -> None:
        self.workers = workers
        self.capacity = workers + queue_size if queue_size else 0  # 0 = unbounded
        self.retry_after = retry_after
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips")
        self._slots = asyncio.Semaphore(workers)
        self.admitted = 0  # requests holding a queue place (waiting or working)
        self.busy = 0  # requests in a worker slot

    @property
    def queued(self) -> int:
        return max(0, self.admitted - self.busy)

    @property
    def full(self) -> bool:
        return bool(self.capacity) and self.admitted >= self.capacity

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.full:
            raise TooManyRequests("Request queue is full",
                                  headers={"Retry-After": str(self.retry_after)})
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
                  ) -> tuple[R, float]:
        """Run ``fn`` in a worker thread; returns its result and the seconds queued."""
        queued_at = time.perf_counter()
        async with self._slots:
            waited = time.perf_counter() - queued_at
            self.busy += 1
            try:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
            finally:
                self.busy -= 1
        return result, waited

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

"""Admission control and the thread pool that does all pixel work.

``async with pool.admit():`` takes a place in the bounded queue (429 with
``Retry-After`` at once when it is full); ``await pool.run(fn, ...)`` then
waits for one of the ``workers`` slots and runs ``fn`` in the executor.
Nothing else calls ``run_in_executor``: this is the one helper for blocking work.

A request cancelled while it waits for a slot (deadline, client gone) never
starts its work. One cancelled while its work runs cannot stop libvips, so its
slot stays taken until the thread really finishes: ``busy`` never undercounts
and no more than ``workers`` images are ever decoded at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
        self.busy = 0  # worker slots held by running work
        self.started = 0  # jobs handed to a worker thread since start
        self.rejected = 0  # requests answered 429

    @property
    def queued(self) -> int:
        return max(0, self.admitted - self.busy)

    @property
    def full(self) -> bool:
        return bool(self.capacity) and self.admitted >= self.capacity

    @property
    def idle(self) -> bool:
        return self.busy == 0 and self.admitted == 0

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a place in the queue, or raise 429 at once when there is none."""
        if self.full:
            self.rejected += 1
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
        await self._slots.acquire()
        waited = time.perf_counter() - queued_at
        self.busy += 1
        self.started += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # the thread cannot be interrupted: free the slot when it is really done
            future.add_done_callback(self._release_after_cancel)
            raise
        except BaseException:
            self._release()
            raise
        self._release()
        return result, waited

    def _release(self) -> None:
        self.busy -= 1
        self._slots.release()

    def _release_after_cancel(self, future: asyncio.Future[object]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: nobody waits for this result any more
        self._release()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

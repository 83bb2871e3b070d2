"""Admission control and the pool (threads or processes) that does all pixel work.

``async with pool.admit():`` takes a place in the bounded queue (429 with
``Retry-After`` at once when it is full); ``await pool.run(fn, ...)`` then
waits for one of the ``workers`` slots and runs ``fn`` in the executor. All
pixel work goes through here; the only other blocking calls (local file reads,
the health check's tiny image, the memory trim) use asyncio's default executor.

``executor="process"`` runs the work in spawned worker processes instead of
threads: the event loop then never competes with pixel work for the GIL (see
loadtest/README.md for when that wins); cache, coalescing and metrics stay in
this process. Arguments and results must pickle.

A request cancelled while it waits for a slot (deadline, client gone) never
starts its work. One cancelled while its work runs cannot stop libvips, so its
slot stays taken until the thread really finishes: ``busy`` never undercounts
and no more than ``workers`` images are ever decoded at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from .errors import TooManyRequests

P = ParamSpec("P")
R = TypeVar("R")


def _init_worker_process() -> None:
    """Start-up of a spawned worker: libvips as the server sets it up; no Ctrl-C noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")
    import pyvips

    from .processing import pipeline  # noqa: F401  (imports and applies the loader allow-list)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)


def _ready() -> int:
    return os.getpid()


def make_executor(kind: str, workers: int) -> Executor:
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker_process,
                                   mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips")


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, retry_after: int = 1,
                 executor: str = "thread") -> None:
        self.workers = workers
        self.capacity = workers + queue_size if queue_size else 0  # 0 = unbounded
        self.retry_after = retry_after
        self.kind = executor
        self.executor = make_executor(executor, workers)
        self._slots = asyncio.Semaphore(workers)
        self.admitted = 0  # requests holding a queue place (waiting or working)
        self.busy = 0  # worker slots held by running work
        self.started = 0  # jobs handed to a worker thread since start

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

    async def start(self) -> None:
        """Bring worker processes up before the first request (no-op for threads)."""
        if self.kind == "process":
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self.executor, _ready)
                                   for _ in range(self.workers)))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=self.kind == "process", cancel_futures=True)

"""Stage 7, process: the pool (threads or processes) that does all pixel work.

``await pool.run(fn, ...)`` waits for one of the ``workers`` slots and runs ``fn``
in the executor (admission to the queue in front of it is ``admission.py``). All
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
import functools
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def _init_worker_process() -> None:
    """Start-up of a spawned worker: libvips as the server sets it up; no Ctrl-C noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .processing import vips
    vips.init()


def _ready() -> int:
    return os.getpid()


def make_executor(kind: str, workers: int) -> Executor:
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker_process,
                                   mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips")


class WorkerPool:
    """``workers`` slots over an executor; created idle, ``start``ed by the app."""

    def __init__(self, workers: int, executor: str = "thread") -> None:
        self.workers = workers
        self.kind = executor
        self.executor: Executor | None = None
        self._slots = asyncio.Semaphore(workers)
        self.busy = 0  # worker slots held by running work
        self.started = 0  # jobs handed to a worker since start

    @property
    def idle(self) -> bool:
        return self.busy == 0

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
                  ) -> tuple[R, float]:
        """Run ``fn`` in a worker thread; returns its result and the seconds queued."""
        queued_at = time.perf_counter()
        await self._slots.acquire()
        waited = time.perf_counter() - queued_at
        self.busy += 1
        self.started += 1
        loop = asyncio.get_running_loop()
        assert self.executor is not None, "WorkerPool.run before start"
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

    def _release_after_cancel(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: nobody waits for this result any more
        self._release()

    async def start(self) -> None:
        """Set libvips up and bring the workers up (processes: before the first request)."""
        if self.kind == "process":
            self.executor = make_executor(self.kind, self.workers)
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self.executor, _ready)
                                   for _ in range(self.workers)))
        else:
            from .processing import vips
            vips.init()
            self.executor = make_executor(self.kind, self.workers)

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=self.kind == "process", cancel_futures=True)
            self.executor = None

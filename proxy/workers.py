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
starts its work. One cancelled while its work runs is stopped (``stop``: libvips'
kill flag, see ``processing/cancel.py``), but its slot stays taken until the thread
really finishes: ``busy`` never undercounts and no more than ``workers`` images are
ever decoded at once. A job that waits for
source bytes (a streamed source) lends its slot meanwhile (``Slot.lend``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def _init_worker_process() -> None:
    """Start-up of a spawned worker: libvips as the server sets it up; no Ctrl-C noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .processing import vips
    vips.init()


def _unwound(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` in a worker. An error leaves without the locals of the
    frames it unwound (the source bytes, decoded images): its traceback may outlive the
    request (logged, shared by coalesced waiters), and nothing may keep those alive."""
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        forget_locals(exc)
        raise


def forget_locals(exc: BaseException) -> None:
    """Clear the local variables of the finished frames in ``exc``'s traceback and in
    those of the errors it was raised from (the line numbers stay, for logs)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)  # skips frames still running
        pending += [error.__context__, error.__cause__]


def _ready() -> int:
    return os.getpid()


def _after_cancel(slot: Slot, future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: nobody waits for this result any more
    slot.give_back()


def make_executor(kind: str, workers: int) -> Executor:
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker_process,
                                   mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips")


class Borrower(Protocol):
    """Work that may wait for input while it runs (a ``SourceStream`` reader): the pool
    hands it ``lend`` to enter while waiting, and ``cancel`` when the job is given up."""

    waiting: Callable[[], AbstractContextManager[None]]

    def cancel(self) -> None: ...


class Lender:
    """A ``Borrower`` for a job whose input is in memory: it may still wait for memory
    from the budget, lending its slot meanwhile."""

    def __init__(self) -> None:
        self.waiting: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext

    def cancel(self) -> None:
        pass


class Slot:
    """One worker slot held by one job. A job waiting for source bytes lends it out
    (``lend``, entered in the worker's thread) and takes one again when the bytes come,
    so a slow origin never keeps a slot from work that has pixels to decode."""

    def __init__(self, pool: WorkerPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool, self.loop = pool, loop
        self.held = False
        self.pending: concurrent.futures.Future[None] | None = None
        self.given_up = False

    async def take(self) -> None:
        await self.pool._slots.acquire()
        self.held = True
        self.pool.busy += 1

    def give_back(self) -> None:
        """Release the slot if held (event loop thread)."""
        if self.held:
            self.held = False
            self.pool.busy -= 1
            self.pool._slots.release()

    @contextlib.contextmanager
    def lend(self) -> Iterator[None]:
        """In the worker's thread: the slot is free for others until the block ends."""
        self.loop.call_soon_threadsafe(self.give_back)
        try:
            yield
        finally:
            if self.given_up:
                raise concurrent.futures.CancelledError()
            self.pending = asyncio.run_coroutine_threadsafe(self.take(), self.loop)
            self.pending.result()  # CancelledError when the job is given up meanwhile
            self.pending = None

    def give_up(self) -> None:
        """The job was cancelled (event loop thread): stop waiting for a slot."""
        self.given_up = True
        if self.pending is not None:
            self.pending.cancel()


class WorkerPool:
    """``workers`` slots over an executor; created idle, ``start``ed by the app.

    Threads: ``workers`` plus ``spare`` ones for jobs that lent their slot while they
    wait for source bytes (so at most ``workers`` images are decoded at once)."""

    def __init__(self, workers: int, executor: str = "thread", spare: int = 0) -> None:
        self.workers = workers
        self.kind = executor
        self.spare = spare
        self.executor: Executor | None = None
        self._slots = asyncio.Semaphore(workers)
        self.busy = 0  # worker slots held by running work
        self.started = 0  # jobs handed to a worker since start

    @property
    def idle(self) -> bool:
        return self.busy == 0

    @property
    def healthy(self) -> bool:
        """Whether work can be started now (the executor is up)."""
        return self.executor is not None

    @property
    def lends(self) -> bool:
        """Whether jobs can lend their slot (thread workers; processes get whole bytes)."""
        return self.kind == "thread"

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
                  ) -> tuple[R, float]:
        """Run ``fn`` in a worker; returns its result and the seconds queued."""
        return await self.run_lending(None, None, fn, *args, **kwargs)

    async def run_lending(self, borrower: Borrower | None, stop: Callable[[], None] | None,
                          fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
                          ) -> tuple[R, float]:
        """``run``, where ``borrower`` may lend the slot while it waits for input, and
        ``stop`` (called when the job is given up: ``cancel.KillSwitch.kill``) makes the
        work end early, so that its slot comes back soon."""
        loop = asyncio.get_running_loop()
        slot = Slot(self, loop)
        queued_at = time.perf_counter()
        await slot.take()
        waited = time.perf_counter() - queued_at
        self.started += 1
        if borrower is not None:
            borrower.waiting = slot.lend
        assert self.executor is not None, "WorkerPool.run before start"
        future = loop.run_in_executor(self.executor,
                                      functools.partial(_unwound, fn, *args, **kwargs))
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # the thread cannot be interrupted: free the slot when it is really done
            slot.give_up()
            if borrower is not None:
                borrower.cancel()
            if stop is not None:
                stop()
            future.add_done_callback(functools.partial(_after_cancel, slot))
            raise
        except BaseException:
            slot.give_back()
            raise
        finally:
            del future  # an error's traceback holds this frame: no cycle through the future
        slot.give_back()
        return result, waited

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
            self.executor = make_executor(self.kind, self.workers + self.spare)

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=self.kind == "process", cancel_futures=True)
            self.executor = None

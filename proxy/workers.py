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
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from .errors import WorkerLost

P = ParamSpec("P")
log = logging.getLogger("vipsgate")
#: seconds past a job's deadline before the worker process still running it is killed
HARD_KILL_GRACE = 0.25
PR_SET_PDEATHSIG = 1  # prctl(2)
R = TypeVar("R")


def lower_priority(niceness: int) -> None:
    """Lower the calling thread's CPU priority by ``niceness`` (Linux nice is per thread;
    the threads libvips starts from it inherit it). Pixel work then takes the cycles the
    event loop leaves, and the loop, which answers refusals, hits and probes in well
    under a millisecond each, is not queued behind it on a saturated CPU."""
    if niceness <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)


def _init_worker_process(niceness: int = 0) -> None:
    """Start-up of a spawned worker: libvips as the server sets it up; no Ctrl-C noise;
    killed with the server (Linux), so no orphan keeps encoding after a SIGKILL; its
    priority lowered by ``niceness``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lower_priority(niceness)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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


def _kill_workers(executor: Executor) -> None:
    """SIGKILL a process pool's workers (no public way to before Python 3.14)."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()


def _ready() -> int:
    return os.getpid()


def _after_cancel(slot: Slot, future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: nobody waits for this result any more
    slot.give_back()


def make_executor(kind: str, workers: int, niceness: int = 0) -> Executor:
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker_process,
                                   initargs=(niceness,),
                                   mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vips",
                              initializer=lower_priority, initargs=(niceness,))


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
        self.pool._idle.clear()

    def give_back(self) -> None:
        """Release the slot if held (event loop thread)."""
        if self.held:
            self.held = False
            self.pool.busy -= 1
            self.pool._slots.release()
            if not self.pool.busy:
                self.pool._idle.set()

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


@dataclass
class JobControl:
    """How the pool may steer one job (``WorkerPool.run_controlled``)."""

    borrower: Borrower | None = None
    stop: Callable[[], None] | None = None
    deadline: float | None = None  # time.monotonic()


class WorkerPool:
    """``workers`` slots over an executor; created idle, ``start``ed by the app.

    Threads: ``workers`` plus ``spare`` ones for jobs that lent their slot while they
    wait for source bytes (so at most ``workers`` images are decoded at once)."""

    def __init__(self, workers: int, executor: str = "thread", spare: int = 0,
                 niceness: int = 0) -> None:
        self.workers = workers
        self.kind = executor
        self.niceness = niceness
        self.spare = spare
        self.executor: Executor | None = None
        self._slots = asyncio.Semaphore(workers)
        self.busy = 0  # worker slots held by running work
        self._idle = asyncio.Event()  # set while busy == 0
        self._idle.set()
        self.started = 0  # jobs handed to a worker since start
        self.replaced = 0  # times the worker processes were replaced
        self._warming: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        return self.busy == 0

    @property
    def broken(self) -> bool:
        """A worker process died: the pool fails every job until ``heal``."""
        return bool(getattr(self.executor, "_broken", False))

    @property
    def healthy(self) -> bool:
        """Whether work can be started now: the executor is up, not broken, and (after a
        replacement) its new worker processes are ready."""
        return self.executor is not None and not self.broken and \
            (self._warming is None or self._warming.done())

    @property
    def lends(self) -> bool:
        """Whether jobs can lend their slot (thread workers; processes get whole bytes)."""
        return self.kind == "thread"

    def heal(self) -> None:
        """Replace the worker processes when one died (killed, out of memory)."""
        if self.executor is not None and self.broken:
            self._replace("a worker process died")

    def _replace(self, why: str) -> None:
        """Kill every worker process and start afresh: jobs still running in them fail
        (``WorkerLost``), later ones run in new processes."""
        old = self.executor
        assert old is not None
        log.warning("replacing the worker processes: %s", why)
        _kill_workers(old)
        old.shutdown(wait=False, cancel_futures=True)
        self.executor = make_executor(self.kind, self.workers, self.niceness)
        self.replaced += 1
        self._warming = asyncio.ensure_future(self._warm_up())

    async def _warm_up(self) -> None:
        """Start every worker process now (they import vipsgate and set libvips up)
        rather than on the next jobs, which would pay for it within their deadline."""
        loop = asyncio.get_running_loop()
        executor = self.executor
        with contextlib.suppress(Exception):  # a pool broken meanwhile is healed again
            await asyncio.gather(*(loop.run_in_executor(executor, _ready)
                                   for _ in range(self.workers)))

    def _overdue(self, executor: Executor, future: asyncio.Future[Any]) -> None:
        """A job's hard deadline passed: a process stuck where libvips' kill flag cannot
        reach (an encoder, a foreign decoder) is killed, and its slot comes back."""
        if not future.done() and self.executor is executor:
            self._replace("a job ran past its deadline")

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
                  ) -> tuple[R, float]:
        """Run ``fn`` in a worker; returns its result and the seconds queued."""
        return await self.run_controlled(None, fn, *args, **kwargs)

    async def run_controlled(self, control: JobControl | None, fn: Callable[P, R],
                             *args: P.args, **kwargs: P.kwargs) -> tuple[R, float]:
        """``run`` under ``control``: its borrower may lend the slot while it waits for
        input; ``stop`` (when the job is given up) makes the work end early, so that its
        slot comes back soon; past ``deadline`` plus ``HARD_KILL_GRACE``, a worker
        process still running it is killed."""
        control = control or JobControl()
        loop = asyncio.get_running_loop()
        slot = Slot(self, loop)
        queued_at = time.perf_counter()
        await slot.take()
        waited = time.perf_counter() - queued_at
        self.started += 1
        if control.borrower is not None:
            control.borrower.waiting = slot.lend
        self.heal()
        executor = self.executor
        assert executor is not None, "WorkerPool.run before start"
        future = loop.run_in_executor(executor,
                                      functools.partial(_unwound, fn, *args, **kwargs))
        if self.kind == "process" and control.deadline is not None:
            timer = loop.call_later(control.deadline - time.monotonic() + HARD_KILL_GRACE,
                                    self._overdue, executor, future)
            future.add_done_callback(lambda _: timer.cancel())
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # the thread cannot be interrupted: free the slot when it is really done
            slot.give_up()
            if control.borrower is not None:
                control.borrower.cancel()
            if control.stop is not None:
                control.stop()
            future.add_done_callback(functools.partial(_after_cancel, slot))
            raise
        except concurrent.futures.BrokenExecutor:
            slot.give_back()
            if self.executor is executor:
                self._replace("a worker process died")
            raise WorkerLost("The worker making this image stopped") from None
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
            self.executor = make_executor(self.kind, self.workers, self.niceness)
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self.executor, _ready)
                                   for _ in range(self.workers)))
        else:
            from .processing import vips
            vips.init()
            self.executor = make_executor(self.kind, self.workers + self.spare,
                                          self.niceness)

    async def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the work still in the workers to leave them
        (at shutdown its kill switches were thrown: it stops within a tile or so, but a
        worker thread at a lower priority may need a moment on a busy CPU); whether none
        is left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return not self.busy

    def shutdown(self) -> None:
        """Stop the workers. Requests were drained before: a worker process still busy
        now is stuck, and is killed rather than waited for."""
        if self.executor is not None:
            if self.kind == "process":
                _kill_workers(self.executor)
            self.executor.shutdown(wait=self.kind == "process", cancel_futures=True)
            self.executor = None

"""The process's memory budget for work in flight: source bytes held by downloads,
and the pixels of images being decoded (``VIPSGATE_MEMORY_BUDGET``).

Downloads ``hold`` the bytes they keep (retained for the originals cache or for a
decoder that needs the whole file, or the window ahead of a streaming decoder) and
``give`` them back when dropped; a decoder ``reserve``s its estimated working memory
from its worker thread before it decodes, waiting (its worker slot lent out) while
the budget is used up. Waiting reservations are served first come, first served: a
new one never takes memory ahead of one that waits (else, with every decoder waiting
and the slots lent out, whoever wakes first wins, and some wait until their deadline).
Admission refuses new work with 503 + ``Retry-After`` while the budget is over.
Thread-safe: the event loop and worker threads share it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from .errors import RequestTimeout, TooMuchMemory


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes; 0: no budget (nothing is counted)
        self.used = 0
        self.peak = 0
        self._lock = threading.Condition()
        self._queue: deque[object] = deque()  # waiting reservations, oldest first

    @property
    def waiting(self) -> int:
        """Reservations waiting for memory now."""
        return len(self._queue)

    @property
    def over(self) -> bool:
        return bool(self.limit) and self.used >= self.limit

    def hold(self, nbytes: int) -> None:
        """Count bytes that are already in memory (never waits)."""
        if self.limit and nbytes:
            with self._lock:
                self.used += nbytes
                self.peak = max(self.peak, self.used)

    def give(self, nbytes: int) -> None:
        if self.limit and nbytes:
            with self._lock:
                self.used -= nbytes
                self._lock.notify_all()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, deadline: float | None,
                waiting: Callable[[], AbstractContextManager[None]] | None = None
                ) -> Iterator[None]:
        """Hold ``nbytes`` for the block, waiting (in a worker thread) until they fit;
        ``TooMuchMemory`` (422) when they never can, ``RequestTimeout`` past ``deadline``
        (``time.monotonic()``). ``waiting`` is entered while blocked (the job's slot
        is lent meanwhile)."""
        if not self.limit:
            yield
            return
        if nbytes > self.limit:
            raise TooMuchMemory(f"The image needs about {nbytes >> 20} MiB to process; "
                                f"the memory budget is {self.limit >> 20} MiB")
        self._take(nbytes, deadline, waiting)
        try:
            yield
        finally:
            self.give(nbytes)

    def _take(self, nbytes: int, deadline: float | None,
              waiting: Callable[[], AbstractContextManager[None]] | None) -> None:
        with self._lock:
            if not self._queue and self.used + nbytes <= self.limit:
                self.used += nbytes
                self.peak = max(self.peak, self.used)
                return
        with waiting() if waiting is not None else contextlib.nullcontext(), self._lock:
            ticket = object()
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.used + nbytes > self.limit:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise RequestTimeout("No memory for this image before the deadline")
                    self._lock.wait(left)
            finally:
                self._queue.remove(ticket)
                self._lock.notify_all()  # the next in line may fit now
            self.used += nbytes
            self.peak = max(self.peak, self.used)


def auto_limit(caches: int, cgroup: str = "/sys/fs/cgroup/memory.max",
               runtime: int = 128 * 2**20) -> int:
    """``VIPSGATE_MEMORY_BUDGET=auto``: three quarters of what the cgroup memory limit
    leaves after the caches and the runtime (at least 64 MiB); 0 (no budget) when the
    process has no memory limit."""
    try:
        text = open(cgroup).read().strip()  # noqa: SIM115 - one small read
    except OSError:
        return 0
    if not text.isdigit():
        return 0  # "max": no limit
    return max(64 * 2**20, (int(text) - caches - runtime) * 3 // 4)

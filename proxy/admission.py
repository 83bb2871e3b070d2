"""Stage 5, admit: a bounded queue in front of the workers (429 when it is full),
and the memory budget (503 while it is used up).

``async with admission.admit():`` holds a place from before the source is fetched
until the result is made, so the queue also bounds concurrent downloads. A full
queue answers 429 with ``Retry-After`` at once, and so does a used-up memory budget
with 503: nothing piles up. Cache hits and coalesced requests never take a place.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from .errors import Overloaded, TooManyRequests
from .memory_budget import MemoryBudget


class Admission:
    def __init__(self, workers: int, queue_size: int, retry_after: int = 1,
                 budget: MemoryBudget | None = None) -> None:
        self.capacity = workers + queue_size if queue_size else 0  # 0 = unbounded
        self.retry_after = retry_after
        self.budget = budget or MemoryBudget(0)
        self.admitted = 0  # requests holding a place (waiting, fetching or working)

    @property
    def full(self) -> bool:
        return bool(self.capacity) and self.admitted >= self.capacity

    def check(self) -> None:
        """Raise what new work gets now: 429 (queue full), 503 (memory budget used up)."""
        if self.full:
            raise TooManyRequests("Request queue is full",
                                  headers={"Retry-After": str(self.retry_after)})
        if self.budget.over:
            raise Overloaded(f"Memory budget used up ({self.budget.used >> 20} MiB)",
                             headers={"Retry-After": str(self.retry_after)})

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a place in the queue, or raise 429 at once when there is none."""
        self.check()
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

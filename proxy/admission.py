"""Stage 5, admit: a bounded queue in front of the workers (429 when it is full, or when
the request's origin holds its share of it), and the memory budget (503 while it is
used up).

``async with admission.admit(origin):`` holds a place from before the source is
fetched until the result is made, so the queue also bounds concurrent downloads. A
full queue answers 429 with ``Retry-After`` at once, and so does a used-up memory
budget with 503: nothing piles up. Cache hits and coalesced requests never take a place.

One origin (``SourceRef.origin``: the source's host, or its bucket) may hold at most
``per_origin`` places (``VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN`` of them): a slow origin
fills its share, not the queue, and requests for other origins are still admitted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from .errors import Overloaded, TooManyRequests
from .memory_budget import MemoryBudget


class Admission:
    def __init__(self, workers: int, queue_size: int, retry_after: int = 1,
                 budget: MemoryBudget | None = None, per_origin: int = 0) -> None:
        self.capacity = workers + queue_size if queue_size else 0  # 0 = unbounded
        self.retry_after = retry_after
        self.budget = budget or MemoryBudget(0)
        self.per_origin = per_origin  # 0 = no per-origin limit
        self.admitted = 0  # requests holding a place (waiting, fetching or working)
        self.by_origin: dict[str, int] = {}  # places held per origin (only while > 0)

    @property
    def full(self) -> bool:
        return bool(self.capacity) and self.admitted >= self.capacity

    def check(self, origin: str = "") -> None:
        """Raise what new work for ``origin`` gets now: 429 (queue full, or the origin's
        share of it held), 503 (memory budget used up)."""
        if self.full:
            raise TooManyRequests("Request queue is full",
                                  headers={"Retry-After": str(self.retry_after)})
        held = self.by_origin.get(origin, 0) if origin else 0
        if self.per_origin and held >= self.per_origin:
            raise TooManyRequests(f"Request queue share of origin {origin[:100]} is full "
                                  f"({held} places)",
                                  headers={"Retry-After": str(self.retry_after)})
        if self.budget.over:
            raise Overloaded(f"Memory budget used up ({self.budget.used >> 20} MiB)",
                             headers={"Retry-After": str(self.retry_after)})

    @contextlib.asynccontextmanager
    async def admit(self, origin: str = "") -> AsyncIterator[None]:
        """Hold a place in the queue, or raise 429 at once when there is none (for
        ``origin``: "" counts against no origin's share)."""
        self.check(origin)
        self.admitted += 1
        if origin:
            self.by_origin[origin] = self.by_origin.get(origin, 0) + 1
        try:
            yield
        finally:
            self.admitted -= 1
            if origin:
                left = self.by_origin[origin] - 1
                if left:
                    self.by_origin[origin] = left
                else:
                    del self.by_origin[origin]

"""Shedding load cheaply: the excess of a flood is refused at once, and a client that
retries before the ``Retry-After`` it was given waits that out without work.

Called for a result-cache miss, before it starts or joins a job:

* **Refused at once.** With nothing to join (no job for the same result in flight) and
  no shared tier that might hold the result, a request that admission would refuse (429
  queue full, 503 memory budget used up) is refused here, synchronously: no job task,
  deadline timer or coalescing flight is made for it, and its answer leaves in the same
  turn of the event loop that read it.
* **Early retries are held.** A refusal is remembered per result key until its
  ``Retry-After`` has passed. A request for that result before then is held (an idle
  timer, no other work) until it has, and is then admitted or refused like any other.
  Clients that retry at once then cost one cheap held request per ``Retry-After``,
  instead of a closed loop of refusals that keeps the event loop, and the GIL, from the
  workers. Well-behaved clients, which come back after ``Retry-After``, are never held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from typing import Any

from .admission import Admission
from .cache import ByteLRU
from .errors import ProxyError

REMEMBERED = 8192  # refused results remembered at most (the oldest are forgotten first)


class Shedder:
    def __init__(self, admission: Admission, jobs: ByteLRU[Any], direct: bool = True,
                 max_hold: float = 10.0, remembered: int = REMEMBERED) -> None:
        self.admission, self.jobs = admission, jobs
        self.direct = direct  # False with a shared tier: the job asks it before admission
        self.max_hold, self.remembered = max_hold, remembered
        self.refused_until: dict[Hashable, float] = {}  # key -> when Retry-After ends

    async def hold(self, key: Hashable) -> float:
        """Hold an early retry of ``key`` until its ``Retry-After`` has passed (at most
        ``max_hold``); returns the seconds held."""
        until = self.refused_until.get(key)
        if until is None:
            return 0.0
        held = min(until - time.monotonic(), self.max_hold)
        if held <= 0:
            del self.refused_until[key]
            return 0.0
        await asyncio.sleep(held)
        return held

    def check(self, key: Hashable, origin: str = "") -> None:
        """Raise at once the refusal admission would give now for ``origin``, if there is
        one and no job for ``key`` to join."""
        if self.direct and not self.jobs.waiters(key):
            self.admission.check(origin)

    def refused(self, key: Hashable, exc: ProxyError) -> None:
        """Remember the refusal of ``key`` until its ``Retry-After`` has passed (any error
        with a status: only 429 and 503 with ``Retry-After`` count)."""
        retry_after = exc.headers.get("Retry-After", "")
        if exc.status not in (429, 503) or not retry_after.isdigit():
            return
        until, now = self.refused_until, time.monotonic()
        until.pop(key, None)  # re-inserted last: the dict stays in order of expiry
        until[key] = now + int(retry_after)
        while until:  # the oldest first: over the limit, or Retry-After passed
            oldest = next(iter(until))
            if len(until) <= self.remembered and until[oldest] > now:
                break
            del until[oldest]

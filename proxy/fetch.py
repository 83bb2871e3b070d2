"""Stage 6, fetch: the source's bytes, through the originals cache (coalesced).

Several sizes of one cold source share one download; a source fetched for another
request is checked against this request's size limit (``msfs``).
"""

from __future__ import annotations

import time

from .cache import ByteLRU, Outcome
from .metrics import JobReport
from .sources import Fetched, SourceRef, Sources, check_size
from .tracing import Tracer


class Fetcher:
    def __init__(self, sources: Sources, originals: ByteLRU[Fetched], tracer: Tracer) -> None:
        self.sources = sources
        self.originals = originals
        self.tracer = tracer

    async def fetch(self, ref: SourceRef, max_bytes: int, report: JobReport) -> Fetched:
        """The source within ``max_bytes`` (0: no limit); ``report`` gets the ``fetch``
        seconds, the originals-cache outcome and the source's size."""
        started = time.perf_counter()
        with self.tracer.span("vipsgate.fetch", **{"vipsgate.source.scheme": ref.scheme}):
            fetched, outcome = await self.originals.get_or_compute(
                ref.url, lambda: self.sources.fetch(ref, max_bytes))
        check_size(fetched, max_bytes)
        report.stages["fetch"] = time.perf_counter() - started
        report.source_cache, report.source_bytes = outcome.value, len(fetched.data)
        return fetched

    def cached(self, ref: SourceRef) -> Fetched | None:
        return self.originals.get(ref.url)


__all__ = ["Fetcher", "Outcome"]

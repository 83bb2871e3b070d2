"""Per-request observations summed in plain Python, added to the Prometheus metrics in
batches.

prometheus-client takes a lock for every value it changes, and with several server
processes each change is a write to a shared file: the five metrics a request updates
cost 9.5 µs in one process and 18 µs with several, a tenth of a cache hit. A ``Tally``
counts instead (a dictionary update per metric) and ``flush`` adds the sums: before
every collection of the registry (``FlushFirst``), every scrape, and every second with
several processes. The exposition is the same as observing each value at once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client.registry import Collector


class Tally:
    """Counts for counter children and bucket counts for histogram children, pending."""

    __slots__ = ("counts", "histograms")

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}
        #: histogram child -> [its upper bounds, bucket counts, sum of the values]
        self.histograms: dict[Any, tuple[list[float], list[int], list[float]]] = {}

    def count(self, child: Any) -> None:
        """``child.inc()``, later."""
        self.counts[child] = self.counts.get(child, 0) + 1

    def observe(self, child: Any, value: float) -> None:
        """``child.observe(value)``, later (a histogram puts a value in the first bucket
        whose upper bound is at least the value)."""
        pending = self.histograms.get(child)
        if pending is None:
            bounds = list(child._upper_bounds)
            pending = self.histograms[child] = (bounds, [0] * len(bounds), [0.0])
        pending[1][bisect_left(pending[0], value)] += 1
        pending[2][0] += value

    def flush(self) -> None:
        """Add what was counted to the metrics."""
        counts, self.counts = self.counts, {}
        for child, n in counts.items():
            child.inc(n)
        histograms, self.histograms = self.histograms, {}
        for child, (_, buckets, total) in histograms.items():
            child._sum.inc(total[0])
            for bucket, n in zip(child._buckets, buckets, strict=True):
                if n:
                    bucket.inc(n)


class FlushFirst(Collector):
    """Registered first in a registry: collecting it flushes the tally, so whoever reads
    the registry (a scrape, ``get_sample_value``) sees every request so far."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def collect(self) -> Iterable[Any]:
        self.tally.flush()
        return ()

    def describe(self) -> Iterable[Any]:
        return ()  # no metrics of its own; collect is not called at registration

"""Prometheus series of the shared tier, labelled by adapter (``tier="fs"``, ``"s3"``,
``"redis"``, ``"gcs"``, ``"abs"``).

Registered in the app's registry (``Metrics.registry``), so they go through the same
multiprocess files as the rest when ``VIPSGATE_PROCESSES`` > 1.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5)
LOOKUP_OUTCOMES = ("hit", "miss", "expired", "corrupt", "error", "timeout")
WRITE_OUTCOMES = ("stored", "error", "timeout", "dropped", "too_large")


class TierMetrics:
    def __init__(self, tier: str, registry: CollectorRegistry,
                 namespace: str = "vipsgate") -> None:
        ns, reg = namespace, registry
        lookups = Counter("tier_lookups", "Shared-cache reads by outcome", ["tier", "outcome"],
                          namespace=ns, registry=reg)
        writes = Counter("tier_writes", "Shared-cache writes by outcome", ["tier", "outcome"],
                         namespace=ns, registry=reg)
        moved = Counter("tier_bytes", "Bytes read from and written to the shared cache",
                        ["tier", "direction"], namespace=ns, registry=reg)
        duration = Histogram("tier_duration_seconds", "Shared-cache call latency",
                             ["tier", "operation"], namespace=ns, registry=reg,
                             buckets=_SECONDS)
        queue = Gauge("tier_write_queue_bytes", "Bytes of results waiting to be written "
                      "to the shared cache", ["tier"], namespace=ns, registry=reg,
                      multiprocess_mode="livesum")
        # children resolved once: no label lookup per call
        self.lookup: dict[str, Any] = {o: lookups.labels(tier, o) for o in LOOKUP_OUTCOMES}
        self.write: dict[str, Any] = {o: writes.labels(tier, o) for o in WRITE_OUTCOMES}
        self.read_bytes = moved.labels(tier, "read")
        self.written_bytes = moved.labels(tier, "written")
        self.get_seconds = duration.labels(tier, "get")
        self.put_seconds = duration.labels(tier, "put")
        self.queue_bytes = queue.labels(tier)

"""Prometheus metrics and the per-request trace they (and the access log) read.

The server fills a ``RequestTrace`` as the request moves down the pipeline
and hands it to ``Metrics.observe`` at the end; nothing here calls back up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-export)
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

STAGES = ("queue", "fetch", "process")


@dataclass
class RequestTrace:
    """What happened to one request: filled by the server, read by logs and metrics."""

    request_id: str = ""
    method: str = "GET"
    path: str = ""
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    bytes: int = 0
    format: str = ""
    cache: str = ""  # hit / miss / coalesced / 304
    source_scheme: str = ""
    error: str = ""  # error category
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return time.perf_counter() - self.started


class Metrics:
    def __init__(self, namespace: str = "vipsgate",
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ns, reg = namespace, self.registry
        self.requests = Counter("requests", "Image requests by status class and format",
                                ["status", "format"], namespace=ns, registry=reg)
        self.duration = Histogram("request_duration_seconds", "Image request latency",
                                  namespace=ns, registry=reg,
                                  buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.stage = Histogram("stage_duration_seconds", "Time spent per pipeline stage",
                               ["stage"], namespace=ns, registry=reg,
                               buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.cache = Counter("cache_requests", "Result cache outcomes", ["outcome"],
                             namespace=ns, registry=reg)
        self.errors = Counter("errors", "Errors by category", ["type"], namespace=ns,
                              registry=reg)

    def observe(self, trace: RequestTrace) -> None:
        self.requests.labels(f"{trace.status // 100}xx", trace.format or "none").inc()
        self.duration.observe(trace.duration)
        for stage, seconds in trace.stages.items():
            self.stage.labels(stage).observe(seconds)
        if trace.cache:
            self.cache.labels(trace.cache).inc()
        if trace.error:
            self.errors.labels(trace.error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics and the per-request trace they (and the access log) read.

The server fills a ``RequestTrace`` as the request moves down the pipeline and
hands it to ``Metrics.observe`` at the end; nothing here calls back up. Gauges
of live state (caches, queue, workers, libvips memory) are read at scrape time
by ``LiveCollector``, never updated per request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from . import __version__

disable_created_metrics()  # no *_created series: they double the output for nothing
STAGES = ("queue", "fetch", "process")
_SECONDS = (.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}
_BYTES = tuple(float(2 ** n) for n in range(10, 27, 2))  # 1 KiB .. 64 MiB


@dataclass(slots=True)
class RequestTrace:
    """What happened to one request: filled by the server, read by logs and metrics."""

    request_id: str = ""
    method: str = "GET"
    path: str = ""
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    bytes: int = 0
    format: str = ""
    cache: str = ""  # result cache: hit / miss / coalesced
    source_cache: str = ""  # originals cache: hit / miss / coalesced
    source_bytes: int = 0
    source_scheme: str = ""
    error: str = ""  # error category (errors_total's type label)
    reason: str = ""  # the error's cause, for the log
    stages: dict[str, float] = field(default_factory=dict)
    finished: float | None = None

    @property
    def duration(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def finish(self) -> None:
        self.finished = time.perf_counter()


# --- what the scrape-time collector reads (duck-typed: server.State) ------------------

class _Cache(Protocol):
    max_bytes: int

    @property
    def current_bytes(self) -> int: ...

    def __len__(self) -> int: ...


class _Pool(Protocol):
    workers: int
    capacity: int
    admitted: int
    busy: int

    @property
    def queued(self) -> int: ...


class LiveState(Protocol):
    results: _Cache
    originals: _Cache
    pool: _Pool | None
    draining: bool


class VipsMemory:
    """libvips' own allocation counters (``vips_tracked_*``), read through ctypes.

    pyvips does not bind these, so the already-loaded libvips is opened again by
    path; ``read()`` returns ``None`` where that library cannot be found.
    """

    def __init__(self) -> None:
        self._lib: Any = None
        self._looked = False

    def _load(self) -> Any:
        self._looked = True
        path = _loaded_library("libvips") or ctypes.util.find_library("vips")
        if not path:
            return None
        try:
            lib = ctypes.CDLL(path)
            for name in ("vips_tracked_get_mem", "vips_tracked_get_mem_highwater"):
                getattr(lib, name).restype = ctypes.c_size_t
            for name in ("vips_tracked_get_allocs", "vips_tracked_get_files"):
                getattr(lib, name).restype = ctypes.c_int
        except (OSError, AttributeError):
            return None
        return lib

    def read(self) -> dict[str, int] | None:
        if not self._looked:
            self._lib = self._load()
        if self._lib is None:
            return None
        lib = self._lib
        return {"memory": lib.vips_tracked_get_mem(),
                "highwater": lib.vips_tracked_get_mem_highwater(),
                "allocs": lib.vips_tracked_get_allocs(), "files": lib.vips_tracked_get_files()}


def _loaded_library(stem: str) -> str | None:
    """Path of a shared library this process has mapped (Linux), e.g. pyvips-binary's."""
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith(stem) and ".so" in name:
                    return path
    except OSError:
        return None
    return None


class LiveCollector(Collector):
    """Gauges computed from live objects at scrape time."""

    def __init__(self, namespace: str, metrics: Metrics) -> None:
        self.ns = namespace
        self.metrics = metrics
        self.vips = VipsMemory()

    def _gauge(self, name: str, doc: str, value: float | None = None,
               labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{self.ns}_{name}", doc, value=value,
                                 labels=list(labels) if labels else None)

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily(f"{self.ns}_build", "vipsgate and libvips versions")
        info.add_metric([], {"version": __version__, "libvips": _libvips_version()})
        yield info
        yield self._gauge("requests_in_flight", "Image requests being handled now",
                          self.metrics.in_flight)
        state = self.metrics.live
        if state is None:
            return
        yield self._gauge("draining", "1 after SIGTERM while the server drains",
                          int(state.draining))
        yield from self._caches(state)
        pool = state.pool
        if pool is not None:
            yield self._gauge("queue_depth", "Admitted requests not yet in a worker "
                              "(waiting for one, or fetching their source)", pool.queued)
            yield self._gauge("queue_capacity", "Admitted requests allowed before 429 "
                              "(0 = unbounded)", pool.capacity)
            yield self._gauge("workers", "Worker threads for image processing", pool.workers)
            yield self._gauge("workers_busy", "Workers processing an image now", pool.busy)
            yield self._gauge("worker_utilization", "Busy workers / workers (0..1)",
                              pool.busy / pool.workers if pool.workers else 0.0)
        vips = self.vips.read()
        if vips is not None:
            yield self._gauge("vips_memory_bytes", "Memory libvips has allocated now",
                              vips["memory"])
            yield self._gauge("vips_memory_highwater_bytes", "Most memory libvips has held",
                              vips["highwater"])
            yield self._gauge("vips_allocations", "Live libvips allocations", vips["allocs"])
            yield self._gauge("vips_open_files", "Files libvips has open", vips["files"])

    def _caches(self, state: LiveState) -> Iterator[Any]:
        size = self._gauge("cache_bytes", "Bytes held by an in-process cache", labels=("cache",))
        cap = self._gauge("cache_capacity_bytes", "Byte limit of an in-process cache",
                          labels=("cache",))
        entries = self._gauge("cache_entries", "Entries in an in-process cache",
                              labels=("cache",))
        for name, cache in (("result", state.results), ("source", state.originals)):
            size.add_metric([name], cache.current_bytes)
            cap.add_metric([name], cache.max_bytes)
            entries.add_metric([name], len(cache))
        yield from (size, cap, entries)


def _libvips_version() -> str:
    try:
        import pyvips
        return ".".join(str(pyvips.version(i)) for i in range(3))
    except Exception:  # pragma: no cover - pyvips always loads in the server
        return "unknown"


class Metrics:
    """One registry per app: per-request counters/histograms plus the live collector."""

    def __init__(self, namespace: str = "vipsgate",
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.in_flight = 0
        self.live: LiveState | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        ns, reg = namespace, self.registry
        self.requests = Counter("requests", "Image requests by status class and format",
                                ["status", "format"], namespace=ns, registry=reg)
        self.duration = Histogram("request_duration_seconds", "Image request latency",
                                  namespace=ns, registry=reg, buckets=_SECONDS)
        self.stage = Histogram("stage_duration_seconds", "Time spent per pipeline stage",
                               ["stage"], namespace=ns, registry=reg, buckets=_SECONDS)
        self.source_bytes = Histogram("source_bytes", "Size of sources fetched from origins",
                                      namespace=ns, registry=reg, buckets=_BYTES)
        self.result_bytes = Histogram("result_bytes", "Size of images sent (2xx responses)",
                                      namespace=ns, registry=reg, buckets=_BYTES)
        self.cache = Counter("cache_requests", "Cache lookups by cache and outcome",
                             ["cache", "outcome"], namespace=ns, registry=reg)
        self.errors = Counter("errors", "Errors by category", ["type"], namespace=ns,
                              registry=reg)
        for collector in (ProcessCollector(registry=None), PLATFORM_COLLECTOR, GC_COLLECTOR,
                          LiveCollector(ns, self)):
            reg.register(collector)

    def watch(self, state: LiveState) -> None:
        """Read caches, queue and workers from ``state`` at every scrape."""
        self.live = state

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the lookup is a hot-path cost per request."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, trace: RequestTrace) -> None:
        child = self._child
        child(self.requests, _STATUS_CLASS.get(trace.status // 100, "other"),
              trace.format or "none").inc()
        self.duration.observe(trace.duration)
        for stage, seconds in trace.stages.items():
            child(self.stage, stage).observe(seconds)
        if trace.cache:
            child(self.cache, "result", trace.cache).inc()
        if trace.source_cache:
            child(self.cache, "source", trace.source_cache).inc()
            if trace.source_cache == "miss":
                self.source_bytes.observe(trace.source_bytes)
        if 200 <= trace.status < 300 and trace.format:
            self.result_bytes.observe(trace.bytes)
        if trace.error:
            child(self.errors, trace.error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def _metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS_KEY].render(),
                        headers={"Content-Type": CONTENT_TYPE})


METRICS_KEY: web.AppKey[Metrics] = web.AppKey("metrics_only")


def metrics_app(metrics: Metrics) -> web.Application:
    """The separate ``IMGPROXY_PROMETHEUS_BIND`` listener: metrics on any path."""
    app = web.Application()
    app[METRICS_KEY] = metrics
    app.router.add_get("/{tail:.*}", _metrics_handler)
    return app

"""Prometheus metrics and the per-request trace they (and the access log) read.

The server fills a ``RequestTrace`` as the request moves down the pipeline and
hands it to ``Metrics.observe`` at the end; nothing here calls back up. Gauges
of live state (caches, queue, workers, libvips memory) are set from the live
objects at scrape time by ``LiveGauges``, never updated per request. With
``vipsgate serve --processes N`` all of it goes through prometheus-client's
multiprocess mode, so any process's ``/metrics`` reports the whole server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .multiprocess import multiprocess_dir
from .native import loaded_library
from .tally import FlushFirst, Tally

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

    def add(self, report: JobReport) -> None:
        """What the job this request waited for did (a coalesced job reports to each)."""
        self.stages.update(report.stages)
        if report.source_cache:
            self.source_cache, self.source_bytes = report.source_cache, report.source_bytes


TRACE: web.RequestKey[RequestTrace] = web.RequestKey("trace")


@dataclass(slots=True)
class JobReport:
    """Timings of one result's job (fetch, queue, process), shared by its waiters."""

    stages: dict[str, float] = field(default_factory=dict)
    source_cache: str = ""
    source_bytes: int = 0


# --- what the scrape-time collector reads --------------------------------------------

class _Cache(Protocol):
    max_bytes: int

    @property
    def current_bytes(self) -> int: ...

    def __len__(self) -> int: ...


class _Budget(Protocol):
    limit: int
    used: int

    @property
    def waiting(self) -> int: ...


class _Admission(Protocol):
    capacity: int
    admitted: int

    @property
    def budget(self) -> _Budget: ...


class _Pool(Protocol):
    workers: int
    busy: int
    replaced: int


class _Lifecycle(Protocol):
    draining: bool


@dataclass(frozen=True)
class LiveState:
    """The live objects whose state the gauges show (read at scrape time)."""

    caches: dict[str, _Cache]
    admission: _Admission
    pool: _Pool
    lifecycle: _Lifecycle


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
        path = loaded_library("libvips") or ctypes.util.find_library("vips")
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


class LiveGauges:
    """Gauges of live state (caches, queue, workers, libvips memory), set by
    ``publish`` from the objects themselves: at every scrape, and every second when
    several processes share the metrics (each process then contributes its share,
    summed by prometheus-client's multiprocess mode)."""

    def __init__(self, namespace: str, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = (),
                  mode: Literal["livesum", "livemax"] = "livesum") -> Gauge:
            return Gauge(name, doc, labels, namespace=namespace, registry=registry,
                         multiprocess_mode=mode)

        self.in_flight = gauge("requests_in_flight", "Image requests being handled now")
        self.draining = gauge("draining", "1 after SIGTERM while the server drains",
                              mode="livemax")
        self.cache_bytes = gauge("cache_bytes", "Bytes held by an in-process cache",
                                 ("cache",))
        self.cache_capacity = gauge("cache_capacity_bytes", "Byte limit of an in-process "
                                    "cache", ("cache",))
        self.cache_entries = gauge("cache_entries", "Entries in an in-process cache",
                                   ("cache",))
        self.queue_depth = gauge("queue_depth", "Admitted requests not yet in a worker "
                                 "(waiting for one, or fetching their source)")
        self.queue_capacity = gauge("queue_capacity", "Admitted requests allowed before 429 "
                                    "(0 = unbounded)")
        self.memory_budget = gauge("memory_budget_bytes", "Memory budget for work in flight "
                                   "(0 = none)")
        self.memory_in_flight = gauge("memory_in_flight_bytes", "Memory counted against the "
                                      "budget: source bytes held and decodes reserved")
        self.memory_waiting = gauge("memory_waiting", "Decodes waiting for memory now")
        self.workers = gauge("workers", "Worker threads for image processing")
        self.workers_busy = gauge("workers_busy", "Workers processing an image now")
        self.workers_replaced = gauge("workers_replaced", "Times the worker processes were "
                                      "replaced (one died, or a job ran past its deadline)")
        self.vips_memory = gauge("vips_memory_bytes", "Memory libvips has allocated now")
        self.vips_highwater = gauge("vips_memory_highwater_bytes",
                                    "Most memory libvips has held (per process)", mode="livemax")
        self.vips_allocations = gauge("vips_allocations", "Live libvips allocations")
        self.vips_files = gauge("vips_open_files", "Files libvips has open")
        self.vips = VipsMemory()

    def publish(self, in_flight: int, state: LiveState | None) -> None:
        self.in_flight.set(in_flight)
        if state is None:
            return
        self.draining.set(int(state.lifecycle.draining))
        for name, cache in state.caches.items():
            self.cache_bytes.labels(name).set(cache.current_bytes)
            self.cache_capacity.labels(name).set(cache.max_bytes)
            self.cache_entries.labels(name).set(len(cache))
        admission, pool = state.admission, state.pool
        self.queue_depth.set(max(0, admission.admitted - pool.busy))
        self.queue_capacity.set(admission.capacity)
        budget = admission.budget
        self.memory_budget.set(budget.limit)
        self.memory_in_flight.set(budget.used)
        self.memory_waiting.set(budget.waiting)
        self.workers.set(pool.workers)
        self.workers_busy.set(pool.busy)
        self.workers_replaced.set(pool.replaced)
        vips = self.vips.read()
        if vips is not None:
            self.vips_memory.set(vips["memory"])
            self.vips_highwater.set(vips["highwater"])
            self.vips_allocations.set(vips["allocs"])
            self.vips_files.set(vips["files"])


class BuildInfo(Collector):
    """``vipsgate_build_info``: the vipsgate and libvips versions."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily(f"{self.ns}_build", "vipsgate and libvips versions")
        info.add_metric([], {"version": __version__, "libvips": _libvips_version()})
        yield info


def _with_utilization(families: list[Any], namespace: str) -> list[Any]:
    """Add ``worker_utilization`` (busy / workers) from the collected, possibly summed,
    worker gauges: it cannot be summed across processes itself."""
    totals = {f.name: sum(s.value for s in f.samples) for f in families
              if f.name in (f"{namespace}_workers", f"{namespace}_workers_busy")}
    workers = totals.get(f"{namespace}_workers")
    if workers is not None:
        busy = totals.get(f"{namespace}_workers_busy", 0.0)
        families.append(GaugeMetricFamily(f"{namespace}_worker_utilization",
                                          "Busy workers / workers (0..1)",
                                          value=busy / workers if workers else 0.0))
    return families


class _Families:
    """Already collected metric families, in the shape ``generate_latest`` reads."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def _libvips_version() -> str:
    try:
        import pyvips
        return ".".join(str(pyvips.version(i)) for i in range(3))
    except Exception:  # pragma: no cover - pyvips always loads in the server
        return "unknown"


class Metrics:
    """One registry per app: per-request counters/histograms plus the live gauges.

    With several processes (``enable_multiprocess``), every process writes its
    values to shared files and any process's ``render`` reports the sums, so a
    scrape that lands on any of them sees the whole server.
    """

    def __init__(self, namespace: str = "vipsgate",
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.namespace = namespace
        self.in_flight = 0
        self.live: LiveState | None = None
        self.multiprocess = multiprocess_dir()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.tally = Tally()  # per-request values, added in batches (``tally.py``)
        ns, reg = namespace, self.registry
        reg.register(FlushFirst(self.tally))  # first: reading the registry flushes
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
        self.gauges = LiveGauges(ns, reg)
        if self.multiprocess:  # scrapes read the shared files, not this registry
            self.source = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.source, self.multiprocess)
        else:
            self.source = reg
            for collector in (ProcessCollector(registry=None), PLATFORM_COLLECTOR,
                              GC_COLLECTOR):
                reg.register(collector)
        self.source.register(BuildInfo(ns))

    def watch(self, state: LiveState) -> None:
        """Publish the caches, queue, workers and lifecycle of ``state`` in the gauges."""
        self.live = state

    def publish(self) -> None:
        """Set the live gauges from the watched state (each scrape; with several
        processes also every second, see ``app._publishing``), and add the requests
        counted since the last time to the metrics."""
        self.tally.flush()
        self.gauges.publish(self.in_flight, self.live)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the lookup is a hot-path cost per request."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, trace: RequestTrace) -> None:
        child, tally = self._child, self.tally
        tally.count(child(self.requests, _STATUS_CLASS.get(trace.status // 100, "other"),
                          trace.format or "none"))
        tally.observe(self.duration, trace.duration)
        if trace.cache:
            tally.count(child(self.cache, "result", trace.cache))
        if trace.cache != "coalesced":  # a job's work counts once, not once per waiter
            for stage, seconds in trace.stages.items():
                tally.observe(child(self.stage, stage), seconds)
            if trace.source_cache:
                tally.count(child(self.cache, "source", trace.source_cache))
                if trace.source_cache == "miss":
                    tally.observe(self.source_bytes, trace.source_bytes)
        if 200 <= trace.status < 300 and trace.format:
            tally.observe(self.result_bytes, trace.bytes)
        if trace.error:
            tally.count(child(self.errors, trace.error))

    def render(self) -> bytes:
        self.publish()
        families = _with_utilization(list(self.source.collect()), self.namespace)
        return generate_latest(_Families(families))


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

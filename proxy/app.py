"""The composition root: builds every long-lived object once, wires the routes, and
gives each resource its own cleanup context (started in order, closed in reverse;
one that fails to start closes those started before it).

Each object has its own app key; request-time code gets its collaborators at
construction, so no module reaches back up the request line through the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import memory, probes
from .admission import Admission
from .assets import Asset
from .background import running
from .cache import ByteLRU
from .config import Settings
from .fallback import Fallback, checker
from .fetch import Fetcher
from .front import FrontDoor
from .handler import ImageHandler, TracedHandler
from .memory_budget import MemoryBudget, auto_limit
from .metrics import LiveState, Metrics
from .middleware import IMAGE_ROUTE, LIFECYCLE, METRICS, Lifecycle, Tracing
from .passthrough import Passthrough
from .probes import ADMISSION, POOL_KEY
from .processing import watermark
from .resolve import Resolver
from .respond import Responder
from .results import CachedResult
from .sources import Fetched, Sources
from .tier import Tier, open_tier
from .tracing import Tracer
from .verify import Verifier
from .workers import WorkerPool

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
POOL = POOL_KEY
#: seconds the worker pool waits at shutdown for jobs whose kill switch was thrown
SETTLE = 2.0
SOURCES: web.AppKey[Sources] = web.AppKey("sources", Sources)
RESULTS: web.AppKey[ByteLRU[CachedResult]] = web.AppKey("results")
ORIGINALS: web.AppKey[ByteLRU[Fetched]] = web.AppKey("originals")
VERIFIER: web.AppKey[Verifier] = web.AppKey("verifier", Verifier)
WATERMARK: web.AppKey[Asset] = web.AppKey("watermark", Asset)
FALLBACK: web.AppKey[Fallback] = web.AppKey("fallback", Fallback)
FETCHER: web.AppKey[Fetcher] = web.AppKey("fetcher", Fetcher)
TIER: web.AppKey[Tier] = web.AppKey("tier")
FRONT: web.AppKey[FrontDoor] = web.AppKey("front", FrontDoor)
Cleanup = Callable[[web.Application], AsyncIterator[None]]


def create_app(settings: Settings) -> web.Application:
    s = settings
    metrics, lifecycle = Metrics(), Lifecycle()
    tracing = Tracing(s, metrics, lifecycle)
    app = web.Application(middlewares=[tracing.middleware], client_max_size=1024)
    ratio = s.cache_max_entry_ratio
    results: ByteLRU[CachedResult] = ByteLRU(s.result_cache_bytes, lambda r: r.size, ratio)
    originals: ByteLRU[Fetched] = ByteLRU(s.source_cache_bytes, lambda f: len(f.data) + 256,
                                          ratio)
    # spare threads: jobs that lend their slot while their source arrives (streaming)
    spare = min(s.requests_queue_size or 256, 256)
    sources, pool = Sources(s), WorkerPool(s.worker_count, s.executor, spare,
                                                   s.worker_niceness)
    budget = MemoryBudget(auto_limit(s.result_cache_bytes + s.source_cache_bytes)
                          if s.memory_budget == "auto" else int(s.memory_budget))
    admission = Admission(s.worker_count, s.requests_queue_size, budget=budget,
                          per_origin=s.origin_places)
    mark = Asset("IMGPROXY_WATERMARK", s.watermark_data, s.watermark_path, s.watermark_url)
    verifier, tracer = Verifier(s), Tracer(s.otel)
    tier = open_tier(s, metrics.registry, lambda: mark.fingerprint)
    metrics.watch(LiveState({"result": results, "source": originals}, admission, pool,
                            lifecycle))
    app[SETTINGS], app[METRICS], app[LIFECYCLE] = s, metrics, lifecycle
    app[ADMISSION], app[POOL], app[SOURCES] = admission, pool, sources
    app[RESULTS], app[ORIGINALS] = results, originals
    app[VERIFIER], app[WATERMARK], app[TIER] = verifier, mark, tier
    fallback = app[FALLBACK] = Fallback(s)
    app.cleanup_ctx.extend([_pool, _sources, _tier, _watermark, _fallback, _trimmer,
                            _publishing])
    fetcher = app[FETCHER] = Fetcher(sources, originals, tracer, budget)
    handler = ImageHandler(s, verifier, Resolver(s, sources.check), results, fetcher,
                           admission, pool, Responder(s), tracer, mark, tier,
                           Passthrough(s, sources, admission), fallback)
    app[FRONT] = _routes(app, s, handler, tracing)
    return app


def _routes(app: web.Application, s: Settings, handler: ImageHandler, tracing: Tracing
            ) -> FrontDoor:
    """The routes, and the front door that sends image GETs past the router (the paths
    of the other routes are the ones it leaves to the router)."""
    prefix = s.path_prefix
    probes_at = {f"{prefix}/health": probes.health, f"{prefix}/ready": probes.ready,
                 f"{prefix}/favicon.ico": probes.not_found, f"{prefix}/": probes.landing}
    if s.health_check_path and s.health_check_path != "/health":
        probes_at[prefix + s.health_check_path] = probes.health
    if not s.prometheus_bind:
        probes_at[f"{prefix}/metrics"] = probes.metrics
    for path, probe in probes_at.items():
        app.router.add_get(path, probe)
    others, under = list(probes_at), [f"{prefix}/.well-known/"]
    app.router.add_get(under[0] + "{tail:.*}", probes.not_found)
    if s.playground:  # development only (VIPSGATE_PLAYGROUND=1, set by `make run`)
        from .playground import playground_app
        app.add_subapp(f"{prefix}/playground", playground_app(s, app[VERIFIER].parser))
        others.append(f"{prefix}/playground")
        under.append(f"{prefix}/playground/")
    route = TracedHandler(handler).handle if handler.tracer.enabled else handler.handle
    app.router.add_get(prefix + "/{tail:.+}", route, name=IMAGE_ROUTE)
    app.router.add_route("OPTIONS", prefix + "/{tail:.*}", probes.preflight)
    return FrontDoor(prefix, others, under, route, tracing)


# --- one cleanup context per long-lived resource ----------------------------------------

async def _pool(app: web.Application) -> AsyncIterator[None]:
    """The worker pool (libvips set up; worker processes started)."""
    pool = app[POOL]
    await pool.start()
    try:
        yield
    finally:
        await pool.settle(SETTLE)  # jobs stopped at shutdown leave their workers
        pool.shutdown()


async def _sources(app: web.Application) -> AsyncIterator[None]:
    """The sources' clients: one HTTP session, one S3, GCS and Azure client each."""
    async with app[SOURCES]:
        yield


async def _tier(app: web.Application) -> AsyncIterator[None]:
    """The shared result tier's client and writers; queued writes get a bounded time to
    finish when the app stops."""
    async with app[TIER]:
        yield


async def _watermark(app: web.Application) -> AsyncIterator[None]:
    """The watermark image, read (and for ``_URL`` fetched) once; bad: start-up fails."""
    sources, settings = app[SOURCES], app[SETTINGS]

    async def fetch(url: str) -> bytes:
        fetched = await sources.fetch(sources.check(url), settings.max_src_file_size)
        return fetched.data

    await app[WATERMARK].load(fetch, watermark.check)
    yield


async def _fallback(app: web.Application) -> AsyncIterator[None]:
    """The fallback image, read (and for ``_URL`` fetched) once; bad: start-up fails."""
    sources, settings = app[SOURCES], app[SETTINGS]

    async def fetch(url: str) -> bytes:
        fetched = await sources.fetch(sources.check(url), settings.max_src_file_size)
        return fetched.data

    await app[FALLBACK].asset.load(fetch, checker(settings))
    yield


async def _trimmer(app: web.Application) -> AsyncIterator[None]:
    """Freed memory back to the OS while no image is in work."""
    pool, admission = app[POOL], app[ADMISSION]
    interval = app[SETTINGS].free_memory_interval
    async with memory.trimmer(interval, lambda: pool.idle and not admission.admitted):
        yield


async def _publishing(app: web.Application, interval: float = 1.0) -> AsyncIterator[None]:
    """With several processes, each publishes its live gauges every ``interval``
    seconds, so a scrape answered by another process sees them (a scrape also
    publishes the answering process's own, fresh)."""
    metrics = app[METRICS]
    if not metrics.multiprocess:
        yield
        return

    async def publish() -> None:
        while True:
            metrics.publish()
            await asyncio.sleep(interval)

    try:
        async with running(publish(), "publish-gauges"):
            yield
    finally:
        metrics.publish()  # the last requests' counts reach the shared files


__all__ = ["FRONT", "ORIGINALS", "POOL", "RESULTS", "SETTINGS", "SOURCES", "TIER", "create_app"]

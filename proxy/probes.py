"""Routes beside the image route: /health, /ready, /metrics, the landing page, CORS
preflight. Each reads only the objects it needs, through its own app key."""

from __future__ import annotations

import asyncio
import logging

import pyvips
from aiohttp import web

from .admission import Admission
from .metrics import CONTENT_TYPE
from .middleware import LIFECYCLE, METRICS
from .workers import WorkerPool

log = logging.getLogger("vipsgate")
ADMISSION: web.AppKey[Admission] = web.AppKey("admission", Admission)
POOL_KEY: web.AppKey[WorkerPool] = web.AppKey("pool", WorkerPool)
NO_CACHE = {"Cache-Control": "no-cache"}


async def health(request: web.Request) -> web.Response:
    """Liveness: the event loop answers, libvips can make a tiny image, and the worker
    pool can take work (dead worker processes are replaced here too)."""
    pool = request.app[POOL_KEY]
    pool.heal()
    if not pool.healthy:
        return web.Response(status=500, text="Error: no workers\n", headers=NO_CACHE)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            await loop.run_in_executor(None, _tiny_vips_op)
    except Exception:
        log.exception("health check failed")
        return web.Response(status=500, text="Error\n", headers=NO_CACHE)
    return web.Response(text="vipsgate is running\n", headers=NO_CACHE)


def _tiny_vips_op() -> None:
    pyvips.Image.black(4, 4).write_to_memory()


async def ready(request: web.Request) -> web.Response:
    """Readiness: false while draining or while no worker can serve, never because of
    load: a flooded pod still answers hits and sheds the excess with 429 at once, and
    taking it out of the Service would only move the flood to its neighbours."""
    if request.app[LIFECYCLE].draining:
        return web.Response(status=503, text="not ready: draining\n", headers=NO_CACHE)
    if not request.app[POOL_KEY].healthy:
        return web.Response(status=503, text="not ready: workers are restarting\n",
                            headers=NO_CACHE)
    busy = " (busy: the queue is full)" if request.app[ADMISSION].full else ""
    return web.Response(text=f"ready{busy}\n", headers=NO_CACHE)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE})


async def landing(request: web.Request) -> web.Response:
    return web.Response(text="vipsgate: an imgproxy-compatible image proxy. "
                             "See https://github.com/vipsgate/vipsgate\n")


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: 200 (the middleware adds the Access-Control-* headers)."""
    return web.Response(status=200, headers={"Allow": "GET, HEAD, OPTIONS"})


async def not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text=" ")

"""The aiohttp application: routes, middleware, response headers, errors -> status.

One image request reads top to bottom in ``ImageHandler.handle``:
parse -> verify -> negotiate -> cache lookup -> (admit -> fetch -> process) -> respond.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote, urlsplit

import pyvips
from aiohttp import web

from . import memory
from .background import running
from .cache import ByteLRU, Outcome, result_key
from .config import Settings
from .errors import ConfigError, ExpiredURL, Forbidden, NotModified, ProxyError, RequestTimeout
from .http_cache import (
    cache_headers,
    conditional_match,
    config_fingerprint,
    is_conditional,
    make_etag,
)
from .metrics import CONTENT_TYPE, Metrics, RequestTrace
from .middleware import IMAGE_ROUTE, METRICS, SETTINGS, TRACE, trace_middleware
from .negotiate import FormatPolicy, negotiate
from .options import ParsedPath, ParserConfig, parse_path, split_signature
from .processing import ProcessingConfig, Result, process
from .processing.formats import MIME_TYPES, extension
from .processing.pipeline import raw
from .signing import Signer
from .sources import Fetched, SourceMeta, Sources, scheme_of
from .tracing import Tracer
from .workers import WorkerPool

log = logging.getLogger("vipsgate")
MEMO_SIZE = 4096  # hot URLs; each entry is a parsed URL (~1 KB) and its memos
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


@dataclass(frozen=True)
class CachedResult:
    """A finished image with what its response headers need."""

    result: Result
    meta: SourceMeta
    etag: str

    @property
    def size(self) -> int:
        return len(self.result.data) + 512


STATE: web.AppKey[State] = web.AppKey("state")


class State:
    """Long-lived objects of one app, created at start-up (no globals)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = Signer.from_hex(settings.keys, settings.salts, settings.signature_size,
                                      settings.trusted_signatures)
        self.parser = ParserConfig(
            presets=settings.preset_map(), only_presets=settings.only_presets,
            allowed_options=frozenset(settings.allowed_processing_options) or None,
            allow_security_options=settings.allow_security_options,
            base_url=settings.base_url,
            base64_url_includes_filename=settings.base64_url_includes_filename)
        self.processing = ProcessingConfig.from_settings(settings)
        self.fingerprint = config_fingerprint(self.processing)  # part of every ETag
        ratio = settings.cache_max_entry_ratio
        self.results: ByteLRU[CachedResult] = ByteLRU(settings.result_cache_bytes,
                                                      lambda r: r.size, ratio)
        self.originals: ByteLRU[Fetched] = ByteLRU(settings.source_cache_bytes,
                                                   lambda f: len(f.data) + 256, ratio)
        self.metrics = Metrics()
        self.tracer = Tracer(settings.otel)
        self.pool: WorkerPool | None = None
        self.sources: Sources | None = None
        self.draining = False  # set on SIGTERM: /ready answers 503
        self.metrics.watch(self)  # caches, queue and workers are read at scrape time


# --- the image route ------------------------------------------------------------------

class ImageHandler:
    def __init__(self, state: State) -> None:
        self.state = state
        self.settings = state.settings
        # per-URL work that repeats on every hit, memoised by the exact signed path
        # (functools' LRU, bounded by count; failures raise and are not kept); it holds
        # the state, not a bound method of this handler (no cycle through the handler)
        self.verified = functools.lru_cache(maxsize=MEMO_SIZE)(functools.partial(verify, state))
        # browsers send a handful of Accept values: parse each once
        s = self.settings
        self.negotiate = functools.lru_cache(maxsize=1024)(functools.partial(
            negotiate, auto_webp=s.auto_webp, auto_avif=s.auto_avif,
            enforce_webp=s.enforce_webp, enforce_avif=s.enforce_avif))

    @property
    def route(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The route's handler: with tracing off, the request itself (one call less)."""
        return self.handle if self.state.tracer.enabled else self._handle

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The request inside a ``vipsgate.request`` span (``VIPSGATE_OTEL``)."""
        with self.state.tracer.span("vipsgate.request", **{"http.method": request.method}) \
                as span:
            response = await self._handle(request)
            trace = request[TRACE]
            span.set_attributes({"vipsgate.cache": trace.cache,
                                 "vipsgate.format": trace.format,
                                 "vipsgate.source.scheme": trace.source_scheme})
            return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        trace = request[TRACE]
        self.check_client(request)
        verified = self.parse_and_verify(request.raw_path)
        parsed = verified.parsed
        policy = self.negotiate(parsed.options.format, request.headers.get("Accept", ""))
        trace.source_scheme = verified.scheme
        memo = self.memo_for(verified, policy)
        entry = self.state.results.get(memo.key)
        if entry is not None:  # the hot path: no timeout, no flight, no worker
            outcome = Outcome.HIT
        else:
            entry, outcome = await self.compute(request, parsed, policy, memo.key, trace)
        trace.cache = outcome.value
        trace.format = entry.result.format
        self.check_conditional(request, entry.etag, entry.meta, parsed, policy)
        return self.respond(entry, memo, policy, outcome)

    async def compute(self, request: web.Request, parsed: ParsedPath, policy: FormatPolicy,
                      key: tuple[str, str, str], trace: RequestTrace
                      ) -> tuple[CachedResult, Outcome]:
        """A result that was not cached: revalidate, then produce it (coalesced), in time."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                fetched = await self.revalidate(request, parsed, policy, key, trace)
                return await self.state.results.get_or_compute(
                    key, lambda: self.produce(parsed, policy, key, trace, fetched))
        except TimeoutError:
            raise RequestTimeout(f"Request took longer than {self.settings.timeout}s") from None

    def check_client(self, request: web.Request) -> None:
        s = self.settings
        if s.secret:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {s.secret}".encode()
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
                raise Forbidden("Invalid or missing secret")
        if s.allowed_client_cidrs:
            try:
                address = ipaddress.ip_address(request.remote or "")
            except ValueError:
                raise Forbidden("Unknown client address") from None
            if not any(address in net for net in s.allowed_client_cidrs):
                raise Forbidden(f"Client {address} is not allowed")

    def parse_and_verify(self, raw_path: str) -> VerifiedUrl:
        """Signature check and parse, memoised by the exact signed path.

        A memo hit means this very (signature, path) verified before, and the
        settings cannot change while the server runs; only ``exp`` is time-bound.
        """
        verified = self.verified(raw_path.split("?", 1)[0])
        expires = verified.parsed.options.expires
        if expires > 0 and expires < time.time():
            raise ExpiredURL("Expired URL")
        return verified

    def memo_for(self, verified: VerifiedUrl, policy: FormatPolicy) -> UrlMemo:
        """The result-cache key and header values of one URL and format class."""
        memo = verified.memos.get(policy.key)
        if memo is None:
            parsed = verified.parsed
            key = result_key(parsed.options, parsed.source, policy.key, self.state.processing)
            memo = verified.memos[policy.key] = UrlMemo(parsed, key)
        return memo

    async def revalidate(self, request: web.Request, parsed: ParsedPath, policy: FormatPolicy,
                         key: tuple, trace: RequestTrace) -> Fetched | None:
        """Raise ``NotModified`` before any processing when the validators match: those
        of the cached result, else of the (cached or fetched) source. Returns the
        source when it had to be fetched, so the result job reuses it."""
        cached = self.state.results.get(key)
        if cached is not None:
            trace.cache = Outcome.HIT.value
            self.check_conditional(request, cached.etag, cached.meta, parsed, policy)
            return None
        if not is_conditional(request.headers, self.settings):
            return None
        fetched = self.state.originals.get(parsed.source)
        if fetched is not None:
            trace.source_cache = Outcome.HIT.value
        else:
            pool, sources = self.state.pool, self.state.sources
            assert pool is not None and sources is not None
            sources.check(parsed.source)
            async with pool.admit():
                fetched = await self.fetch(parsed, trace)
        self.check_conditional(request, make_etag(key, fetched, self.state.fingerprint),
                               fetched.meta, parsed, policy)
        return fetched

    async def fetch(self, parsed: ParsedPath, trace: RequestTrace) -> Fetched:
        """The source bytes, through the originals cache (coalesced); checked before."""
        sources = self.state.sources
        assert sources is not None
        started = time.perf_counter()
        limit = parsed.options.max_src_file_size  # msfs; None = IMGPROXY_MAX_SRC_FILE_SIZE
        with self.state.tracer.span("vipsgate.fetch", **{"vipsgate.source.scheme":
                                                         trace.source_scheme}):
            fetched, outcome = await self.state.originals.get_or_compute(
                parsed.source, lambda: sources.fetch(parsed.source, limit))
        sources.check_size(fetched, limit)  # a cached source may exceed this request's msfs
        trace.stages["fetch"] = time.perf_counter() - started
        trace.source_cache, trace.source_bytes = outcome.value, len(fetched.data)
        return fetched

    async def produce(self, parsed: ParsedPath, policy: FormatPolicy, key: tuple,
                      trace: RequestTrace, fetched: Fetched | None = None) -> CachedResult:
        """The shared job behind one result key: fetch (unless given) and process.
        It must not depend on any one client's request: its waiters share the outcome."""
        pool, sources = self.state.pool, self.state.sources
        assert pool is not None and sources is not None
        sources.check(parsed.source)
        if parsed.options.raw:  # the source as is: a queue place (it is buffered), no worker
            async with pool.admit():
                fetched = fetched or await self.fetch(parsed, trace)
            return CachedResult(raw(fetched.data, self.state.processing), fetched.meta,
                                make_etag(key, fetched, self.state.fingerprint))
        async with pool.admit():
            if fetched is None:
                fetched = await self.fetch(parsed, trace)
            etag = make_etag(key, fetched, self.state.fingerprint)
            started = time.perf_counter()
            with self.state.tracer.span("vipsgate.process",
                                        **{"vipsgate.source.bytes": len(fetched.data)}):
                result, waited = await pool.run(process, fetched.data, parsed.options, policy,
                                                self.state.processing)
            trace.stages["queue"] = waited
            trace.stages["process"] = time.perf_counter() - started - waited
        return CachedResult(result, fetched.meta, etag)

    def check_conditional(self, request: web.Request, etag: str, meta: SourceMeta,
                          parsed: ParsedPath, policy: FormatPolicy) -> None:
        """Raise ``NotModified`` when the client's validators match."""
        if conditional_match(request.headers.get("If-None-Match"),
                             request.headers.get("If-Modified-Since"), etag,
                             meta.last_modified, self.settings):
            raise NotModified(headers=cache_headers(self.settings, parsed.options.expires,
                                                    policy.vary, meta, etag))

    def respond(self, entry: CachedResult, memo: UrlMemo, policy: FormatPolicy,
                outcome: Outcome) -> web.Response:
        if memo.entry() is entry:  # a hit on the same result: the same headers
            return web.Response(body=entry.result.data, headers=memo.headers)
        headers = self.response_headers(entry, memo.parsed, policy, outcome)
        if self.static_headers(memo.parsed, entry.meta):
            memo.entry, memo.headers = weakref.ref(entry), headers
        return web.Response(body=entry.result.data, headers=headers)

    def response_headers(self, entry: CachedResult, parsed: ParsedPath, policy: FormatPolicy,
                         outcome: Outcome) -> dict[str, str]:
        result = entry.result
        headers = cache_headers(self.settings, parsed.options.expires, policy.vary, entry.meta,
                                entry.etag)
        headers["Content-Disposition"] = content_disposition(parsed, result.format,
                                                             self.settings.return_attachment)
        headers["Content-Security-Policy"] = CSP
        headers["Content-Type"] = MIME_TYPES.get(result.format, "application/octet-stream")
        if self.settings.debug_headers:
            headers.update({
                "X-Cache": outcome.value, "X-Origin-Width": str(result.source_width),
                "X-Origin-Height": str(result.source_height),
                "X-Result-Width": str(result.width), "X-Result-Height": str(result.height),
            })
        return headers

    def static_headers(self, parsed: ParsedPath, meta: SourceMeta) -> bool:
        """Whether a result's headers stay the same on every hit: not with ``exp`` or a
        passed-through ``Expires`` (a TTL that counts down), nor with debug headers."""
        s = self.settings
        passthrough_expires = s.cache_control_passthrough and not meta.cache_control \
            and bool(meta.expires)
        return parsed.options.expires <= 0 and not passthrough_expires and not s.debug_headers


class VerifiedUrl:
    """A URL whose signature verified: its parsed form and, per format class, a memo."""

    __slots__ = ("memos", "parsed", "scheme")

    def __init__(self, parsed: ParsedPath) -> None:
        self.parsed = parsed
        self.scheme = scheme_of(parsed.source)
        self.memos: dict[str, UrlMemo] = {}  # by FormatPolicy.key: a handful at most


def _nothing() -> None:
    return None


class UrlMemo:
    """What a hit on one URL and format class reuses: the result key, and the response
    headers of the cached result they were made for. That result is held weakly: a memo
    must not keep an image alive once the byte-bounded result cache has let it go."""

    __slots__ = ("entry", "headers", "key", "parsed")

    def __init__(self, parsed: ParsedPath, key: tuple[str, str, str]) -> None:
        self.parsed, self.key = parsed, key
        self.entry: Callable[[], CachedResult | None] = _nothing
        self.headers: dict[str, str] = {}


def verify(state: State, path: str) -> VerifiedUrl:
    """Check the signature of a path (without its query) and parse it."""
    signature, signed = split_signature(path, state.settings.path_prefix)
    if not state.signer.enabled and ":" in signature:
        raise Forbidden("The signature appears to be a processing option; "
                        "is the signature segment missing?")
    if not state.signer.verify(signature, signed):
        raise Forbidden("Invalid signature")
    return VerifiedUrl(parse_path(signed, state.parser))


def content_disposition(parsed: ParsedPath, fmt: str, attachment_default: bool) -> str:
    """``inline`` or ``attachment`` with the file name (RFC 6266): a plain ASCII
    ``filename`` and, when the name is not ASCII, ``filename*`` in UTF-8 (RFC 8187).
    Control characters never reach the header."""
    o = parsed.options
    source_path = PurePosixPath(urlsplit(parsed.source).path)
    stem = o.filename or source_path.stem or "image"
    kind = "attachment" if (o.return_attachment if o.return_attachment is not None
                            else attachment_default) else "inline"
    suffix = f".{extension(fmt)}" if fmt else source_path.suffix  # raw non-image: as named
    name = _CONTROL.sub("", stem + suffix) or "image"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "%22").replace("\\", "_")
    if ascii_name == name:
        return f'{kind}; filename="{name}"'
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# --- other routes ---------------------------------------------------------------------

async def health(request: web.Request) -> web.Response:
    """Liveness: the event loop answers and libvips can make a tiny image."""
    state = request.app[STATE]
    pool = state.pool
    assert pool is not None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            await loop.run_in_executor(None, _tiny_vips_op)
    except Exception:
        log.exception("health check failed")
        return web.Response(status=500, text="Error\n", headers={"Cache-Control": "no-cache"})
    return web.Response(text="vipsgate is running\n", headers={"Cache-Control": "no-cache"})


def _tiny_vips_op() -> None:
    pyvips.Image.black(4, 4).write_to_memory()


async def ready(request: web.Request) -> web.Response:
    """Readiness: false while draining or while the request queue is full."""
    state = request.app[STATE]
    pool = state.pool
    if state.draining or pool is None or pool.full:
        reason = "draining" if state.draining else "busy"
        return web.Response(status=503, text=f"not ready: {reason}\n",
                            headers={"Cache-Control": "no-cache"})
    return web.Response(text="ready\n", headers={"Cache-Control": "no-cache"})


async def metrics_route(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def landing(request: web.Request) -> web.Response:
    return web.Response(text="vipsgate: an imgproxy-compatible image proxy. "
                             "See https://github.com/vipsgate/vipsgate\n")


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: 200 (the middleware adds the Access-Control-* headers)."""
    return web.Response(status=200, headers={"Allow": "GET, HEAD, OPTIONS"})


async def not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text=" ")


# --- app ------------------------------------------------------------------------------

async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Own the long-lived resources: worker pool, sources (HTTP session, S3 client)."""
    state = app[STATE]
    s = state.settings
    state.pool = WorkerPool(s.worker_count, s.requests_queue_size, executor=s.executor)
    pool = state.pool
    await pool.start()
    async with Sources(s) as sources, memory.trimmer(s.free_memory_interval,
                                                     lambda: pool.idle), \
            _publishing(state.metrics):
        state.sources = sources
        if s.watermark_url and not state.processing.watermark:
            await _fetch_watermark(state, sources)
        try:
            yield
        finally:
            state.pool.shutdown()


@contextlib.asynccontextmanager
async def _publishing(metrics: Metrics, interval: float = 1.0) -> AsyncIterator[None]:
    """With several processes, each publishes its live gauges every ``interval``
    seconds, so a scrape answered by another process sees them (a scrape also
    publishes the answering process's own, fresh)."""
    if not metrics.multiprocess:
        yield
        return

    async def publish() -> None:
        while True:
            metrics.publish()
            await asyncio.sleep(interval)

    async with running(publish(), "publish-gauges"):
        yield


async def _fetch_watermark(state: State, sources: Sources) -> None:
    """IMGPROXY_WATERMARK_URL: fetched once at start-up; failing to get it stops start-up."""
    url = state.settings.watermark_url
    try:
        fetched = await sources.fetch(url)
        state.processing = state.processing.with_watermark(fetched.data)
    except (ProxyError, ValueError) as exc:
        raise ConfigError(f"IMGPROXY_WATERMARK_URL={url!r}: {exc}") from None
    state.fingerprint = config_fingerprint(state.processing)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[trace_middleware], client_max_size=1024)
    state = State(settings)
    app[STATE] = state
    app[SETTINGS] = settings
    app[METRICS] = state.metrics
    app.cleanup_ctx.append(_resources)
    handler = ImageHandler(state)
    prefix = settings.path_prefix
    app.router.add_get(f"{prefix}/health", health)
    app.router.add_get(f"{prefix}/ready", ready)
    if not settings.prometheus_bind:
        app.router.add_get(f"{prefix}/metrics", metrics_route)
    app.router.add_get(f"{prefix}/favicon.ico", not_found)
    app.router.add_get(prefix + "/.well-known/{tail:.*}", not_found)
    app.router.add_get(f"{prefix}/", landing)
    if settings.playground:  # development only (VIPSGATE_PLAYGROUND=1, set by `make run`)
        from .playground import setup_playground  # it imports this module: kept lazy
        setup_playground(app, settings)
    app.router.add_get(prefix + "/{tail:.+}", handler.route, name=IMAGE_ROUTE)
    app.router.add_route("OPTIONS", prefix + "/{tail:.*}", preflight)
    return app

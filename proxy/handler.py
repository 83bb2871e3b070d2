"""The image route: one request, top to bottom.

    verify -> resolve -> negotiate -> cache -> admit -> fetch -> process -> respond

Each stage is a module named for it (``verify``, ``resolve``, ``negotiate``,
``cache``/``results``, ``admission``, ``fetch``, ``workers``/``processing``,
``respond``); this module only calls them in order. A miss is computed once per
result key by a shared job (coalesced): it looks in the shared tier (``tier/``), else
renders the image and writes it behind to the tier; every waiter records its timings.
"""

from __future__ import annotations

import asyncio
import functools
import time

from aiohttp import web

from . import formats
from .admission import Admission
from .assets import Asset
from .cache import ByteLRU, Outcome
from .config import Settings
from .errors import RequestTimeout
from .fetch import Fetcher, Incoming
from .http_cache import is_conditional, make_etag
from .metrics import TRACE, JobReport, RequestTrace
from .negotiate import FormatPolicy, negotiate
from .processing.pipeline import Result, process, raw
from .resolve import Effective, Resolved, Resolver
from .respond import HeaderMemo, Responder
from .results import CachedResult, ResultKey, result_key
from .sources import Fetched
from .sources.stream import Reader
from .tier import Tier
from .tracing import Tracer
from .verify import Verifier
from .workers import Lender, WorkerPool


class UrlMemo:
    """What a hit on one URL and format class reuses: its result key and headers."""

    __slots__ = ("headers", "key")

    def __init__(self, key: ResultKey) -> None:
        self.key = key
        self.headers = HeaderMemo()


class ImageHandler:
    def __init__(self, settings: Settings, verifier: Verifier, resolver: Resolver,
                 results: ByteLRU[CachedResult], fetcher: Fetcher, admission: Admission,
                 pool: WorkerPool, responder: Responder, tracer: Tracer,
                 watermark: Asset, tier: Tier) -> None:
        s = self.settings = settings
        self.verifier, self.resolver, self.results = verifier, resolver, results
        self.fetcher, self.admission, self.pool = fetcher, admission, pool
        self.responder, self.tracer, self.watermark = responder, tracer, watermark
        self.budget = admission.budget
        self.tier = tier
        self.timeout = s.timeout
        # browsers send a handful of Accept values: parse each once
        self.negotiate = functools.lru_cache(maxsize=1024)(functools.partial(
            negotiate, auto_webp=s.auto_webp, auto_avif=s.auto_avif,
            enforce_webp=s.enforce_webp, enforce_avif=s.enforce_avif, auto_jxl=s.auto_jxl,
            enforce_jxl=s.enforce_jxl))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        trace = request[TRACE]
        self.verifier.check_client(request.headers, request.remote)
        url = self.resolver(self.verifier.verify(request.raw_path))
        policy = self.negotiate(url.format, request.headers.get("Accept", ""))
        memo = self.memo(url, policy)
        trace.source_scheme = url.source.scheme
        entry, outcome = self.results.get(memo.key), Outcome.HIT
        if entry is None:
            entry, outcome = await self.compute(request, url, policy, memo.key, trace)
            trace.add(entry.report)
        trace.cache, trace.format = outcome.value, entry.result.format
        self.responder.check_not_modified(request.headers, entry.etag, entry.meta,
                                          url.effective, policy.vary)
        return self.responder.respond(entry, memo.headers, url.effective, url.source.url,
                                      policy.vary, outcome)

    def memo(self, url: Resolved, policy: FormatPolicy) -> UrlMemo:
        memo = url.memos.get(policy.key)
        if memo is None:
            key = result_key(url.effective, url.source.url, policy.key)
            memo = url.memos[policy.key] = UrlMemo(key)
        return memo

    async def compute(self, request: web.Request, url: Resolved, policy: FormatPolicy,
                      key: ResultKey, trace: RequestTrace) -> tuple[CachedResult, Outcome]:
        """A result that is not cached: revalidate, then produce it (coalesced), in time."""
        name = self.tier.key(key, request.headers)
        try:
            async with asyncio.timeout(self.timeout):
                fetched = await self.revalidate(request, url, policy, key, trace, name)
                return await self.results.get_or_compute(
                    key, lambda: self.produce(url, policy, key, fetched, name))
        except TimeoutError:
            raise RequestTimeout(f"Request took longer than {self.timeout}s") from None

    async def revalidate(self, request: web.Request, url: Resolved, policy: FormatPolicy,
                         key: ResultKey, trace: RequestTrace, name: str) -> Fetched | None:
        """A conditional request: 304 from the shared tier's entry, else from the source's
        validators, before any processing. Returns the source when it had to be fetched
        (the job reuses it); a tier entry goes to the LRU, where the job finds it."""
        if not is_conditional(request.headers, self.settings):
            return None
        report, e = JobReport(), url.effective
        stored = await self.tier.get(name, report)
        if stored is not None:
            self.results.put(key, stored)
            trace.add(report)
            self.responder.check_not_modified(request.headers, stored.etag, stored.meta,
                                              e, policy.vary)
            return None
        async with self.admission.admit(), \
                self.fetcher.incoming(url.source, e.max_src_file_size, report) as source:
            fetched = await source.complete()
        trace.add(report)
        etag = make_etag(key, fetched.meta, self.watermark.fingerprint)
        self.responder.check_not_modified(request.headers, etag, fetched.meta, e, policy.vary)
        return fetched

    async def produce(self, url: Resolved, policy: FormatPolicy, key: ResultKey,
                      fetched: Fetched | None, name: str) -> CachedResult:
        """The shared job behind one result key: the shared tier's entry, else render it
        and write it behind to the tier. It depends on no one client's request: its
        waiters share the outcome."""
        report = JobReport()
        if fetched is None:  # (given: a conditional request looked in the tier already)
            stored = await self.tier.get(name, report)
            if stored is not None:
                return stored
        entry = await self.render(url, policy, key, fetched, report)
        self.tier.put(name, entry)
        return entry

    async def render(self, url: Resolved, policy: FormatPolicy, key: ResultKey,
                     fetched: Fetched | None, report: JobReport) -> CachedResult:
        """Fetch (unless given) and process."""
        e = url.effective
        deadline = time.monotonic() + self.timeout
        async with self.admission.admit(), \
                self.fetcher.incoming(url.source, e.max_src_file_size, report, fetched) as source:
            if e.raw:  # the source as it is: a queue place (it is buffered), no worker
                whole = await source.complete()
                result = raw(whole.data, e.max_svg_check_bytes)
                meta = whole.meta
            else:
                started = time.perf_counter()
                with self.tracer.span("vipsgate.process") as span:
                    result, waited = await self.process(source, e, policy, deadline)
                    meta = await source.meta()
                    if span is not None:
                        span.set_attribute("vipsgate.source.bytes", meta.size or 0)
                report.stages["queue"] = waited
                report.stages["process"] = time.perf_counter() - started - waited
        return CachedResult(result, meta, make_etag(key, meta, self.watermark.fingerprint),
                            report)

    async def process(self, source: Incoming, e: Effective, policy: FormatPolicy,
                      deadline: float) -> tuple[Result, float]:
        """The pixel work in a worker. A JPEG or PNG is decoded while it arrives (the
        worker's slot is lent while bytes are awaited); other formats, and worker
        processes, get the whole file. The decode's memory comes from the budget."""
        mark = self.watermark.data
        if not self.pool.lends:  # worker processes: whole bytes, no shared budget
            whole = (await source.complete()).data
            return await self.pool.run(process, whole, e, policy, mark, deadline)
        fmt = formats.sniff(await source.head(), e.max_svg_check_bytes)
        job: Reader | Lender
        into: bytes | Reader
        if source.can_stream(fmt) and fmt not in e.skip_processing:
            job = into = source.reader()
        else:
            job, into = Lender(), (await source.complete()).data
        reserve = functools.partial(self.budget.reserve, deadline=deadline,
                                    waiting=lambda: job.waiting())
        return await self.pool.run_lending(job, process, into, e, policy, mark, deadline,
                                           reserve)


class TracedHandler:
    """The image route inside a ``vipsgate.request`` span (``VIPSGATE_OTEL``)."""

    def __init__(self, handler: ImageHandler) -> None:
        self.handler = handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tracer = self.handler.tracer
        with tracer.span("vipsgate.request", **{"http.method": request.method}) as span:
            response = await self.handler.handle(request)
            trace = request[TRACE]
            span.set_attributes({"vipsgate.cache": trace.cache,
                                 "vipsgate.format": trace.format,
                                 "vipsgate.source.scheme": trace.source_scheme})
            return response

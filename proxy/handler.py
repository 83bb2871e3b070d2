"""The image route: one request, top to bottom.

    verify -> resolve -> negotiate -> cache -> admit -> fetch -> process -> respond

Each stage is a module named for it (``verify``, ``resolve``, ``negotiate``,
``cache``/``results``, ``admission``, ``fetch``, ``workers``/``processing``,
``respond``); this module only calls them in order. A miss is computed once per
result key by a shared job (coalesced): it looks in the shared tier (``tier/``), else
renders the image and writes it behind to the tier; every waiter records its timings.
``raw`` leaves the line after resolve (``passthrough``: the origin's response relayed);
a source that cannot be had may be answered with the fallback image (``fallback``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time

from aiohttp import web

from . import client_hints, formats, trace_context
from .admission import Admission
from .assets import Asset
from .cache import ByteLRU, Outcome
from .config import Settings
from .errors import ProxyError, RequestTimeout
from .fallback import Fallback
from .fetch import Fetcher, Incoming
from .http_cache import is_conditional, make_etag, origin_conditions
from .metrics import TRACE, JobReport, RequestTrace
from .negotiate import FormatPolicy, negotiate
from .passthrough import Passthrough
from .processing.cancel import KillSwitch
from .processing.pipeline import Result, process
from .resolve import Effective, Resolved, Resolver
from .respond import HeaderMemo, Responder
from .results import CachedResult, ResultKey, result_key
from .shedding import Shedder
from .sources import Fetched, SourceMeta, Unchanged
from .sources.stream import Reader
from .tier import Tier
from .tracing import Tracer
from .verify import Verifier
from .workers import JobControl, Lender, WorkerPool


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
                 watermark: Asset, tier: Tier, passthrough: Passthrough,
                 fallback: Fallback) -> None:
        s = self.settings = settings
        self.verifier, self.resolver, self.results = verifier, resolver, results
        self.fetcher, self.admission, self.pool = fetcher, admission, pool
        self.responder, self.tracer, self.watermark = responder, tracer, watermark
        self.budget = admission.budget
        self.tier, self.passthrough, self.fallback = tier, passthrough, fallback
        self.timeout = s.timeout
        self.shedder = Shedder(admission, results, direct=not tier.name, max_hold=s.timeout)
        # browsers send a handful of Accept values: parse each once
        self.negotiate = functools.lru_cache(maxsize=1024)(functools.partial(
            negotiate, auto_webp=s.auto_webp, auto_avif=s.auto_avif,
            enforce_webp=s.enforce_webp, enforce_avif=s.enforce_avif, auto_jxl=s.auto_jxl,
            enforce_jxl=s.enforce_jxl, preferred=s.preferred_formats))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        trace = request[TRACE]
        self.verifier.check_client(request.headers, request.remote)
        hints = client_hints.read(request.headers) if self.settings.enable_client_hints \
            else None
        url = self.resolver(self.verifier.verify(request.raw_path), hints)
        trace.source_scheme = url.source.scheme
        if url.effective.raw:  # the origin's response as it is: not cached, not processed
            trace_context.bind(self.tracer.outgoing(request.headers))
            return await self.passthrough.respond(request, url)
        policy = self.negotiate(url.format, request.headers.get("Accept", ""))
        memo = self.memo(url, policy)
        entry, outcome = self.results.get(memo.key), Outcome.HIT
        if entry is None:
            try:
                entry, outcome = await self.compute(request, url, policy, memo.key, trace)
            except ProxyError as exc:
                self.shedder.refused(memo.key, exc)
                if not self.fallback.serves(exc):
                    raise
                return await self.serve_fallback(exc, url, policy, memo.key, trace)
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
        """A result that is not cached: revalidate, then produce it (coalesced), in time.
        The trace context for origin requests is bound here: the tasks this starts (the
        coalesced job, its download) copy it. Overload is shed first (``shedding``)."""
        held = await self.shedder.hold(key)  # (at most the timeout; it counts against it)
        if held:
            trace.stages["held"] = held
        self.shedder.check(key, url.source.origin)
        trace_context.bind(self.tracer.outgoing(request.headers))
        name = self.tier.key(key, request.headers)
        try:
            async with asyncio.timeout(self.timeout - held):
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
        conditions = origin_conditions(request.headers, key, self.settings,
                                       self.watermark.fingerprint)
        async with self.admission.admit(url.source.origin):
            if conditions:  # the origin decides (its 304 is ours)
                fetched = await self.fetcher.if_changed(url.source, e.max_src_file_size, report,
                                                        conditions)
            else:
                async with self.fetcher.incoming(url.source, e.max_src_file_size,
                                                 report) as source:
                    fetched = await source.complete()
        trace.add(report)
        if isinstance(fetched, Unchanged):
            meta = self.unchanged_meta(fetched.meta, conditions)
            raise self.responder.not_modified(self.etag(key, meta), meta, e, policy.vary)
        etag = self.etag(key, fetched.meta)
        self.responder.check_not_modified(request.headers, etag, fetched.meta, e, policy.vary)
        return fetched

    def etag(self, key: ResultKey, meta: SourceMeta) -> str:
        if not (meta.etag or meta.last_modified):
            return ""  # an origin's 304 without validators: none to send
        return make_etag(key, meta, self.watermark.fingerprint, self.settings.etag_buster)

    @staticmethod
    def unchanged_meta(meta: SourceMeta, conditions: dict[str, str]) -> SourceMeta:
        """The validators of an origin's 304; the one ETag forwarded when it sent none."""
        forwarded = conditions.get("If-None-Match", "")
        if meta.etag is None and forwarded and "," not in forwarded:
            return dataclasses.replace(meta, etag=forwarded)
        return meta

    async def serve_fallback(self, exc: ProxyError, url: Resolved, policy: FormatPolicy,
                             key: ResultKey, trace: RequestTrace) -> web.Response:
        """The source cannot be had: the fallback image, processed as asked (cached per
        options), with its own status and TTL; the error is still logged and counted."""
        trace.error, trace.reason = exc.category, exc.reason
        fallback_key = self.fallback.key(key)
        try:
            async with asyncio.timeout(self.timeout):
                entry, outcome = await self.results.get_or_compute(
                    fallback_key, lambda: self.render(url, policy, fallback_key,
                                                      self.fallback.source(), JobReport()))
        except TimeoutError:
            raise RequestTimeout(f"Request took longer than {self.timeout}s") from None
        if outcome is not Outcome.HIT:
            trace.add(entry.report)
        trace.cache, trace.format = outcome.value, entry.result.format
        return self.responder.fallback(entry, url.effective, url.source.url, policy.vary,
                                       self.fallback.status(exc))

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
        async with self.admission.admit(url.source.origin), \
                self.fetcher.incoming(url.source, e.max_src_file_size, report, fetched) as source:
            started = time.perf_counter()
            with self.tracer.span("vipsgate.process") as span:
                result, waited = await self.process(source, e, policy, deadline)
                meta = await source.meta()
                if span is not None:
                    span.set_attribute("vipsgate.source.bytes", meta.size or 0)
            report.stages["queue"] = waited
            report.stages["process"] = time.perf_counter() - started - waited
        return CachedResult(result, meta, self.etag(key, meta), report)

    async def process(self, source: Incoming, e: Effective, policy: FormatPolicy,
                      deadline: float) -> tuple[Result, float]:
        """The pixel work in a worker. A JPEG or PNG is decoded while it arrives (the
        worker's slot is lent while bytes are awaited); other formats, and worker
        processes, get the whole file. The decode's memory comes from the budget."""
        mark = self.watermark.data
        if not self.pool.lends:  # worker processes: whole bytes, no shared budget
            whole = (await source.complete()).data
            return await self.pool.run_controlled(JobControl(deadline=deadline), process,
                                                  whole, e, policy, mark, deadline)
        fmt = formats.sniff(await source.head(), e.max_svg_check_bytes)
        job: Reader | Lender
        into: bytes | Reader
        if source.can_stream(fmt) and fmt not in e.skip_processing:
            job = into = source.reader()
        else:
            job, into = Lender(), (await source.complete()).data
        reserve = functools.partial(self.budget.reserve, deadline=deadline,
                                    waiting=lambda: job.waiting())
        switch = KillSwitch()  # a job nobody waits for any more is stopped
        return await self.pool.run_controlled(JobControl(job, switch.kill, deadline), process,
                                              into, e, policy, mark, deadline, reserve, switch)


class TracedHandler:
    """The image route inside a ``vipsgate.request`` span (``VIPSGATE_OTEL``)."""

    def __init__(self, handler: ImageHandler) -> None:
        self.handler = handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tracer = self.handler.tracer
        with tracer.span("vipsgate.request", request.headers,
                         **{"http.method": request.method}) as span:
            response = await self.handler.handle(request)
            trace = request[TRACE]
            span.set_attributes({"vipsgate.cache": trace.cache,
                                 "vipsgate.format": trace.format,
                                 "vipsgate.source.scheme": trace.source_scheme})
            return response

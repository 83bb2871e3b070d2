"""Stage 6, fetch: the source of one job, from the originals cache or arriving.

``Fetcher.incoming`` gives a job its source: whole bytes from the originals cache,
or a live ``SourceStream`` that the download fills while the job runs. Jobs that
need the same cold source (other sizes or formats of it) share one download while
it keeps every byte. A download keeps every byte (for the originals cache, or for a
decoder that needs the whole file) unless the job decodes while it arrives and the
source is too large to cache: then only a window ahead of the decoder is held.
When the last job using a download leaves before it ended, the download stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from . import formats
from .cache import ByteLRU, Outcome
from .memory_budget import MemoryBudget
from .metrics import JobReport
from .sources import (
    Fetched,
    SourceMeta,
    SourceRef,
    Sources,
    SourceStream,
    Unchanged,
    check_size,
    download,
)
from .sources.stream import HEAD, Reader
from .tracing import Tracer


@dataclass
class _Download:
    stream: SourceStream
    task: asyncio.Task[None]
    users: int = 0
    reserved: int = 0  # bytes counted in ``Fetcher.retaining`` for this download
    released: bool = False


@dataclass
class Incoming:
    """One job's source: ``fetched`` (whole bytes) or ``stream`` (arriving)."""

    fetcher: Fetcher
    ref: SourceRef
    max_bytes: int
    report: JobReport
    fetched: Fetched | None = None
    download: _Download | None = None
    readers: list[Reader] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def stream(self) -> SourceStream | None:
        return self.download.stream if self.download is not None else None

    async def head(self, size: int = HEAD) -> bytes:
        """The first bytes, to sniff the format (waits for them)."""
        if self.fetched is not None:
            return self.fetched.data[:size]
        assert self.stream is not None
        await self.stream.wait_for(size)
        return self.stream.head(size)

    def can_stream(self, fmt: str | None) -> bool:
        """Whether a decoder should read this source while it arrives: its format
        decodes sequentially and it has not all arrived yet (then plain bytes are
        cheaper: libvips reads a stream a few KiB per call)."""
        info = formats.REGISTRY.get(fmt or "")
        stream = self.stream
        return stream is not None and info is not None and info.stream \
            and stream.base == 0 and not stream.done

    def reader(self) -> Reader:
        """A cursor for a decoder in a worker thread; the download stops keeping bytes
        the decoder has read unless they fit the originals cache."""
        assert self.download is not None
        self.fetcher.settle_retention(self.download)
        reader = self.download.stream.reader(self.max_bytes)
        self.readers.append(reader)
        return reader

    async def complete(self) -> Fetched:
        """The whole source (waits for the download to end)."""
        if self.fetched is None:
            assert self.stream is not None
            data = await self.stream.data()
            self._arrived()
            self.fetched = check_size(Fetched(data, self.stream.meta), self.max_bytes)
        return self.fetched

    async def meta(self) -> SourceMeta:
        """The source's validators once the download ended (the content ETag needs
        every byte); re-raises a failed download."""
        if self.fetched is not None:
            return self.fetched.meta
        assert self.stream is not None
        await self.stream.wait_for(1 << 62)
        self._arrived()
        return self.stream.meta

    def _arrived(self) -> None:
        assert self.stream is not None
        self.report.stages["fetch"] = time.perf_counter() - self.started
        self.report.source_bytes = self.stream.received


class Fetcher:
    def __init__(self, sources: Sources, originals: ByteLRU[Fetched], tracer: Tracer,
                 budget: MemoryBudget | None = None) -> None:
        self.sources = sources
        self.originals = originals
        self.tracer = tracer
        self.budget = budget
        self.downloads: dict[tuple[str, int], _Download] = {}
        self.retaining = 0  # bytes streamed downloads may keep for the originals cache

    @contextlib.asynccontextmanager
    async def incoming(self, ref: SourceRef, max_bytes: int, report: JobReport,
                       given: Fetched | None = None) -> AsyncIterator[Incoming]:
        """The source for one job (``given``: already fetched by this job); ``report``
        gets the originals-cache outcome, the size and the ``fetch`` seconds."""
        started = time.perf_counter()
        cached = given or self.originals.get(ref.url)
        if cached is not None:
            if given is None:
                report.source_cache = Outcome.HIT.value
                report.source_bytes = len(cached.data)
                report.stages["fetch"] = time.perf_counter() - started
            yield Incoming(self, ref, max_bytes, report, fetched=check_size(cached, max_bytes))
            return
        key = (ref.url, max_bytes)
        active = self.downloads.get(key)
        if active is not None and active.stream.retain and active.stream.base == 0:
            report.source_cache = Outcome.COALESCED.value
        else:
            stream = SourceStream(budget=self.budget)
            task = asyncio.create_task(
                download(self.sources.open(ref, max_bytes), stream, max_bytes, ref.url),
                name=f"download {ref.url[:100]}")
            job = self.downloads[key] = _Download(stream, task)
            task.add_done_callback(lambda _: self._done(key, job))
            report.source_cache = Outcome.MISS.value
            active = job
        active.users += 1
        incoming = Incoming(self, ref, max_bytes, report, download=active)
        try:
            with self.tracer.span("vipsgate.fetch", **{"vipsgate.source.scheme": ref.scheme}):
                await active.stream.opened()  # the origin's status and headers
            yield incoming
        finally:
            for reader in incoming.readers:
                reader.close()
            active.users -= 1
            if active.users == 0 and not active.task.done():
                active.task.cancel()  # nobody reads it any more
                if self.downloads.get(key) is active:
                    del self.downloads[key]
            self._release(key, active)

    async def if_changed(self, ref: SourceRef, max_bytes: int, report: JobReport,
                         conditions: Mapping[str, str]) -> Fetched | Unchanged:
        """A conditional request's whole source. From the originals cache, or the
        download already in flight, as ``incoming`` would; else this request's own
        download with the client's validators forwarded (``conditions``): ``Unchanged``
        when the origin answers 304, else the bytes (kept for the originals cache)."""
        if self.originals.get(ref.url) is not None or (ref.url, max_bytes) in self.downloads:
            async with self.incoming(ref, max_bytes, report) as source:
                return await source.complete()
        started = time.perf_counter()
        with self.tracer.span("vipsgate.fetch", **{"vipsgate.source.scheme": ref.scheme}):
            outcome = await self.sources.fetch_if_changed(ref, max_bytes, conditions)
        report.source_cache = Outcome.MISS.value
        report.stages["fetch"] = time.perf_counter() - started
        if isinstance(outcome, Fetched):
            report.source_bytes = len(outcome.data)
            self.originals.put(ref.url, outcome)
        return outcome

    def settle_retention(self, download: _Download) -> None:
        """A decoder will read the download as it arrives: keep every byte only while
        the source can fit the originals cache, and while streamed downloads keep no
        more than a quarter of that cache for it (or when another job wants them all)."""
        stream = download.stream
        if download.users > 1 or download.reserved:
            return
        size = stream.meta.size
        limit = min(self.originals.max_entry if size is None else size,
                    self.originals.max_bytes // 4 - self.retaining)
        if (size is not None and size > self.originals.max_entry) or limit <= 0 \
                or (size is not None and size > limit):
            stream.retain = False
            return
        stream.retain_limit = download.reserved = limit
        self.retaining += limit

    def _done(self, key: tuple[str, int], download: _Download) -> None:
        stream = download.stream
        whole = stream.retain and stream.error is None and stream.done and stream.base == 0
        # while jobs still use every byte of it, new jobs for the URL share it too (a
        # source too large for the originals cache is then held once, not once per job)
        if self.downloads.get(key) is download and not (whole and download.users):
            del self.downloads[key]
        if whole:
            self.originals.put(key[0], Fetched(stream.whole(), stream.meta))
        self._release(key, download)

    def _release(self, key: tuple[str, int], download: _Download) -> None:
        """Once the download ended and no job uses it, its bytes leave the budget (the
        originals cache, bounded on its own, may still hold them)."""
        if download.users or not download.task.done() or download.released:
            return
        download.released = True
        if self.downloads.get(key) is download:  # kept for jobs that shared it (``_done``)
            del self.downloads[key]
        self.retaining -= download.reserved
        download.stream.release()

"""A source body in transit: written by the download (event loop), read by decoders
(worker threads) while it arrives.

``SourceStream`` holds the chunks between the two. It keeps every byte when it
``retain``s them (for the originals cache, or because the format needs the whole
file); otherwise it keeps only the bytes some reader has not consumed yet and the
download waits whenever that window is full (backpressure to the origin). Readers
block in their thread until bytes arrive; while they wait, ``Reader.waiting`` lets
the worker pool lend their CPU slot to other work (``workers.Slot``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from typing import Protocol

from ..errors import ProxyError, SourceTooLarge
from .base import SourceMeta

WINDOW = 1024 * 1024  # bytes a non-retaining stream holds ahead of its slowest reader
HEAD = 64 * 1024  # bytes looked at to sniff the format (and the SVG check)


class Budget(Protocol):
    """Counts bytes held in memory (``memory_budget.MemoryBudget``)."""

    def hold(self, nbytes: int) -> None: ...

    def give(self, nbytes: int) -> None: ...


class StreamFailed(Exception):
    """Raised in a reader's thread when its job was given up."""


def _again(error: BaseException) -> BaseException:
    """A fresh copy of the download's typed error for one reader (no shared traceback)."""
    if isinstance(error, ProxyError):
        return type(error)(error.reason, status=error.status, headers=dict(error.headers))
    return StreamFailed(str(error))


def _no_wait() -> ContextManager[None]:
    return contextlib.nullcontext()


class SourceStream:
    def __init__(self, meta: SourceMeta | None = None, retain: bool = True,
                 window: int = WINDOW, budget: Budget | None = None) -> None:
        self.meta = meta or SourceMeta()  # validators; ``size`` = the declared length
        self.headers = meta is not None  # the response's headers have arrived
        self.retain = retain
        self.retain_limit = 0  # > 0: stop retaining once more than this has arrived
        self.window = window
        self.budget = budget  # counts the bytes held (``memory_budget.MemoryBudget``)
        self.chunks: list[bytes] = []
        self.base = 0  # offset of ``chunks[0]`` (bytes before it were dropped)
        self.generation = 0  # changes whenever ``chunks`` is dropped from or joined
        self.received = 0  # bytes written so far
        self.done = False
        self.error: BaseException | None = None
        self.readers: list[Reader] = []
        self._lock = threading.Condition()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()  # the loop side waits on it: data came, space freed
        self._waiting_for_space = False  # readers wake the loop only when it waits on them

    # --- the download side (event loop) ---------------------------------------------------

    def open(self, meta: SourceMeta) -> None:
        """The response's headers arrived (the body follows)."""
        with self._lock:
            self.meta, self.headers = meta, True
        self._wake()

    async def opened(self) -> None:
        """Until the response's headers arrived; re-raises a failed request."""
        while True:
            if self.error is not None:
                raise self.error
            if self.headers:
                return
            self._changed.clear()
            await self._changed.wait()

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; without retention, wait while the window is full."""
        if self.budget is not None:
            self.budget.hold(len(chunk))
        with self._lock:
            self.chunks.append(chunk)
            self.received += len(chunk)
            if self.retain and self.retain_limit and self.received > self.retain_limit:
                self.retain = False
                self._drop_consumed()
            self._lock.notify_all()
        self._wake()
        while not self.retain and self.readers and self.ahead() > self.window:
            self._changed.clear()
            self._waiting_for_space = True
            try:
                if self.ahead() <= self.window:
                    break
                await self._changed.wait()
            finally:
                self._waiting_for_space = False

    def finish(self, meta: SourceMeta | None = None) -> None:
        """The body ended; ``meta`` replaces the headers' (a content ETag, the real size)."""
        with self._lock:
            if meta is not None:
                self.meta = meta
            self.done = True
            self._lock.notify_all()
        self._wake()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if not self.done:
                self.error, self.done = error, True
            self._lock.notify_all()
        self._wake()

    def ahead(self) -> int:
        """Bytes received that the slowest reader has not consumed."""
        with self._lock:
            if not self.readers:
                return self.received - self.base
            return self.received - min(r.position for r in self.readers)

    async def wait_for(self, size: int) -> None:
        """Until ``size`` bytes (or the whole body) arrived; re-raises a failure."""
        while True:
            with self._lock:
                if self.error is not None:
                    raise self.error
                if self.done or self.received >= size:
                    return
                self._changed.clear()
            await self._changed.wait()

    async def data(self) -> bytes:
        """The whole body (the stream must retain it)."""
        await self.wait_for(1 << 62)
        return self.whole()

    def whole(self) -> bytes:
        with self._lock:
            if not (self.retain and self.base == 0 and self.done and self.error is None):
                raise RuntimeError("the stream did not keep every byte")
            if len(self.chunks) > 1:
                self.chunks = [b"".join(self.chunks)]
                self.generation += 1
            return self.chunks[0] if self.chunks else b""

    def head(self, size: int = HEAD) -> bytes:
        """The first bytes received (up to ``size``); the stream keeps them until read."""
        with self._lock:
            if self.base:
                raise RuntimeError("the head of the stream was dropped")
            out = bytearray()
            for chunk in self.chunks:
                out += chunk[:size - len(out)]
                if len(out) >= size:
                    break
            return bytes(out)

    def _wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._changed.set()
        else:
            self._loop.call_soon_threadsafe(self._changed.set)

    # --- the decoding side (worker threads) -----------------------------------------------

    def reader(self, limit: int = 0, waiting: Callable[[], ContextManager[None]] = _no_wait
               ) -> Reader:
        """A new reader from the first byte (only while that byte is still held).
        ``limit``: this reader's own size limit (0: none)."""
        with self._lock:
            if self.base:
                raise RuntimeError("a new reader needs the stream to hold its first byte")
            reader = Reader(self, limit, waiting)
            self.readers.append(reader)
            return reader

    def close_reader(self, reader: Reader) -> None:
        with self._lock:
            if reader in self.readers:
                self.readers.remove(reader)
            self._drop_consumed()
        self._wake()

    def _drop_consumed(self) -> None:
        """Without retention, forget the chunks every reader has passed (lock held)."""
        if self.retain or not self.readers:
            return
        floor = min(r.position for r in self.readers)
        dropped = 0
        while self.chunks and self.base + len(self.chunks[0]) <= floor:
            dropped += len(self.chunks[0])
            self.base += len(self.chunks.pop(0))
        if dropped:
            self.generation += 1
            if self.budget is not None:
                self.budget.give(dropped)

    def release(self) -> None:
        """Forget every byte (the stream is done with): the budget gets them back."""
        with self._lock:
            held = self.received - self.base
            self.chunks, self.base = [], self.received
            self.generation += 1
        if held and self.budget is not None:
            self.budget.give(held)


class Reader:
    """One decoder's cursor over a ``SourceStream``: ``read`` blocks until bytes come.

    libvips asks for a few KiB per call, so reads keep their place in the chunk list
    (no scan per call), and a reader that has run dry waits for ``LOW_WATER`` bytes
    (or the end) before it takes a worker slot again: fewer wake-ups, the same bytes.
    """

    LOW_WATER = 256 * 1024

    def __init__(self, stream: SourceStream, limit: int,
                 waiting: Callable[[], ContextManager[None]]) -> None:
        self.stream = stream
        self.limit = limit
        self.waiting = waiting  # entered while blocked: the pool lends this job's CPU slot
        self.position = 0
        self.cancelled = False
        self._index = 0  # chunks[_index] holds ``position`` (for the generation seen)
        self._start = 0  # stream offset of chunks[_index]
        self._generation = -1

    @property
    def size(self) -> int | None:
        """The body's length when known (declared, or complete)."""
        s = self.stream
        return s.received if s.done and s.error is None else s.meta.size

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end. Raises when the download failed, the
        reader's limit is passed or the job was cancelled."""
        s = self.stream
        with s._lock:
            ready = self._available() > 0
        if not ready:
            total = self.size
            left = total - self.position if total is not None else self.LOW_WATER
            self._wait(max(1, min(self.LOW_WATER, left)))
        with s._lock:
            if s.error is not None and not self._available():
                raise _again(s.error)
            out = self._take(size)
            s._drop_consumed()
            wake = s._waiting_for_space
        if wake:  # the download waits for window space
            s._wake()
        if self.limit and self.position > self.limit:
            raise SourceTooLarge(f"Source is larger than {self.limit} bytes")
        return out

    def arrived(self) -> bytes | None:
        """The whole body, when all of it arrived before this reader read a byte (the job
        waited for a worker while the download finished); None otherwise, and when it
        is past the reader's limit (``read`` then says so)."""
        s = self.stream
        with s._lock:
            if self.position or s.base or not s.done or s.error is not None or \
                    (self.limit and s.received > self.limit):
                return None
            if len(s.chunks) > 1:
                s.chunks = [b"".join(s.chunks)]
                s.generation += 1
            return s.chunks[0] if s.chunks else b""

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end) without consuming them; blocks."""
        s = self.stream
        self._wait(size)
        with s._lock:
            if s.error is not None and self._available() < size:
                raise _again(s.error)
            saved = (self.position, self._index, self._start)
            out = self._take(size)
            self.position, self._index, self._start = saved
            return out

    def cancel(self) -> None:
        """Make a blocked or later ``read`` fail (any thread): the job was given up."""
        with self.stream._lock:
            self.cancelled = True
            self.stream._lock.notify_all()

    def close(self) -> None:
        self.stream.close_reader(self)

    def _wait(self, size: int) -> None:
        """Block until ``size`` bytes are available or the body ended; the CPU slot is
        lent out meanwhile (``waiting``), never while holding the stream's lock."""
        s = self.stream
        with s._lock:
            if self.cancelled:
                raise StreamFailed("the job was cancelled")
            if self._available() >= size or s.done:
                return
        with self.waiting(), s._lock:
            while self._available() < size and not s.done and not self.cancelled:
                s._lock.wait()
        if self.cancelled:
            raise StreamFailed("the job was cancelled")

    def _available(self) -> int:
        return self.stream.received - self.position

    def _take(self, size: int) -> bytes:
        """Consume up to ``size`` bytes (lock held)."""
        s = self.stream
        if self._generation != s.generation:  # chunks were dropped or joined: find place
            self._index, self._start = 0, s.base
            while self._index < len(s.chunks) and \
                    self._start + len(s.chunks[self._index]) <= self.position:
                self._start += len(s.chunks[self._index])
                self._index += 1
            self._generation = s.generation
        pieces = []
        while size > 0 and self._index < len(s.chunks):
            chunk = s.chunks[self._index]
            offset = self.position - self._start
            piece = chunk[offset:offset + size]
            pieces.append(piece)
            size -= len(piece)
            self.position += len(piece)
            if offset + len(piece) >= len(chunk):
                self._start += len(chunk)
                self._index += 1
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

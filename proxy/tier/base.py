"""The shared tier's one small interface (``Store``), and what an entry looks like in it.

An adapter stores opaque bytes under a key; everything else (the key, the entry
format, timeouts, metrics, the write queue) is the same for every adapter and lives
in ``shared.py``. A new adapter (GCS, Azure, ...) is a class with ``get``, ``put``
and the async context manager that opens and closes its client.

An entry is one object: the image bytes and their metadata together, so no reader
ever sees bytes without their headers or the other way round::

    b"VGTIER1\\n" | header length (4 bytes, big-endian) | header (JSON) | image bytes
                  | BLAKE2b-128 of everything before it (16 bytes)

The header holds the key (an object copied under another name is refused), the
result's format, ``Content-Type`` and size, the ETag, the source's validators and
caching headers (``SourceMeta``), the byte count and the time it was stored. A
truncated, padded or altered object fails the digest or the length check and is
ignored (``CorruptEntry``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict
from typing import Any, Protocol

from .. import formats
from ..metrics import JobReport
from ..processing.pipeline import Result
from ..results import CachedResult
from ..sources import SourceMeta

MAGIC = b"VGTIER1\n"
_LENGTH = struct.Struct(">I")
_DIGEST = 16
_MAX_HEADER = 64 * 1024
_RESULT_FIELDS = ("format", "width", "height", "source_format", "source_width",
                  "source_height")


class Store(Protocol):
    """One adapter. ``key`` is a relative path such as ``prefix/ab/cd/abcd...`` (hex
    digits, ``/`` and the configured prefix).

    ``get`` returns the bytes stored under ``key``, or None when there are none;
    ``put`` stores (or replaces) them, and may let the store expire them after ``ttl``
    seconds (0: never). Both raise ``CacheUnavailable`` when the store fails; the
    caller bounds each call with its own timeout and never lets a failure reach a
    request (unless ``IMGPROXY_CACHE_REPORT_ERRORS``). Opening must not fail for a
    store that is down: it is only ever a miss.
    """

    name: str  # the IMGPROXY_CACHE_USE value, the ``tier`` label of the metrics

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, blob: bytes, ttl: int) -> None: ...


class CorruptEntry(ValueError):
    """The stored bytes are not a whole, unaltered entry for this key."""


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def encode(key: str, entry: CachedResult, stored: float) -> bytes:
    """``entry`` as one object (see the module docstring)."""
    result = entry.result
    header: dict[str, Any] = {
        "key": key, "etag": entry.etag, "content_type": formats.mime_type(result.format),
        "length": len(result.data), "stored": int(stored), "source": asdict(entry.meta),
        **{name: getattr(result, name) for name in _RESULT_FIELDS}}
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join((MAGIC, _LENGTH.pack(len(head)), head, result.data))
    return body + _digest(body)


def decode(key: str, blob: bytes, report: JobReport | None = None
           ) -> tuple[CachedResult, float]:
    """The entry stored in ``blob`` and when it was stored; ``CorruptEntry`` unless it
    is whole and was written for ``key``."""
    view = memoryview(blob)
    start = len(MAGIC) + _LENGTH.size
    if len(blob) < start + _DIGEST or not blob.startswith(MAGIC):
        raise CorruptEntry("not a vipsgate entry")
    if _digest(view[:-_DIGEST]) != view[-_DIGEST:]:
        raise CorruptEntry("checksum mismatch (truncated or altered)")
    (head_length,) = _LENGTH.unpack_from(blob, len(MAGIC))
    if head_length > min(_MAX_HEADER, len(blob) - start - _DIGEST):
        raise CorruptEntry("header length out of bounds")
    try:
        header = json.loads(bytes(view[start:start + head_length]))
        data = bytes(view[start + head_length:-_DIGEST])
        if header["key"] != key or header["length"] != len(data):
            raise CorruptEntry("entry of another key, or of another length")
        result = Result(data, *(header[name] for name in _RESULT_FIELDS))
        meta = SourceMeta(**header["source"])
        entry = CachedResult(result, meta, header["etag"], report or JobReport())
        return entry, float(header["stored"])
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, CorruptEntry):
            raise
        raise CorruptEntry(f"unreadable header: {exc}") from None

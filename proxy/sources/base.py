"""What every source returns, and the size-limited reader they share."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import SourceTooLarge

CHUNK = 64 * 1024  # read size for streamed source bodies


@dataclass(frozen=True)
class SourceMeta:
    """Validators and caching headers of the original, as the origin gave them."""

    etag: str | None = None
    last_modified: str | None = None  # an HTTP date
    content_type: str | None = None
    cache_control: str | None = None
    expires: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Unchanged:
    """The origin answered 304 to validators forwarded from the client (not an error):
    the client's copy is current. ``meta`` holds the validators the 304 carried."""

    meta: SourceMeta


@dataclass(frozen=True)
class Relayed:
    """An origin's response for ``raw``: its final status, headers and body as sent
    (not decompressed); the body is empty for 304 and error statuses."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Fetched:
    data: bytes
    meta: SourceMeta = field(default_factory=SourceMeta)


class Body(Protocol):
    """An open download: the origin's headers are known, the body is not read yet.

    ``chunks`` yields the body and raises ``ProxyError`` subclasses only (a cut body is
    ``SourceIncomplete``); a declared size over the limit was refused by ``open``.
    ``deadline`` (``loop.time()``) ends the download (``IMGPROXY_DOWNLOAD_TIMEOUT``).
    """

    meta: SourceMeta  # ``size``: the declared length, when the origin gave one
    deadline: float

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Source(Protocol):
    """One URL scheme. ``open`` raises ``ProxyError`` subclasses only."""

    async def open(self, url: str, max_bytes: int) -> Body: ...


class Buffered:
    """A ``Body`` over bytes already in memory (local files)."""

    def __init__(self, data: bytes, meta: SourceMeta, deadline: float) -> None:
        self.data, self.meta, self.deadline = data, meta, deadline

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.data:
            yield self.data

    async def close(self) -> None:
        self.data = b""


def check_size(fetched: Fetched, max_bytes: int) -> Fetched:
    """``fetched`` when within ``max_bytes`` (0: no limit): a source from the originals
    cache was fetched under another request's limit."""
    if max_bytes and len(fetched.data) > max_bytes:
        raise SourceTooLarge(f"Source is {len(fetched.data)} bytes, limit is {max_bytes}")
    return fetched


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int,
                       declared: int | None = None) -> bytes:
    """Collect a body, stopping the moment it exceeds ``max_bytes`` (0 = no limit)."""
    if max_bytes and declared is not None and declared > max_bytes:
        raise SourceTooLarge(f"Source declares {declared} bytes, limit is {max_bytes}")
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if max_bytes and total > max_bytes:
            raise SourceTooLarge(f"Source is larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


#: one entity tag (RFC 9110 ``entity-tag``)
_ENTITY_TAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')


def one_entity_tag(value: str) -> str | None:
    """``value`` when it is exactly one well-formed entity tag, else None: what may be
    forwarded to a store that compares a single tag (S3, Azure). The tags come from
    clients (carried inside ours), so nothing else is sent on."""
    return value if _ENTITY_TAG.fullmatch(value) else None

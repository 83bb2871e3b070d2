"""What every source returns, and the size-limited reader they share."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
class Fetched:
    data: bytes
    meta: SourceMeta = field(default_factory=SourceMeta)


class Source(Protocol):
    """One URL scheme. ``fetch`` raises ``ProxyError`` subclasses only."""

    async def fetch(self, url: str, max_bytes: int) -> Fetched: ...


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

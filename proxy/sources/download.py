"""The download: an open ``Body`` copied into a ``SourceStream``, within the limits.

The size limit is enforced chunk by chunk (the body is cut off at once), a body
shorter than its declared length is ``SourceIncomplete``, and the download must end
by its deadline (``IMGPROXY_DOWNLOAD_TIMEOUT``); time spent waiting for slow readers
(backpressure) does not count against it. A source without ETag and Last-Modified
gets a content hash as its ETag, computed as the bytes pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable

from ..errors import (
    ProxyError,
    SourceIncomplete,
    SourceTimeout,
    SourceTooLarge,
    SourceUnreachable,
)
from .base import Body
from .stream import SourceStream

log = logging.getLogger("vipsgate.sources")


async def download(opening: Awaitable[Body], stream: SourceStream, max_bytes: int,
                   url: str) -> None:
    """Open the source, then ``pump`` its body; a failure to open fails the stream."""
    try:
        body = await opening
    except ProxyError as exc:
        stream.fail(exc)
        return
    except asyncio.CancelledError:
        stream.fail(SourceIncomplete(f"Download of {url} stopped"))
        raise
    except Exception as exc:  # a client library's own error: typed here, logged once
        log.warning("opening %s failed: %r", url, exc)
        stream.fail(SourceUnreachable(f"Opening {url} failed: {exc!r}"))
        return
    stream.open(body.meta)
    await pump(body, stream, max_bytes, url)


async def pump(body: Body, stream: SourceStream, max_bytes: int, url: str) -> None:
    """Copy ``body`` into ``stream``; the stream ends finished or failed, never open."""
    loop = asyncio.get_running_loop()
    deadline = body.deadline
    meta = body.meta
    digest = None if meta.etag or meta.last_modified else hashlib.blake2b(digest_size=16)
    total = 0
    chunks = body.chunks().__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            total += len(chunk)
            if max_bytes and total > max_bytes:
                raise SourceTooLarge(f"Source is larger than {max_bytes} bytes")
            if digest is not None:
                digest.update(chunk)
            paused_at = loop.time()
            await stream.write(chunk)
            deadline += loop.time() - paused_at  # waiting for readers is not downloading
        if meta.size is not None and total < meta.size:
            raise SourceIncomplete(f"Body of {url} ended after {total} of {meta.size} bytes")
        etag = f'"b2-{digest.hexdigest()}"' if digest is not None else meta.etag
        stream.finish(dataclasses.replace(meta, etag=etag, size=total))
    except TimeoutError:
        stream.fail(SourceTimeout(f"Downloading {url} took longer than allowed"))
    except ProxyError as exc:
        stream.fail(exc)
    except asyncio.CancelledError:  # nobody reads it any more
        stream.fail(SourceIncomplete(f"Download of {url} stopped"))
        raise
    except Exception as exc:  # a client library's own error: typed here, logged once
        log.warning("download of %s failed: %r", url, exc)
        stream.fail(SourceIncomplete(f"Download of {url} failed: {exc!r}"))
    finally:
        await body.close()

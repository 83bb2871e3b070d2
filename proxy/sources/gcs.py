"""``gs://bucket/key[?generation]`` through one long-lived GCS client (``cloud/gcs.py``).

The media request is made when the source is opened; its body is then streamed
chunk by chunk (the same reader as HTTP sources), under the same size limit and
deadline. Errors, as for S3: a missing object or bucket and a refused one (logged,
never revealed) answer 404, a bucket outside ``IMGPROXY_GCS_ALLOWED_BUCKETS`` or in
``IMGPROXY_GCS_DENIED_BUCKETS`` 404 ``Invalid source URL``, a failing or unreachable
store 502, a slow one 504.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from ..cloud.gcs import READ_ONLY, CredentialsFailed, GcsClient, error_reason
from ..cloud.names import bucket_allowed, parse_gs_url
from ..errors import (
    InvalidSource,
    ProxyError,
    SourceNotFound,
    SourceTimeout,
    SourceTooLarge,
    SourceUnreachable,
)
from .base import SourceMeta
from .http import HttpBody

log = logging.getLogger("vipsgate.sources")


def status_error(status: int, url: str, reason: str) -> ProxyError | None:
    """GCS's answer as an error: 404 missing; 401/403 refused -> 404 (logged); 400
    (a bad name or generation) 404; anything else 502."""
    if status == 200:
        return None
    if status in (401, 403):
        log.warning("GCS denied access to %s: %s", url, reason)
        return SourceNotFound(f"GCS object not found: {url}")
    if status in (400, 404):
        return SourceNotFound(f"GCS object not found: {url} ({reason})")
    return SourceUnreachable(f"GCS answered {reason} for {url}")


def etag_of(headers: CIMultiDictProxy[str]) -> str | None:
    """The object's ``ETag``, else one from its hashes (``X-Goog-Hash``: MD5, or CRC32C
    for composite objects); None leaves the content hash to the download."""
    if headers.get("ETag"):
        return headers["ETag"]
    hashes = dict(part.strip().partition("=")[::2]
                  for part in headers.get("X-Goog-Hash", "").split(",") if "=" in part)
    value = hashes.get("md5") or hashes.get("crc32c")
    return f'"{value}"' if value else None


class GcsSource:
    """Fetch ``gs://`` sources; an async context manager owning the one client."""

    def __init__(self, settings: Any) -> None:
        s = settings
        self.allowed, self.denied = s.gcs_allowed_buckets, s.gcs_denied_buckets
        self.separator = s.source_url_query_separator  # "" : a "?" is part of the key
        self.timeout = s.download_timeout
        self.client = GcsClient(endpoint=s.gcs_endpoint, key=s.gcs_key, no_auth=s.gcs_no_auth,
                                scope=READ_ONLY, timeout=s.download_timeout,
                                connections=max(10, 2 * s.worker_count))

    async def __aenter__(self) -> GcsSource:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def open(self, url: str, max_bytes: int) -> HttpBody:
        bucket, key, generation = parse_gs_url(url, self.separator)
        if not bucket_allowed(bucket, self.allowed, self.denied):
            raise InvalidSource(f"GCS bucket is not allowed: {bucket}")
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await self.client.get(bucket, key, generation)
        except TimeoutError:
            raise SourceTimeout(f"Downloading {url} took longer than {self.timeout}s") from None
        except CredentialsFailed as exc:
            log.warning("GCS request for %s not sent: %s", url, exc)
            raise SourceUnreachable(f"GCS credentials failed for {url}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SourceUnreachable(f"Cannot reach GCS for {url}: {exc!r}") from None
        error = status_error(response.status, url, error_reason(response))
        if error is not None:
            response.release()
            raise error
        declared = response.content_length
        if max_bytes and declared is not None and declared > max_bytes:
            response.close()
            raise SourceTooLarge(f"Source declares {declared} bytes, limit is {max_bytes}")
        h = response.headers
        meta = SourceMeta(etag=etag_of(h), last_modified=h.get("Last-Modified"),
                          content_type=h.get("Content-Type"),
                          cache_control=h.get("Cache-Control"), expires=h.get("Expires"),
                          size=declared)
        return HttpBody(response, meta, deadline)

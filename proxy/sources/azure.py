"""``abs://container/blob[?snapshot=...|versionid=...]`` through one long-lived Azure
client (``cloud/azure.py``).

Opening the source reads the blob's first range (``VIPSGATE_ABS_CHUNK_SIZE``, 4 MiB:
most images in one request, as one GET is for the other stores; every extra request
costs the server a few ms of CPU in the SDK); the rest arrives range by range, one
request each, pinned to the first answer's ETag (a blob replaced meanwhile ends the
download). The size limit, the deadline
and the validators work as for every source; errors map as for S3 (missing or
refused: 404, refused logged; a container outside ``IMGPROXY_ABS_ALLOWED_BUCKETS``
or in ``IMGPROXY_ABS_DENIED_BUCKETS``: 404 ``Invalid source URL``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError

from ..cloud.azure import AzureClient, azure_error
from ..cloud.names import bucket_allowed, parse_abs_url
from ..errors import InvalidSource, SourceTimeout, SourceTooLarge
from .base import SourceMeta, Unchanged, one_entity_tag


def http_date(value: datetime | None) -> str | None:
    return format_datetime(value.astimezone(UTC), usegmt=True) if value else None


class AzureSource:
    """Fetch ``abs://`` sources; an async context manager owning the one client."""

    def __init__(self, settings: Any) -> None:
        s = settings
        self.allowed, self.denied = s.abs_allowed_buckets, s.abs_denied_buckets
        self.separator = s.source_url_query_separator  # "" : a "?" is part of the key
        self.timeout = s.download_timeout
        self.client = AzureClient(name=s.abs_name, key=s.abs_key, endpoint=s.abs_endpoint,
                                  timeout=s.download_timeout, retries=1,
                                  connections=max(10, 2 * s.worker_count),
                                  chunk=s.abs_chunk_size)

    async def __aenter__(self) -> AzureSource:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def open(self, url: str, max_bytes: int) -> AzureBody:
        opened = await self._open(url, max_bytes, {})
        assert isinstance(opened, AzureBody), "a download without conditions is never a 304"
        return opened

    async def open_if_changed(self, url: str, max_bytes: int,
                              conditions: Mapping[str, str]) -> AzureBody | Unchanged:
        """``open`` with the client's entity tag forwarded (``If-None-Match``, when it
        names one): ``Unchanged`` when Azure answers 304, and the blob is not downloaded.
        Azure's 304 may carry no validators (Azurite's does not), so ``If-Modified-Since``
        alone is not forwarded: the blob is fetched and compared here, and the 304 then
        carries its validators."""
        tag = one_entity_tag(conditions.get("If-None-Match", ""))
        if tag is None:
            return await self._open(url, max_bytes, {})
        return await self._open(url, max_bytes,
                                {"etag": tag, "match_condition": MatchConditions.IfModified})

    async def _open(self, url: str, max_bytes: int, conditions: dict[str, Any]
                    ) -> AzureBody | Unchanged:
        container, blob, version, snapshot = parse_abs_url(url, self.separator)
        if not bucket_allowed(container, self.allowed, self.denied):
            raise InvalidSource(f"Azure container is not allowed: {container}")
        service = self.client.service
        assert service is not None, "AzureSource used outside its context"
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                client = service.get_blob_client(container, blob, snapshot=snapshot)
                downloader = await client.download_blob(version_id=version, max_concurrency=1,
                                                        **conditions)
        except TimeoutError:
            raise SourceTimeout(f"Downloading {url} took longer than {self.timeout}s") from None
        except AzureError as exc:
            if conditions and getattr(exc, "status_code", None) == 304:  # the tag matched
                return Unchanged(SourceMeta(etag=conditions["etag"]))
            raise azure_error(exc, url) from None
        size = downloader.size
        if max_bytes and size > max_bytes:
            raise SourceTooLarge(f"Source declares {size} bytes, limit is {max_bytes}")
        props = downloader.properties
        settings = props.content_settings
        meta = SourceMeta(etag=props.etag, last_modified=http_date(props.last_modified),
                          content_type=settings.content_type,
                          cache_control=settings.cache_control, size=size)
        return AzureBody(downloader, meta, deadline, url)


class AzureBody:
    """The blob, range by range (the first one is already here)."""

    def __init__(self, downloader: Any, meta: SourceMeta, deadline: float, url: str) -> None:
        self.downloader, self.meta, self.deadline, self.url = downloader, meta, deadline, url

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.downloader.chunks():
                yield chunk
        except AzureError as exc:
            raise azure_error(exc, self.url) from None

    async def close(self) -> None:
        self.downloader = None  # each range's response was read whole and released

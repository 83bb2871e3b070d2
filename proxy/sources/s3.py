"""``s3://bucket/key[?versionId=ID]`` through one long-lived aiobotocore client.

The client is created when the app starts and closed when it stops; its
connection pool holds as many connections as requests can be admitted (a place in the
queue is held while a source downloads, so that bounds concurrent S3 reads).
Credentials come from the standard AWS chain (environment, shared files,
container/instance roles).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from ..errors import (
    InvalidSource,
    ProxyError,
    SourceIncomplete,
    SourceNotFound,
    SourceTimeout,
    SourceTooLarge,
    SourceUnreachable,
)
from .base import CHUNK, SourceMeta, Unchanged, one_entity_tag

log = logging.getLogger("vipsgate.sources")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound", "404"})
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "InvalidObjectState", "403"})


def parse_s3_url(url: str, separator: str = "?") -> tuple[str, str, str | None]:
    """``(bucket, key, version_id)``; the key is raw (no percent-decoding), as imgproxy.

    The version comes after the first ``separator`` (IMGPROXY_SOURCE_URL_QUERY_SEPARATOR;
    empty: none): ``versionId=ID`` or, as imgproxy writes it, the bare ID.
    """
    rest = url.split("://", 1)[1] if "://" in url else ""
    bucket, _, key = rest.partition("/")
    key, question, query = key.partition(separator) if separator else (key, "", "")
    version = None
    if question and query:
        version = parse_qs(query).get("versionId", [query])[0]
    if not bucket or not key:
        raise InvalidSource(f"Invalid S3 URL: {url}")
    return bucket, key, version


def http_date(value: object) -> str | None:
    """An HTTP date from botocore's datetime (or a string passed through)."""
    if isinstance(value, datetime):
        return format_datetime(value.astimezone(UTC), usegmt=True)
    return value if isinstance(value, str) and value else None


def client_error(exc: ClientError, url: str) -> ProxyError:
    """Map an S3 error: missing -> 404, denied -> 404 (logged, not leaked), else 502."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _DENIED_CODES or status == 403:
        log.warning("S3 denied access to %s: %s %s", url, code, error.get("Message", ""))
        return SourceNotFound(f"S3 object not found: {url}")
    if code in _NOT_FOUND_CODES or status == 404:
        return SourceNotFound(f"S3 object not found: {url} ({code})")
    if code in ("InvalidArgument", "InvalidBucketName") or status == 400:
        return SourceNotFound(f"Invalid S3 object reference: {url} ({code})")
    return SourceUnreachable(f"S3 error for {url}: {code} {status}")


class S3Source:
    """Fetch ``s3://`` sources; an async context manager owning the one client."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.allowed_buckets = frozenset(settings.s3_allowed_buckets)
        self.timeout = settings.download_timeout
        self.separator = getattr(settings, "source_url_query_separator", "?")
        self.client: Any = None
        self._stack = AsyncExitStack()

    def client_config(self) -> AioConfig:
        s = self.settings
        options: dict[str, Any] = {}
        if s.s3_endpoint:  # MinIO and friends want path-style addressing
            options["s3"] = {"addressing_style": "path"}
        return AioConfig(max_pool_connections=s.origin_connections[0],
                         connect_timeout=self.timeout, read_timeout=self.timeout,
                         retries={"max_attempts": 2, "mode": "standard"}, **options)

    async def __aenter__(self) -> S3Source:
        s = self.settings
        session = get_session()
        self.client = await self._stack.enter_async_context(session.create_client(
            "s3", region_name=s.s3_region or None, endpoint_url=s.s3_endpoint or None,
            config=self.client_config()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self.client = None

    async def open(self, url: str, max_bytes: int) -> S3Body:
        opened = await self._open(url, max_bytes, {})
        assert isinstance(opened, S3Body), "a GetObject without conditions is never a 304"
        return opened

    async def open_if_changed(self, url: str, max_bytes: int,
                              conditions: Mapping[str, str]) -> S3Body | Unchanged:
        """``open`` with the client's validators forwarded as GetObject's ``IfNoneMatch``
        and ``IfModifiedSince`` (as imgproxy): ``Unchanged`` when S3 answers 304, and
        the object is not downloaded. Only one well-formed entity tag is forwarded (S3
        compares one; the tags come from clients): with several, the object is fetched
        and compared here."""
        given: dict[str, Any] = {}
        tag = one_entity_tag(conditions.get("If-None-Match", ""))
        if tag:
            given["IfNoneMatch"] = tag
        if "If-Modified-Since" in conditions:
            with contextlib.suppress(TypeError, ValueError):  # unparsable: not forwarded
                given["IfModifiedSince"] = parsedate_to_datetime(conditions["If-Modified-Since"])
        return await self._open(url, max_bytes, given)

    async def _open(self, url: str, max_bytes: int, conditions: dict[str, Any]
                    ) -> S3Body | Unchanged:
        bucket, key, version = parse_s3_url(url, self.separator)
        if self.allowed_buckets and bucket not in self.allowed_buckets:
            raise InvalidSource(f"S3 bucket is not allowed: {bucket}")
        params = {"Bucket": bucket, "Key": key, **conditions}
        if version:
            params["VersionId"] = version
        assert self.client is not None, "S3Source used outside its context"
        deadline = asyncio.get_running_loop().time() + self.timeout
        with s3_errors(url, self.timeout):
            async with asyncio.timeout_at(deadline):
                try:
                    response = await self.client.get_object(**params)
                except ClientError as exc:
                    metadata = exc.response.get("ResponseMetadata", {})
                    if conditions and metadata.get("HTTPStatusCode") == 304:
                        h = metadata.get("HTTPHeaders", {})
                        return Unchanged(SourceMeta(
                            etag=h.get("etag"), last_modified=h.get("last-modified"),
                            cache_control=h.get("cache-control"), expires=h.get("expires")))
                    raise
        declared = response.get("ContentLength")
        if max_bytes and declared is not None and declared > max_bytes:
            response["Body"].close()
            raise SourceTooLarge(f"Source declares {declared} bytes, limit is {max_bytes}")
        meta = SourceMeta(
            etag=response.get("ETag"), last_modified=http_date(response.get("LastModified")),
            content_type=response.get("ContentType"), cache_control=response.get("CacheControl"),
            expires=http_date(response.get("ExpiresString") or response.get("Expires")),
            size=declared)
        return S3Body(response["Body"], meta, deadline, url, self.timeout)


@contextlib.contextmanager
def s3_errors(url: str, timeout: float) -> Iterator[None]:
    """botocore's errors as the typed ones (status mapping in ``client_error``)."""
    try:
        yield
    except (TimeoutError, ConnectTimeoutError, ReadTimeoutError):
        raise SourceTimeout(f"Downloading {url} took longer than {timeout}s") from None
    except ClientError as exc:
        raise client_error(exc, url) from None
    except (IncompleteReadError, ResponseStreamingError, aiohttp.ClientPayloadError) as exc:
        raise SourceIncomplete(f"S3 body of {url} was cut short: {exc}") from None
    except aiohttp.ClientError as exc:
        raise SourceUnreachable(f"S3 request for {url} failed: {exc}") from None
    except BotoCoreError as exc:  # connection errors, missing credentials, ...
        raise SourceUnreachable(f"S3 request for {url} failed: {exc}") from None


class S3Body:
    """An object's body, read in chunks; a short or cut body is ``SourceIncomplete``."""

    def __init__(self, body: Any, meta: SourceMeta, deadline: float, url: str,
                 timeout: float) -> None:
        self.body, self.meta, self.deadline = body, meta, deadline
        self.url, self.timeout = url, timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        with s3_errors(self.url, self.timeout):
            async for chunk in self.body.iter_chunks(CHUNK):
                yield chunk

    async def close(self) -> None:
        self.body.close()

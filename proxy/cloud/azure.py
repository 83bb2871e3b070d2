"""One ``azure-storage-blob`` async client on one aiohttp session (``vipsgate[azure]``).

Credentials: the account key when one is given (Shared Key), else
``azure-identity``'s ``DefaultAzureCredential``: a service principal from
``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``, AKS workload identity
(``AZURE_FEDERATED_TOKEN_FILE``, injected by its webhook), then the managed identity of
the node or app. The endpoint is ``https://NAME.blob.core.windows.net`` unless one is
set (Azurite, sovereign clouds, private endpoints).

``azure_error`` maps the SDK's exceptions for sources; the tier maps its own.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceModifiedError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob.aio import BlobServiceClient, LinearRetry

from ..errors import (
    ProxyError,
    SourceIncomplete,
    SourceNotFound,
    SourceTimeout,
    SourceUnreachable,
)

log = logging.getLogger("vipsgate.sources")


def account_url(name: str, endpoint: str) -> str:
    return (endpoint or f"https://{name}.blob.core.windows.net").rstrip("/")


class AzureClient:
    """``service``: a ``BlobServiceClient`` while open; an async context manager that
    closes the client, its credential and its session. ``retries``: extra attempts on
    a failed connection or a 5xx (at once); ``chunk``: bytes per ranged read."""

    def __init__(self, *, name: str, key: str = "", endpoint: str = "", timeout: float = 5.0,
                 connections: int = 10, retries: int = 0, chunk: int = 32 * 1024**2) -> None:
        self.name, self.key, self.url = name, key, account_url(name, endpoint)
        self.timeout, self.connections = timeout, connections
        self.retries, self.chunk = retries, chunk
        self.service: BlobServiceClient | None = None
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> AzureClient:
        stack = self._stack
        try:
            session = await stack.enter_async_context(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections),
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False))
            credential: Any
            if self.key:
                credential = AzureNamedKeyCredential(self.name, self.key)
            else:
                from azure.identity.aio import DefaultAzureCredential
                credential = await stack.enter_async_context(DefaultAzureCredential())
            transport = AioHttpTransport(session=session, session_owner=False,
                                         connection_timeout=self.timeout,
                                         read_timeout=self.timeout)
            retry = LinearRetry(backoff=0, random_jitter_range=0, retry_total=self.retries)
            self.service = await stack.enter_async_context(BlobServiceClient(
                self.url, credential=credential, transport=transport, retry_policy=retry,
                max_single_get_size=self.chunk, max_chunk_get_size=self.chunk))
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self.service = None


def azure_error(exc: AzureError, url: str) -> ProxyError:
    """Map an SDK error as for S3: missing -> 404, refused -> 404 (logged, never
    revealed), a bad name or snapshot -> 404, slow -> 504, anything else 502."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
        return SourceTimeout(f"Azure took too long for {url}")
    if isinstance(exc, ResourceModifiedError):
        return SourceIncomplete(f"Blob {url} changed while it was read")
    if isinstance(exc, IncompleteReadError):
        return SourceIncomplete(f"Azure body of {url} was cut short: {exc}")
    if status in (401, 403):
        log.warning("Azure denied access to %s: %s", url, _code(exc))
        return SourceNotFound(f"Azure blob not found: {url}")
    if status in (400, 404):
        return SourceNotFound(f"Azure blob not found: {url} ({_code(exc)})")
    if isinstance(exc, ClientAuthenticationError):  # no status: no token could be had
        log.warning("Azure request for %s not sent: %s", url, str(exc)[:300])
        return SourceUnreachable(f"Azure credentials failed for {url}")
    return SourceUnreachable(f"Azure request for {url} failed: {_code(exc)}")


def _code(exc: AzureError) -> str:
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or exc.reason or ""
        return f"{exc.status_code} {code}".strip()
    return f"{type(exc).__name__}: {str(exc)[:200]}"

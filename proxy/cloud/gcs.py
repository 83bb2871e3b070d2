"""A small client of the Google Cloud Storage JSON API on one aiohttp session.

Credentials come from ``gcloud-aio-auth`` (the ``vipsgate[gcs]`` extra): a JSON key
when one is given, else Application Default Credentials in Google's order
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's file, then the metadata server, which
is how GKE workload identity hands a pod its service account). Tokens are cached
and refreshed before they expire. The requests themselves are made here, so a body
is streamed as it arrives, the response's headers (validators) are kept, and an
object generation can be pinned; ``gcloud-aio-storage`` offers neither.

Nothing here maps errors to responses: callers get the ``aiohttp`` response (any
status) or the transport's exception, and ``CredentialsFailed`` when no token
could be had; the source and the tier map them each their own way.
"""

from __future__ import annotations

import io
import types
from typing import Any
from urllib.parse import quote

import aiohttp
from gcloud.aio.auth import Token

from .. import __version__
from ..config.cloud import service_account_json

GOOGLE = "https://storage.googleapis.com"
READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
READ_WRITE = "https://www.googleapis.com/auth/devstorage.read_write"


class CredentialsFailed(Exception):
    """No access token: the key was refused, or no credentials were found."""


def api_root(endpoint: str) -> str:
    """The endpoint without a trailing ``/storage/v1`` (imgproxy's form includes it)."""
    root = (endpoint or GOOGLE).rstrip("/")
    return root.removesuffix("/storage/v1").rstrip("/")


class GcsClient:
    """One session (a connection pool) and one token source; an async context
    manager. ``key``: a JSON key, raw or base64 ("": the default credentials); ``no_auth``:
    send no ``Authorization`` at all (public buckets, emulators)."""

    def __init__(self, *, endpoint: str = "", key: str = "", no_auth: bool = False,
                 scope: str = READ_ONLY, timeout: float = 5.0, connections: int = 10) -> None:
        self.root = api_root(endpoint)
        self.key = service_account_json(key) if key else ""  # checked at start-up
        self.no_auth, self.scope = no_auth, scope
        self.timeout, self.connections = timeout, connections
        self.session: aiohttp.ClientSession | None = None
        self.token: Token | None = None

    async def __aenter__(self) -> GcsClient:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                          sock_read=self.timeout),
            headers={"User-Agent": f"vipsgate/{__version__}",
                     "Accept-Encoding": "identity"},  # the stored bytes, never re-encoded
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        if not self.no_auth:
            service_file = io.StringIO(self.key) if self.key else None
            self.token = single_try(Token(
                service_file=service_file, scopes=[self.scope],
                session=self.session))  # type: ignore[arg-type]  # aiohttp's, when async
        return self

    async def __aexit__(self, *exc: object) -> None:
        refreshing = self.token.acquiring if self.token is not None else None
        if refreshing is not None and not refreshing.done():
            refreshing.cancel()  # a token refresh in the background
        if self.session is not None:
            await self.session.close()  # the token shares it
        self.session = self.token = None

    def object_url(self, bucket: str, key: str) -> str:
        return f"{self.root}/storage/v1/b/{bucket}/o/{quote(key, safe='')}"

    async def headers(self) -> dict[str, str]:
        """``Authorization`` for the next request (a cached token, refreshed ahead of
        its expiry); ``CredentialsFailed`` when none can be had."""
        if self.token is None:
            return {}
        try:
            token = await self.token.get()
        except Exception as exc:  # the token endpoint, the key, the metadata server, ...
            raise CredentialsFailed(f"no GCS access token: {exc!r}"[:300]) from None
        return {"Authorization": f"Bearer {token}"}

    async def get(self, bucket: str, key: str, generation: int | None = None
                  ) -> aiohttp.ClientResponse:
        """The object's media response, its body unread (any status: the caller
        releases it)."""
        params = {"alt": "media"}
        if generation is not None:
            params["generation"] = str(generation)
        assert self.session is not None, "GcsClient used outside its context"
        return await self.session.get(self.object_url(bucket, key), params=params,
                                      headers=await self.headers(), allow_redirects=False)

    async def put(self, bucket: str, key: str, data: bytes, content_type: str
                  ) -> aiohttp.ClientResponse:
        """Upload ``data`` as ``key`` (one request, replacing the object); the
        response is read and released."""
        assert self.session is not None, "GcsClient used outside its context"
        headers = {**await self.headers(), "Content-Type": content_type}
        url = f"{self.root}/upload/storage/v1/b/{bucket}/o"
        async with self.session.post(url, params={"uploadType": "media", "name": key},
                                     data=data, headers=headers) as response:
            await response.read()
            return response


def single_try(token: Token) -> Token:
    """``token`` fetching each new token once per call: the library retries five times,
    up to a minute apart, so a refused key would look like a slow store (504) instead
    of a failure (502, logged). The next request tries again."""
    acquire = getattr(Token.acquire_access_token, "retry_with", None)  # tenacity's
    if acquire is not None:
        setattr(token, "acquire_access_token",  # noqa: B010 - an instance's own method
                types.MethodType(acquire(stop=_one_attempt()), token))
    return token


def _one_attempt() -> Any:
    from tenacity import stop_after_attempt  # gcloud-aio-auth's own dependency
    return stop_after_attempt(1)


def error_reason(response: Any) -> str:
    """The status line of an error answer, for logs."""
    return f"{response.status} {response.reason or ''}".strip()

"""``IMGPROXY_CACHE_USE=redis``: entries as Redis (or Valkey) strings, for hot, small
results; Redis expires them after ``VIPSGATE_CACHE_TTL``.

One ``redis.asyncio`` client (a connection pool) per process, without retries: a
slow or failing call is a miss, and the image is computed. Give the server a memory
limit and an eviction policy (``maxmemory`` with ``allkeys-lru``), and keep
``VIPSGATE_CACHE_MAX_OBJECT_SIZE`` small: Redis holds everything in memory.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import CacheUnavailable


class RedisStore:
    name = "redis"

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self.url, self.timeout = url, timeout
        self.client: Redis | None = None

    async def __aenter__(self) -> RedisStore:
        # connects on first use: a server that is down is a miss, not a failed start
        self.client = Redis.from_url(self.url, socket_timeout=self.timeout,
                                     socket_connect_timeout=self.timeout,
                                     retry=Retry(NoBackoff(), 0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def get(self, key: str) -> bytes | None:
        assert self.client is not None, "RedisStore used outside its context"
        try:
            return cast(bytes | None, await self.client.get(key))
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis GET {key}: {exc}") from None

    async def put(self, key: str, blob: bytes, ttl: int) -> None:
        assert self.client is not None, "RedisStore used outside its context"
        try:
            await self.client.set(key, blob, ex=ttl or None)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis SET {key}: {exc}") from None

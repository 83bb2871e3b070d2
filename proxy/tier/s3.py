"""``IMGPROXY_CACHE_USE=s3``: entries as objects in a bucket (AWS S3 or any S3 API).

One aiobotocore client per process, opened with the app and closed with it (as the
``s3://`` source does), without retries: a slow or failing call is a miss, and the
image is computed. Credentials come from the standard AWS chain (IRSA on EKS).
Expire old objects with a lifecycle rule on the bucket (or the prefix).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import CacheUnavailable

_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
CONTENT_TYPE = "application/vnd.vipsgate.entry"


class S3Store:
    name = "s3"

    def __init__(self, bucket: str, region: str = "", endpoint: str = "",
                 timeout: float = 1.0, connections: int = 32) -> None:
        self.bucket, self.region, self.endpoint = bucket, region, endpoint
        self.timeout, self.connections = timeout, connections
        self.client: Any = None
        self._stack = AsyncExitStack()

    def client_config(self) -> AioConfig:
        options: dict[str, Any] = {}
        if self.endpoint:  # MinIO and friends want path-style addressing
            options["s3"] = {"addressing_style": "path"}
        return AioConfig(max_pool_connections=self.connections, connect_timeout=self.timeout,
                         read_timeout=self.timeout,
                         retries={"total_max_attempts": 1, "mode": "standard"}, **options)

    async def __aenter__(self) -> S3Store:
        self.client = await self._stack.enter_async_context(get_session().create_client(
            "s3", region_name=self.region or None, endpoint_url=self.endpoint or None,
            config=self.client_config()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self.client = None

    async def get(self, key: str) -> bytes | None:
        assert self.client is not None, "S3Store used outside its context"
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise CacheUnavailable(f"s3://{self.bucket}/{key}: {_code(exc)}") from None
        except (BotoCoreError, OSError) as exc:  # connection refused, timeouts, ...
            raise CacheUnavailable(f"s3://{self.bucket}/{key}: {exc}") from None

    async def put(self, key: str, blob: bytes, ttl: int) -> None:
        assert self.client is not None, "S3Store used outside its context"
        try:
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=blob,
                                         ContentType=CONTENT_TYPE)
        except ClientError as exc:
            raise CacheUnavailable(f"s3://{self.bucket}/{key}: {_code(exc)}") from None
        except (BotoCoreError, OSError) as exc:
            raise CacheUnavailable(f"s3://{self.bucket}/{key}: {exc}") from None


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    return str(error.get("Code") or status)

"""``IMGPROXY_CACHE_USE=gcs``: entries as objects in a Google Cloud Storage bucket.

One GCS client per process (``cloud/gcs.py``, the one the ``gs://`` source uses),
with its own credentials (``IMGPROXY_CACHE_GCS_KEY``, else the pod's identity) and
no retries: a slow or failing call is a miss, and the image is computed. Expire old
objects with a lifecycle rule on the bucket (or the prefix).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from ..cloud.gcs import READ_WRITE, CredentialsFailed, GcsClient, error_reason
from ..errors import CacheUnavailable

CONTENT_TYPE = "application/vnd.vipsgate.entry"


class GcsStore:
    name = "gcs"

    def __init__(self, bucket: str, settings: Any, connections: int = 32) -> None:
        s = settings
        self.bucket = bucket
        self.client = GcsClient(endpoint=s.cache_gcs_endpoint, key=s.cache_gcs_key,
                                no_auth=s.cache_gcs_no_auth, scope=READ_WRITE,
                                timeout=s.cache_timeout, connections=connections)

    async def __aenter__(self) -> GcsStore:
        await self.client.__aenter__()  # no request yet: a store that is down is a miss
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def get(self, key: str) -> bytes | None:
        try:
            response = await self.client.get(self.bucket, key)
            async with response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise CacheUnavailable(f"gs://{self.bucket}/{key}: "
                                           f"{error_reason(response)}")
                return await response.read()
        except (CredentialsFailed, aiohttp.ClientError, OSError) as exc:
            raise CacheUnavailable(f"gs://{self.bucket}/{key}: {exc}") from None

    async def put(self, key: str, blob: bytes, ttl: int) -> None:
        try:
            response = await self.client.put(self.bucket, key, blob, CONTENT_TYPE)
        except (CredentialsFailed, aiohttp.ClientError, OSError) as exc:
            raise CacheUnavailable(f"gs://{self.bucket}/{key}: {exc}") from None
        if response.status not in (200, 201):
            raise CacheUnavailable(f"gs://{self.bucket}/{key}: {error_reason(response)}")

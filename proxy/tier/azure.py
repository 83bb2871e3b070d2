"""``IMGPROXY_CACHE_USE=abs``: entries as blobs in an Azure Blob Storage container.

One Azure client per process (``cloud/azure.py``, the one the ``abs://`` source
uses), with its own account (``IMGPROXY_CACHE_ABS_NAME``, ``_KEY``, ``_ENDPOINT``;
without a key the pod's identity) and no retries: a slow or failing call is a
miss, and the image is computed. Expire old blobs with a lifecycle management rule.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from ..cloud.azure import AzureClient
from ..errors import CacheUnavailable

CONTENT_TYPE = "application/vnd.vipsgate.entry"


class AzureStore:
    name = "abs"

    def __init__(self, container: str, settings: Any, connections: int = 32) -> None:
        s = settings
        self.container = container
        self.client = AzureClient(name=s.cache_abs_name, key=s.cache_abs_key,
                                  endpoint=s.cache_abs_endpoint, timeout=s.cache_timeout,
                                  connections=connections, retries=0)

    async def __aenter__(self) -> AzureStore:
        await self.client.__aenter__()  # no request yet: a store that is down is a miss
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    def _blobs(self) -> Any:
        assert self.client.service is not None, "AzureStore used outside its context"
        return self.client.service.get_container_client(self.container)

    async def get(self, key: str) -> bytes | None:
        try:
            downloader = await self._blobs().download_blob(key, max_concurrency=1)
            data: bytes = await downloader.readall()
            return data
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise CacheUnavailable(f"abs://{self.container}: no such container") from None
            return None
        except AzureError as exc:
            raise CacheUnavailable(f"abs://{self.container}/{key}: {str(exc)[:200]}") from None

    async def put(self, key: str, blob: bytes, ttl: int) -> None:
        try:
            await self._blobs().upload_blob(
                key, blob, overwrite=True,
                content_settings=ContentSettings(content_type=CONTENT_TYPE))
        except AzureError as exc:
            raise CacheUnavailable(f"abs://{self.container}/{key}: {str(exc)[:200]}") from None

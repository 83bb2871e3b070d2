"""A result cache shared by every pod: ``IMGPROXY_CACHE_USE=fs|s3|redis|gcs|abs``.

``open_tier`` builds the ``SharedCache`` for the configured adapter (or ``NoTier``);
the app opens and closes it in its own cleanup context, the handler looks in it
inside the coalesced job, before admission and fetching. ``base.py`` has the small
interface an adapter implements, and the stored entry's format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from .base import Store
from .metrics import TierMetrics
from .shared import NoTier, SharedCache

Tier = SharedCache | NoTier


def make_store(s: Any) -> Store:
    """The adapter ``IMGPROXY_CACHE_USE`` names (its client library imported only then)."""
    if s.cache_use == "fs":
        from .fs import FsStore
        return FsStore(s.cache_fs_root, s.cache_bucket)
    if s.cache_use == "s3":
        from .s3 import S3Store
        # lookups run before admission (a hit needs no worker): room for a burst of them
        return S3Store(s.cache_bucket, s.cache_s3_region, s.cache_s3_endpoint, s.cache_timeout,
                       max(64, 2 * s.worker_count))
    if s.cache_use == "redis":
        from .redis import RedisStore
        return RedisStore(s.cache_redis_url, s.cache_timeout)
    if s.cache_use == "gcs":
        from .gcs import GcsStore
        return GcsStore(s.cache_bucket, s, max(64, 2 * s.worker_count))
    if s.cache_use == "abs":
        from .azure import AzureStore
        return AzureStore(s.cache_bucket, s, max(64, 2 * s.worker_count))
    raise ValueError(f"unknown shared cache adapter {s.cache_use!r}")


def open_tier(settings: Any, registry: CollectorRegistry,
              fingerprint: Callable[[], str]) -> Tier:
    """The shared tier the settings ask for; ``NoTier`` when ``IMGPROXY_CACHE_USE`` is empty."""
    if not settings.cache_use:
        return NoTier()
    store = make_store(settings)
    return SharedCache(store, settings, TierMetrics(store.name, registry), fingerprint)


__all__ = ["NoTier", "SharedCache", "Store", "Tier", "make_store", "open_tier"]

"""The shared result tier: a result cache every pod reads and writes (``proxy/tier/``).

imgproxy v4 Pro's names where it has the setting (``IMGPROXY_CACHE_*``), ours for
what it lacks (Redis, TTL, size and timeout bounds, the write queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .values import boolean, choice, integer, items, number, setting, size

ADAPTERS = ("fs", "s3", "redis", "gcs", "abs")


@dataclass(frozen=True)
class TierSettings:
    # shared result tier
    cache_use: str = setting("", "IMGPROXY_CACHE_USE", parse=choice("", *ADAPTERS),
                             doc="Shared result cache for every pod: `fs`, `s3`, `redis`, "
                                 "`gcs` or `abs` (off when empty)")
    cache_fs_root: str = setting("", "IMGPROXY_CACHE_FS_ROOT",
                                 doc="`fs`: the directory (e.g. a shared volume)")
    cache_bucket: str = setting("", "IMGPROXY_CACHE_BUCKET",
                                doc="`s3`, `gcs`: the bucket; `abs`: the container; `fs`: a "
                                    "directory under the root")
    cache_path_prefix: str = setting("", "IMGPROXY_CACHE_PATH_PREFIX",
                                     doc="Prefix of every object's path (or Redis key)")
    cache_s3_endpoint: str = setting("", "IMGPROXY_CACHE_S3_ENDPOINT",
                                     doc="`s3`: endpoint URL (MinIO, R2, ...); AWS when empty")
    cache_s3_region: str = setting("", "IMGPROXY_CACHE_S3_REGION", "AWS_REGION",
                                   doc="`s3`: the bucket's region")
    cache_redis_url: str = setting("", "VIPSGATE_CACHE_REDIS_URL",
                                   doc="`redis`: `redis://[:password@]host:6379/0` "
                                       "(`rediss://` for TLS); Redis or Valkey")
    cache_key_headers: tuple[str, ...] = setting(
        (), "IMGPROXY_CACHE_KEY_HEADERS", parse=items,
        doc="Request headers whose values are part of the shared key")
    cache_report_errors: bool = setting(
        False, "IMGPROXY_CACHE_REPORT_ERRORS", parse=boolean,
        doc="Answer 503 when the shared cache fails, instead of computing the image")
    cache_ttl: int = setting(30 * 86400, "VIPSGATE_CACHE_TTL", parse=integer(0),
                             doc="Seconds a shared entry is used (Redis expires it); 0 = forever")
    cache_max_object_size: int = setting(
        8 * 1024**2, "VIPSGATE_CACHE_MAX_OBJECT_SIZE", parse=size,
        doc="Larger results are not written to the shared cache")
    cache_timeout: float = setting(1.0, "VIPSGATE_CACHE_TIMEOUT", parse=number(0.01),
                                   doc="Seconds per shared-cache read or write; then it counts "
                                       "as a miss")
    cache_write_queue_bytes: int = setting(
        32 * 1024**2, "VIPSGATE_CACHE_WRITE_QUEUE_BYTES", parse=size,
        doc="Results waiting to be written; beyond it a write is dropped")


def check_tier(s: Any) -> None:
    """What each adapter needs, checked at start-up (``ConfigError`` names the setting)."""
    needs = {"fs": ("IMGPROXY_CACHE_FS_ROOT", s.cache_fs_root),
             "s3": ("IMGPROXY_CACHE_BUCKET", s.cache_bucket),
             "gcs": ("IMGPROXY_CACHE_BUCKET", s.cache_bucket),
             "abs": ("IMGPROXY_CACHE_BUCKET", s.cache_bucket),
             "redis": ("VIPSGATE_CACHE_REDIS_URL", s.cache_redis_url)}
    if s.cache_use in needs:
        name, value = needs[s.cache_use]
        if not value:
            raise ConfigError(f"IMGPROXY_CACHE_USE={s.cache_use} needs {name}")
    if s.cache_use == "redis" and not s.cache_redis_url.startswith(
            ("redis://", "rediss://", "unix://")):
        raise ConfigError(f"VIPSGATE_CACHE_REDIS_URL={s.cache_redis_url!r}: expected "
                          "redis://, rediss:// or unix://")

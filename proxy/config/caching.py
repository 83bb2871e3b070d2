"""HTTP caching headers and the in-process caches."""

from __future__ import annotations

from dataclasses import dataclass

from .values import boolean, integer, number, setting, size


@dataclass(frozen=True)
class CachingSettings:
    # HTTP caching
    ttl: int = setting(31536000, "IMGPROXY_TTL", parse=integer(0),
                       doc="`Cache-Control: max-age` of results in seconds")
    cache_control_immutable: bool = setting(
        False, "VIPSGATE_CACHE_CONTROL_IMMUTABLE", parse=boolean,
        doc="Add `immutable` to Cache-Control")
    stale_while_revalidate: int = setting(
        0, "VIPSGATE_STALE_WHILE_REVALIDATE", parse=integer(0),
        doc="Add `stale-while-revalidate=N` to Cache-Control when > 0")
    cache_control_passthrough: bool = setting(
        False, "IMGPROXY_CACHE_CONTROL_PASSTHROUGH", parse=boolean,
        doc="Copy the source's Cache-Control / Expires")
    error_ttl: int = setting(0, "VIPSGATE_ERROR_TTL", parse=integer(0),
                             doc="max-age on 4xx answers except 429 (no Cache-Control when 0)")
    use_etag: bool = setting(True, "IMGPROXY_USE_ETAG", parse=boolean, doc="Send ETag, answer 304")
    use_last_modified: bool = setting(True, "IMGPROXY_USE_LAST_MODIFIED", parse=boolean,
                                      doc="Pass Last-Modified through, answer 304")
    # in-process caches
    result_cache_bytes: int = setting(128 * 1024**2, "VIPSGATE_RESULT_CACHE_BYTES", parse=size,
                                      doc="Memory for finished images (LRU); 0 turns it off")
    source_cache_bytes: int = setting(64 * 1024**2, "VIPSGATE_SOURCE_CACHE_BYTES", parse=size,
                                      doc="Memory for source bytes (LRU); 0 turns it off")
    cache_max_entry_ratio: float = setting(
        0.125, "VIPSGATE_CACHE_MAX_ENTRY_RATIO", parse=number(0),
        doc="Entries larger than this share of a cache are not cached")

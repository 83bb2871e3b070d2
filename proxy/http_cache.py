"""HTTP caching semantics: ETag, conditional requests (304), Cache-Control, Vary."""

from __future__ import annotations

import hashlib
import time
from email.utils import parsedate_to_datetime

from .config import Settings
from .sources import Fetched, SourceMeta


def make_etag(key: tuple, fetched: Fetched) -> str:
    """Strong ETag from the result key and the source's validators (or its bytes)."""
    meta = fetched.meta
    if meta.etag or meta.last_modified:
        validator = f"{meta.etag}|{meta.last_modified}"
    else:
        validator = hashlib.blake2b(fetched.data, digest_size=16).hexdigest()
    digest = hashlib.blake2b(repr((key, validator)).encode(), digest_size=16).hexdigest()
    return f'"{digest}"'


def conditional_match(if_none_match: str | None, if_modified_since: str | None, etag: str,
                      last_modified: str | None, settings: Settings) -> bool:
    """RFC 9110 order: If-None-Match decides when present, else If-Modified-Since."""
    if if_none_match is not None:
        if not settings.use_etag:
            return False
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if if_modified_since and settings.use_last_modified and last_modified:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
    return False


def cache_control(settings: Settings, expires: int, meta: SourceMeta) -> str:
    """Cache-Control for a successful answer (exp option, passthrough, TTL)."""
    s = settings
    ttl = s.ttl
    if expires:
        ttl = max(0, min(ttl, int(expires - time.time())))
    elif s.cache_control_passthrough:
        if meta.cache_control:
            return meta.cache_control
        if meta.expires:
            try:
                left = parsedate_to_datetime(meta.expires).timestamp() - time.time()
                return f"max-age={max(0, int(left))}, public"
            except (TypeError, ValueError):
                pass
    if ttl <= 0:
        return "no-cache"
    value = f"max-age={ttl}, public"
    if s.cache_control_immutable:
        value += ", immutable"
    if s.stale_while_revalidate:
        value += f", stale-while-revalidate={s.stale_while_revalidate}"
    return value


def cache_headers(settings: Settings, expires: int, vary: bool, meta: SourceMeta,
                  etag: str) -> dict[str, str]:
    """Validators and caching headers shared by 200 and 304 answers."""
    headers: dict[str, str] = {}
    if settings.use_etag:
        headers["ETag"] = etag
    if settings.use_last_modified and meta.last_modified:
        headers["Last-Modified"] = meta.last_modified
    if vary:
        headers["Vary"] = "Accept"
    headers["Cache-Control"] = cache_control(settings, expires, meta)
    return headers

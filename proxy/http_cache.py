"""HTTP caching semantics (RFC 9110/9111): ETag, conditional requests, Cache-Control, Vary."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, MutableMapping
from email.utils import parsedate_to_datetime

from .config import Settings
from .sources import SourceMeta

_ENTITY_TAG = re.compile(r'(?:W/)?("[^"]*")')


def make_etag(key: tuple[str, ...], meta: SourceMeta, fingerprint: str = "") -> str:
    """Strong ETag from the result key (format class included), the server fingerprint
    and the source's validators (every download has one: the origin's ETag or
    Last-Modified, else a content hash made as the bytes arrived)."""
    validator = f"{meta.etag}|{meta.last_modified}"
    text = repr((tuple(key), fingerprint, validator)).encode()
    return f'"{hashlib.blake2b(text, digest_size=16).hexdigest()}"'


def entity_tags(header: str) -> set[str]:
    """The opaque tags of an If-None-Match value, ``W/`` dropped (weak comparison);
    ``{"*"}`` for the wildcard."""
    if header.strip() == "*":
        return {"*"}
    return set(_ENTITY_TAG.findall(header))


def is_conditional(headers: Mapping[str, str], settings: Settings) -> bool:
    """Whether the request carries a validator this server evaluates."""
    if "If-None-Match" in headers:
        return settings.use_etag
    return "If-Modified-Since" in headers and settings.use_last_modified


def conditional_match(if_none_match: str | None, if_modified_since: str | None, etag: str,
                      last_modified: str | None, settings: Settings) -> bool:
    """True when a GET/HEAD should be answered 304 (RFC 9110 §13.2.2).

    If-None-Match decides when present (weak comparison, ``*`` matches); only
    without it is If-Modified-Since evaluated against Last-Modified.
    """
    if if_none_match is not None:
        if not settings.use_etag:
            return False
        tags = entity_tags(if_none_match)
        return "*" in tags or etag.removeprefix("W/") in tags
    if if_modified_since and settings.use_last_modified and last_modified:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False  # invalid date, or naive vs aware: ignore the header
    return False


def cache_control(settings: Settings, expires: int, meta: SourceMeta) -> str:
    """Cache-Control of a successful answer, imgproxy's order: ``exp`` option caps
    the TTL, else the source's headers (passthrough), else the TTL."""
    s = settings
    ttl = s.ttl
    if expires > 0:
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


def add_vary(headers: MutableMapping[str, str], *names: str) -> None:
    """Merge ``names`` into the Vary header (case-insensitive, no duplicates)."""
    current = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    if "*" in current:
        return
    seen = {v.lower() for v in current}
    current += [n for n in names if n.lower() not in seen]
    if current:
        headers["Vary"] = ", ".join(current)


def cache_headers(settings: Settings, expires: int, vary: bool, meta: SourceMeta,
                  etag: str) -> dict[str, str]:
    """Validators and caching headers, the same on 200 and 304 answers."""
    headers: dict[str, str] = {}
    if settings.use_etag:
        headers["ETag"] = etag
    if settings.use_last_modified and meta.last_modified:
        headers["Last-Modified"] = meta.last_modified
    if vary:
        add_vary(headers, "Accept")
    headers["Cache-Control"] = cache_control(settings, expires, meta)
    return headers

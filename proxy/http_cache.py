"""HTTP caching semantics (RFC 9110/9111): ETag, conditional requests, Cache-Control, Vary.

A result's ETag is ``"<digest>.<origin ETag, base64url>"``: the digest covers the result
key, the server fingerprint, ``IMGPROXY_ETAG_BUSTER`` and the source's validator, so it
differs per format and options; the origin's own ETag rides along, so that a client's
``If-None-Match`` can be forwarded to the origin (``origin_conditions``) after checking
that the tag is one this server made for this very result.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import time
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from .sources import SourceMeta

_ENTITY_TAG = re.compile(r'(?:W/)?("[^"]*")')
MAX_EMBEDDED = 256  # longer origin ETags are not carried in ours (not forwarded then)
CONTENT_HASH = '"b2-'  # vipsgate's own content ETags (``sources.content_etag``): not carried


def _digest(key: tuple[str, ...], fingerprint: str, buster: str, validator: str) -> str:
    text = repr((tuple(key), fingerprint, buster, validator)).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def make_etag(key: tuple[str, ...], meta: SourceMeta, fingerprint: str = "",
              buster: str = "") -> str:
    """Strong ETag from the result key (format class included), the server fingerprint,
    the ETag buster and the source's validator (every download has one: the origin's
    ETag or Last-Modified, else a content hash made as the bytes arrived)."""
    validator = meta.etag or f"lm|{meta.last_modified}"
    digest = _digest(key, fingerprint, buster, validator)
    if meta.etag and len(meta.etag) <= MAX_EMBEDDED and not meta.etag.startswith(CONTENT_HASH):
        carried = base64.urlsafe_b64encode(meta.etag.encode()).rstrip(b"=").decode()
        return f'"{digest}.{carried}"'
    return f'"{digest}"'


def origin_etags(if_none_match: str, key: tuple[str, ...], fingerprint: str = "",
                 buster: str = "") -> list[str]:
    """The origin ETags carried by the tags in ``If-None-Match`` that this server made
    for ``key`` (others, and ``*``, are not the origin's business)."""
    found = []
    for tag in entity_tags(if_none_match) - {"*"}:
        digest, dot, carried = tag.strip('"').partition(".")
        if not dot:
            continue
        try:
            etag = base64.urlsafe_b64decode(carried + "=" * (-len(carried) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if _digest(key, fingerprint, buster, etag) == digest:
            found.append(etag)
    return sorted(found)


def origin_conditions(headers: Mapping[str, str], key: tuple[str, ...], settings: Any,
                      fingerprint: str = "") -> dict[str, str]:
    """The validators to forward to the origin for a conditional request, as imgproxy
    does: the origin ETags inside our tags, and ``If-Modified-Since`` as given (not at
    or before ``IMGPROXY_LAST_MODIFIED_BUSTER``); nothing when a ``If-None-Match`` names
    none of ours (RFC 9110: ``If-Modified-Since`` is then ignored)."""
    s, forward = settings, {}
    if "If-None-Match" in headers:
        if not s.use_etag:
            return {}
        etags = origin_etags(headers["If-None-Match"], key, fingerprint, s.etag_buster)
        if not etags:
            return {}
        forward["If-None-Match"] = ", ".join(etags)
    since = headers.get("If-Modified-Since")
    if since and s.use_last_modified:
        buster = _moment(s.last_modified_buster)
        try:
            after = buster is None or parsedate_to_datetime(since) > buster
        except (TypeError, ValueError):
            after = False
        if after:
            forward["If-Modified-Since"] = since
    return forward


@functools.lru_cache(maxsize=4)
def _moment(rfc3339: str) -> datetime | None:
    return datetime.fromisoformat(rfc3339.replace("z", "Z")) if rfc3339 else None


def sent_last_modified(value: str | None, settings: Any) -> str | None:
    """``Last-Modified`` as sent: the origin's, or ``IMGPROXY_LAST_MODIFIED_BUSTER`` when
    the origin's is older (an invalid origin date is not passed on then)."""
    buster = _moment(settings.last_modified_buster)
    if value is None or buster is None:
        return value
    try:
        if parsedate_to_datetime(value) >= buster:
            return value
    except (TypeError, ValueError):
        return None
    return format_datetime(buster.astimezone(UTC), usegmt=True)


def entity_tags(header: str) -> set[str]:
    """The opaque tags of an If-None-Match value, ``W/`` dropped (weak comparison);
    ``{"*"}`` for the wildcard."""
    if header.strip() == "*":
        return {"*"}
    return set(_ENTITY_TAG.findall(header))


def is_conditional(headers: Mapping[str, str], settings: Any) -> bool:
    """Whether the request carries a validator this server evaluates."""
    if "If-None-Match" in headers:
        return settings.use_etag
    return "If-Modified-Since" in headers and settings.use_last_modified


def conditional_match(if_none_match: str | None, if_modified_since: str | None, etag: str,
                      last_modified: str | None, settings: Any) -> bool:
    """True when a GET/HEAD should be answered 304 (RFC 9110 §13.2.2).

    If-None-Match decides when present (weak comparison, ``*`` matches); only
    without it is If-Modified-Since evaluated against Last-Modified (as sent: busted).
    """
    last_modified = sent_last_modified(last_modified, settings)
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


def cache_control(settings: Any, expires: int, meta: SourceMeta, ttl: int | None = None) -> str:
    """Cache-Control of a successful answer, imgproxy's order: ``exp`` option caps
    the TTL, else the source's headers (passthrough; an ``Expires`` already past
    counts as none), else the TTL (``ttl``: another one, e.g. the fallback image's)."""
    s = settings
    ttl = s.ttl if ttl is None else ttl
    if expires > 0:
        ttl = max(0, min(ttl, int(expires - time.time())))
    elif s.cache_control_passthrough:
        if meta.cache_control:
            return meta.cache_control
        if meta.expires:
            try:
                left = int(parsedate_to_datetime(meta.expires).timestamp() - time.time())
            except (TypeError, ValueError):
                left = 0
            if left > 0:
                return f"max-age={left}, public"
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


CLIENT_HINTS = ("Sec-CH-DPR", "DPR", "Sec-CH-Width", "Width")


def cache_headers(settings: Any, expires: int, vary: bool, meta: SourceMeta,
                  etag: str) -> dict[str, str]:
    """Validators and caching headers, the same on 200 and 304 answers."""
    headers: dict[str, str] = {}
    if settings.use_etag:
        headers["ETag"] = etag
    modified = sent_last_modified(meta.last_modified, settings)
    if settings.use_last_modified and modified:
        headers["Last-Modified"] = modified
    if vary:
        add_vary(headers, "Accept")
    if settings.enable_client_hints:
        add_vary(headers, *CLIENT_HINTS)
        headers["Accept-CH"] = ", ".join(CLIENT_HINTS)
    headers["Cache-Control"] = cache_control(settings, expires, meta)
    return headers

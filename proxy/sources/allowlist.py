"""``IMGPROXY_ALLOWED_SOURCES``: prefix patterns matched against the URL actually fetched.

Each pattern is a prefix anchored at the start; ``*`` matches within one part of the
URL: it never crosses ``/ ? # @ \\``, so a wildcard cannot reach into the query, the
fragment or a userinfo. A pattern that ends inside the host (``http://example.com``)
must end at the host's end (``example.com.evil.net`` does not match).

URLs are matched in the form the source will request: ``http(s)`` as yarl (hence
aiohttp) parses it, host lower-cased and punycoded, path normalised, userinfo dropped
(``http://allowed@127.0.0.1/`` is matched as ``http://127.0.0.1/``); ``local`` with its
percent-decoded path normalised (``..`` resolved); other schemes as given.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote, urlsplit

from yarl import URL

from ..errors import InvalidSource

WILDCARD = r"[^/?#@\\]*"
_HOST_END = r"(?=[:/?#]|$)"


def compile_pattern(pattern: str) -> str:
    """The regex for one pattern (an alternation member); an HTTP(S) pattern's scheme and
    host are lower-cased, as in the canonical URL."""
    scheme, sep, rest = pattern.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        host, slash, path = rest.partition("/")
        pattern = f"{scheme.lower()}://{host.lower()}{slash}{path}"
    regex = "^" + WILDCARD.join(re.escape(piece) for piece in pattern.split("*"))
    if sep and rest and "/" not in rest:
        regex += _HOST_END  # the pattern ends inside the authority: end at the host's end
    return regex


def http_url(url: str | URL) -> URL:
    """``url`` parsed as aiohttp will request it; ``InvalidSource`` when it cannot be."""
    try:
        target = url if isinstance(url, URL) else URL(url)
        if target.raw_host:
            target.raw_host.encode("idna")  # what the resolver does: labels of 1..63 chars
            _ = target.host, str(target)  # decodes punycode (``xn--`` alone fails)
    except ValueError as exc:  # UnicodeError included
        raise InvalidSource(f"Invalid source URL: {exc}") from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise InvalidSource(f"Not an HTTP(S) URL: {str(url)[:200]}")
    return target


def canonical(url: str | URL) -> str:
    """The form of ``url`` that the allow-list is matched against (see the module doc)."""
    try:
        parts = urlsplit(str(url))
    except ValueError as exc:
        raise InvalidSource(f"Invalid source URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        target = http_url(url)
        if target.raw_user is not None or target.raw_password is not None:
            target = target.with_user(None)
        return str(target)
    if scheme == "local":
        path = posixpath.normpath("/" + unquote(parts.path)).lstrip("/")
        return "local:///" + ("" if path == "." else path)
    return str(url)


class AllowList:
    """Compiled ``IMGPROXY_ALLOWED_SOURCES``; ``allows(url)`` on the canonical form."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.regex = re.compile("|".join(f"(?:{compile_pattern(p)})" for p in patterns))

    @classmethod
    def from_patterns(cls, patterns: tuple[str, ...]) -> AllowList | None:
        """``None`` when there are no patterns (every source is allowed)."""
        return cls(patterns) if patterns else None

    def allows(self, url: str | URL) -> bool:
        """Raises ``InvalidSource`` for a URL that cannot be parsed."""
        return self.regex.match(canonical(url)) is not None

"""Stage 1, verify: who may ask (CDN secret, client network), and is the URL signed.

``Verifier.verify(raw_path)`` checks the signature and parses the path once per
signed path (memoised: a hot URL costs a dict lookup, and the next stage keeps its
own result on the same object); the URL's ``exp`` is checked on every request,
since it is time-bound.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import time
from collections.abc import Mapping
from typing import Any

from .errors import ExpiredURL, Forbidden
from .paths import ParsedPath, ParserConfig, parse_path, split_signature
from .replacements import compile_rules
from .signing import Signer

MEMO_SIZE = 4096  # hot URLs; each entry is a parsed, resolved URL (~2 KB) and its memos


class VerifiedUrl:
    """A URL whose signature verified, as parsed; ``resolved`` is the next stage's."""

    __slots__ = ("parsed", "resolved")

    def __init__(self, parsed: ParsedPath) -> None:
        self.parsed = parsed
        self.resolved: Any = None  # set once by ``resolve.Resolver``


class Verifier:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.signer = Signer.from_hex(settings.keys, settings.salts, settings.signature_size,
                                      settings.trusted_signatures)
        self.parser = parser_config(settings)
        self._secret = f"Bearer {settings.secret}".encode() if settings.secret else b""
        self._networks = settings.allowed_client_cidrs
        # failures raise and are not kept; the memo holds no reference to this object's
        # bound methods (no cycle through it)
        self._verified = functools.lru_cache(maxsize=MEMO_SIZE)(functools.partial(
            _verify, self.signer, self.parser, settings.path_prefix))

    def check_client(self, headers: Mapping[str, str], remote: str | None) -> None:
        """``IMGPROXY_SECRET`` (constant-time) and ``VIPSGATE_ALLOWED_CLIENT_CIDRS``."""
        if self._secret:
            given = headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, self._secret):
                raise Forbidden("Invalid or missing secret")
        if self._networks:
            try:
                address = ipaddress.ip_address(remote or "")
            except ValueError:
                raise Forbidden("Unknown client address") from None
            if not any(address in net for net in self._networks):
                raise Forbidden(f"Client {address} is not allowed")

    def verify(self, raw_path: str) -> VerifiedUrl:
        """The verified, parsed URL of a request path; ``exp`` checked now."""
        url = self._verified(raw_path.split("?", 1)[0])
        expires = url.parsed.options.expires
        if expires > 0 and expires < time.time():
            raise ExpiredURL("Expired URL")
        return url


def parser_config(settings: Any) -> ParserConfig:
    return ParserConfig(
        presets=settings.preset_map(), only_presets=settings.only_presets,
        allowed_options=frozenset(settings.allowed_processing_options) or None,
        allow_security_options=settings.allow_security_options,
        base_url=settings.base_url,
        base64_url_includes_filename=settings.base64_url_includes_filename,
        separator=settings.arguments_separator,
        replacements=compile_rules(settings.url_replacements))


def _verify(signer: Signer, parser: ParserConfig, prefix: str, path: str) -> VerifiedUrl:
    signature, signed = split_signature(path, prefix)
    if not signer.enabled and ":" in signature:
        raise Forbidden("The signature appears to be a processing option; "
                        "is the signature segment missing?")
    if not signer.verify(signature, signed):
        raise Forbidden("Invalid signature")
    return VerifiedUrl(parse_path(signed, parser))

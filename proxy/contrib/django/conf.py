"""The ``UrlBuilder`` configured by Django settings (``VIPSGATE``) or the environment."""

from __future__ import annotations

import os
from functools import lru_cache

from django.conf import settings

from ...urlbuilder import UrlBuilder

_ENV = {"BASE_URL": "VIPSGATE_BASE_URL", "KEY": "IMGPROXY_KEY", "SALT": "IMGPROXY_SALT",
        "SIGNATURE_SIZE": "IMGPROXY_SIGNATURE_SIZE", "ENCODE": "VIPSGATE_URL_ENCODING"}


def get_builder() -> UrlBuilder:
    """The builder for the current settings (``settings.VIPSGATE``, then the environment)."""
    configured = getattr(settings, "VIPSGATE", None) or {}
    values = tuple(configured.get(name) or os.environ.get(env) or None
                   for name, env in _ENV.items())
    return _builder(*values)


@lru_cache(maxsize=8)
def _builder(base_url: str | None, key: str | None, salt: str | None, size: str | int | None,
             encode: str | None) -> UrlBuilder:
    return UrlBuilder(base_url or "", key, salt, int(size) if size else None, encode or "base64")

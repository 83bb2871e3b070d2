"""The ``UrlBuilder`` configured by Django settings (``VIPSGATE``) or the environment."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ...errors import BuilderConfigError
from ...urlbuilder import ENV_NAMES, UrlBuilder

#: ``VIPSGATE`` keys -> ``UrlBuilder`` arguments (each falls back to ``ENV_NAMES``)
KEYS = {"BASE_URL": "base_url", "KEY": "key", "SALT": "salt",
        "SIGNATURE_SIZE": "signature_size", "ENCODE": "encode",
        "MEDIA_BASE_URL": "media_base_url", "INSECURE": "insecure"}


def configured() -> dict[str, tuple[Any, str]]:
    """``UrlBuilder`` argument -> (value, the setting it came from), for the arguments set in
    ``settings.VIPSGATE`` or, failing that, in the environment."""
    given = getattr(settings, "VIPSGATE", None) or {}
    found: dict[str, tuple[Any, str]] = {}
    for name, option in KEYS.items():
        if given.get(name) not in (None, ""):
            found[option] = (given[name], f'VIPSGATE["{name}"]')
        elif os.environ.get(ENV_NAMES[option]):
            found[option] = (os.environ[ENV_NAMES[option]], ENV_NAMES[option])
    return found


def get_builder() -> UrlBuilder:
    """The builder for the current settings; ``ImproperlyConfigured`` naming the setting
    when one is invalid (``manage.py check`` reports the same at start-up)."""
    values = configured()
    args = tuple(values.get(option, (None, ""))[0] for option in KEYS.values())
    try:
        return _builder(*args)
    except BuilderConfigError as exc:
        where = values.get(exc.option, (None, _missing(exc.option)))[1]
        raise ImproperlyConfigured(f"vipsgate: {where}: {exc.message}") from None


def _missing(option: str) -> str:
    name = next(name for name, value in KEYS.items() if value == option)
    return f'VIPSGATE["{name}"] (or {ENV_NAMES[option]})'


@lru_cache(maxsize=8)
def _builder(base_url: str | None, key: str | None, salt: str | None, size: str | int | None,
             encode: str | None, media_base_url: str | None, insecure: Any) -> UrlBuilder:
    if isinstance(insecure, str):
        insecure = insecure.strip().lower() in ("1", "t", "true", "yes", "on", "y")
    return UrlBuilder(base_url or "", key, salt, size, encode or "base64",  # type: ignore[arg-type]
                      insecure=bool(insecure), media_base_url=media_base_url or "")

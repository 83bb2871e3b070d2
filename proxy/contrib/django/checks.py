"""Django system checks for the ``VIPSGATE`` settings: run by ``manage.py check``,
``runserver`` and ``migrate``, so a missing or malformed key stops the project at start-up
instead of failing while a template renders."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .conf import KEYS, configured, get_builder


@checks.register()
def check_vipsgate_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    given = getattr(settings, "VIPSGATE", None)
    if given is not None and not isinstance(given, dict):
        return [checks.Error("VIPSGATE must be a dict", id="vipsgate.E001",
                             hint='VIPSGATE = {"BASE_URL": ..., "KEY": ..., "SALT": ...}')]
    found: list[checks.CheckMessage] = []
    for name in sorted(set(given or {}) - KEYS.keys()):
        close = difflib.get_close_matches(name, list(KEYS), n=1)
        found.append(checks.Warning(
            f'VIPSGATE["{name}"] is not a vipsgate setting and is ignored', id="vipsgate.W001",
            hint=f"did you mean {close[0]}?" if close else f"settings: {', '.join(KEYS)}"))
    try:
        get_builder()
    except ImproperlyConfigured as exc:
        found.append(checks.Error(str(exc).removeprefix("vipsgate: "), id="vipsgate.E002",
                                  hint="IMGPROXY_KEY and IMGPROXY_SALT are hex strings, the "
                                       "same as the server's"))
    media_url = str(getattr(settings, "MEDIA_URL", "") or "")
    if media_url.startswith("/") and not media_url.startswith("//") \
            and "media_base_url" not in configured():
        found.append(checks.Warning(
            f"MEDIA_URL ({media_url}) is relative, so ImageField sources reach vipsgate as "
            "relative URLs it cannot fetch", id="vipsgate.W002",
            hint='set VIPSGATE["MEDIA_BASE_URL"] to the site that serves them, e.g. '
                 '"https://www.example.com" (only relative sources get it)'))
    return found

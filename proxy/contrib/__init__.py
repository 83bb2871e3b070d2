"""Optional framework integrations for ``vipsgate.urlbuilder`` (Django, Jinja2).

Shared helpers only; standard library. The framework modules import their
framework, so install the matching extra (``vipsgate[django]``/``[jinja2]``).
"""

from __future__ import annotations

from typing import Any

from ..urlbuilder import ImageURL, UrlBuilder

__all__ = ["image_url", "parse_size", "resolution", "resolve_source"]


def parse_size(size: Any) -> tuple[int, int]:
    """``"300x200"``, ``"300x"``, ``"x200"``, ``"300"``, ``300`` or ``(300, 200)`` -> (w, h)."""
    if size in (None, ""):
        return 0, 0
    if isinstance(size, (tuple, list)):
        width, height = size
        return int(width or 0), int(height or 0)
    if isinstance(size, int):
        return size, 0
    width, _, height = str(size).strip().lower().partition("x")
    try:
        return int(width or 0), int(height or 0)
    except ValueError:
        raise ValueError(f"invalid size {size!r} (expected WIDTHxHEIGHT)") from None


def resolve_source(source: Any) -> tuple[str, tuple[int, int] | None]:
    """The source URL and, when known, its size.

    A string is used as is. An object with ``.url`` (a Django ``FieldFile``) gives
    its URL; with ``.width``/``.height`` (``ImageFieldFile``) also its size.
    """
    if isinstance(source, str):
        return source, None
    url = getattr(source, "url", None)
    if not isinstance(url, str) or not url:
        raise ValueError(f"no image URL in {source!r}")
    try:
        width, height = source.width, source.height
    except (AttributeError, OSError, ValueError):
        return url, None
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return url, (width, height)
    return url, None


def image_url(builder: UrlBuilder, source: Any, size: Any = None, **options: Any) -> ImageURL:
    """``builder.url`` for template values: size as ``"300x200"``, source objects allowed."""
    url, known = resolve_source(source)
    width, height = parse_size(size)
    if options.get("source_size") not in (None, ""):
        known = parse_size(options["source_size"])
    options["source_size"] = known if known and all(known) else None
    return builder.url(url, width, height, **options)


def resolution(image: Any, dpr: Any) -> str:
    """The URL of ``image`` (an ``ImageURL``) at ``dpr`` (``"2x"``, ``2``, ``1.5``)."""
    return image.with_dpr(dpr).url

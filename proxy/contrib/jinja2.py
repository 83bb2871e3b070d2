"""Jinja2 integration: ``image_url`` global/filter, ``resolution``/``srcset`` filters, ``picture``.

``Environment(extensions=["vipsgate.contrib.jinja2.VipsgateExtension"])`` configures a
builder from the environment (``VIPSGATE_BASE_URL``, ``IMGPROXY_KEY``, ...);
``install(env, UrlBuilder(...))`` sets one explicitly. In templates::

    {% set im = image_url("s3://b/cat.jpg", "300x200", crop="center", source_size=(1600, 1200)) %}
    <img src="{{ im }}" srcset="{{ im|resolution('2x') }} 2x" width="{{ im.width }}">
    <img src="{{ 's3://b/cat.jpg'|image_url('300x') }}">
    {{ picture("s3://b/cat.jpg", "300x200", alt="A cat", crop="smart") }}

An empty source (an ``ImageField`` without a file) gives ``None`` (test it with
``{% if im %}``), and ``picture`` and the filters print nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension
from markupsafe import Markup

from ..urlbuilder import ImageURL, UrlBuilder
from . import image_url, parse_size, resolve_source

__all__ = ["VipsgateExtension", "install"]


def install(env: Environment, builder: UrlBuilder | None = None) -> Environment:
    """Register the globals and filters on ``env`` (builder from the environment by default)."""
    chosen = builder or UrlBuilder.from_env()

    def _image_url(source: Any, size: Any = None, **options: Any) -> ImageURL | None:
        return image_url(chosen, source, size, **options) if source else None

    def _picture(source: Any, size: Any = None, **options: Any) -> Markup:
        if not source:
            return Markup("")
        url, known = resolve_source(source)
        if options.get("source_size"):
            known = parse_size(options["source_size"])
        options["source_size"] = known if known and all(known) else None
        return Markup(chosen.picture(url, *parse_size(size), **options))  # escaped inside

    env.globals.update(image_url=_image_url, picture=_picture)
    env.filters.update(image_url=_image_url, resolution=_resolution, srcset=_srcset)
    return env


def _resolution(image: ImageURL | None, dpr: Any) -> str:
    return image.with_dpr(dpr).url if image else ""


def _srcset(image: ImageURL | None, densities: Iterable[float] = (1, 2, 3)) -> str:
    return image.srcset(densities) if image else ""


class VipsgateExtension(Extension):
    """``extensions=["vipsgate.contrib.jinja2.VipsgateExtension"]``: ``install`` from the env."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        install(environment)

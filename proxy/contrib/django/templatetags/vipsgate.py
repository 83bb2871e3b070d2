"""``{% load vipsgate %}``: signed image URLs in Django templates.

``{% image_url obj.photo "300x200" crop="center" as im %}
  <img src="{{ im.url }}" srcset="{{ im|resolution:"2x" }} 2x" width="{{ im.width }}"
       height="{{ im.height }}">
{% endimage_url %}``

Without ``as`` the tag prints the URL: ``{% image_url "s3://b/cat.jpg" "300x" %}``.
``{% picture obj.photo "300x200" alt=obj.title crop="smart" %}`` prints a ``<picture>``.
Keyword arguments are those of ``UrlBuilder.url``; the source may be a URL or a
``FieldFile`` (an ``ImageField`` also gives its size, so ``im.width``/``im.height`` work).
An empty source (an ``ImageField`` without a file) renders no ``<img>``: the block is
skipped, or its optional ``{% empty %}`` part is rendered instead; the inline form and
``{% picture %}`` print nothing.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.base import FilterExpression, Parser, Token, kwarg_re
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from ....urlbuilder import ImageURL
from ... import image_url as _image_url
from ... import parse_size, resolve_source
from ..conf import get_builder

register = template.Library()


class ImageURLNode(template.Node):
    def __init__(self, args: list[FilterExpression], kwargs: dict[str, FilterExpression],
                 var: str | None, nodelist: template.NodeList | None,
                 nodelist_empty: template.NodeList | None = None) -> None:
        self.args, self.kwargs, self.var, self.nodelist = args, kwargs, var, nodelist
        self.nodelist_empty = nodelist_empty

    def render(self, context: template.Context) -> str:
        source, *size = (arg.resolve(context) for arg in self.args)
        kwargs = {name: value.resolve(context) for name, value in self.kwargs.items()}
        image = _image_url(get_builder(), source, *size, **kwargs) if source else None
        if self.nodelist is None:
            return conditional_escape(image.url) if image else ""
        if image is None:  # no file: no <img src=""> and no broken srcset
            return self.nodelist_empty.render(context) if self.nodelist_empty else ""
        with context.push(**{self.var: image}):  # type: ignore[arg-type]
            return self.nodelist.render(context)


@register.tag("image_url")
def do_image_url(parser: Parser, token: Token) -> ImageURLNode:
    """``{% image_url source ["WxH"] [option=value ...] [as name %}...[{% empty %}...]
    {% endimage_url] %}``."""
    bits = token.split_contents()
    tag, bits = bits[0], bits[1:]
    var = None
    if len(bits) >= 2 and bits[-2] == "as":
        var, bits = bits[-1], bits[:-2]
    args: list[FilterExpression] = []
    kwargs: dict[str, FilterExpression] = {}
    for bit in bits:
        match = kwarg_re.match(bit)
        if match and match.group(1):
            kwargs[match.group(1)] = parser.compile_filter(match.group(2))
        elif kwargs:
            raise template.TemplateSyntaxError(f"{tag}: positional argument after keywords")
        else:
            args.append(parser.compile_filter(bit))
    if not 1 <= len(args) <= 2:
        raise template.TemplateSyntaxError(f"{tag} takes a source and an optional size")
    nodelist = nodelist_empty = None
    if var is not None:
        nodelist = parser.parse(("empty", f"end{tag}"))
        if parser.next_token().contents == "empty":
            nodelist_empty = parser.parse((f"end{tag}",))
            parser.delete_first_token()
    return ImageURLNode(args, kwargs, var, nodelist, nodelist_empty)


@register.filter
def resolution(image: Any, dpr: Any) -> str:
    """``{{ im|resolution:"2x" }}``: the URL of ``im`` at that device pixel ratio."""
    if not isinstance(image, ImageURL):
        return ""
    try:
        return image.with_dpr(dpr).url
    except ValueError:
        return ""


@register.simple_tag
def picture(source: Any, size: Any = None, **options: Any) -> SafeString:
    """``{% picture src "300x200" alt="..." formats="avif,webp,jpeg" %}``: ``<picture>`` HTML."""
    if not source:
        return mark_safe("")
    url, known = resolve_source(source)
    if isinstance(options.get("formats"), str):
        options["formats"] = [f for f in options["formats"].split(",") if f]
    if isinstance(options.get("densities"), str):
        options["densities"] = [float(d) for d in options["densities"].split(",") if d]
    if options.get("source_size"):
        known = parse_size(options["source_size"])
    options["source_size"] = known if known and all(known) else None
    width, height = parse_size(size)
    return mark_safe(get_builder().picture(url, width, height, **options))  # escaped inside

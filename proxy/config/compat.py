"""imgproxy behaviours a migration relies on: URL spellings, validators, client hints,
the fallback image, colour handling. Every name is imgproxy's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .. import formats
from .values import boolean, choice, format_names, integer, setting


def separator(text: str) -> str:
    if not text:
        raise ValueError("cannot be empty")
    return text


def url_replacements(text: str) -> tuple[tuple[str, str], ...]:
    """``pattern=replacement`` pairs separated by ``;`` (``*`` in a pattern matches within
    one path segment; ``${1}`` in a replacement is what the first ``*`` matched)."""
    pairs = []
    for item in text.split(";"):
        pattern, eq, replacement = item.partition("=")
        if not eq:
            raise ValueError(f"expected pattern=replacement pairs separated by ';', got {item!r}")
        pairs.append((pattern, replacement))
    return tuple(pairs)


def rfc3339(text: str) -> str:
    """A moment in RFC 3339 (``2024-05-01T00:00:00Z``), kept as given."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError("expected an RFC 3339 time such as 2024-05-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("the time needs a zone (Z or +01:00)")
    return text.strip()


def http_code(text: str) -> int:
    code = int(text)
    if code != 0 and not 100 <= code <= 599:
        raise ValueError("expected 0 or an HTTP status (100..599)")
    return code


def saveable_formats(text: str) -> tuple[str, ...]:
    names = format_names(text)
    unsaveable = [name for name in names if name not in formats.SAVEABLE]
    if unsaveable or not names:
        raise ValueError(f"formats vipsgate cannot write: {', '.join(unsaveable) or 'none'}")
    return names


def path(text: str) -> str:
    if text and not re.fullmatch(r"/[A-Za-z0-9._~/-]*", text):
        raise ValueError("expected a path such as /healthz")
    return text


@dataclass(frozen=True)
class CompatSettings:
    # imgproxy compatibility
    arguments_separator: str = setting(
        ":", "IMGPROXY_ARGUMENTS_SEPARATOR", parse=separator,
        doc="Separator of option arguments in URLs (`rs:fit:300:200`)")
    presets_separator: str = setting(",", "IMGPROXY_PRESETS_SEPARATOR", parse=separator,
                                     doc="Separator of the presets in `IMGPROXY_PRESETS`")
    url_replacements: tuple[tuple[str, str], ...] = setting(
        (), "IMGPROXY_URL_REPLACEMENTS", parse=url_replacements,
        doc="Source URL prefixes rewritten before use: `pattern=replacement;...`, `*` "
            "within a segment, `${1}` what it matched")
    source_url_query_separator: str = setting(
        "?", "IMGPROXY_SOURCE_URL_QUERY_SEPARATOR",
        doc="What starts the query (S3 version) of `s3://` and `local:///` sources; empty: "
            "none, `?` is part of the key")
    enable_client_hints: bool = setting(
        False, "IMGPROXY_ENABLE_CLIENT_HINTS", parse=boolean,
        doc="`DPR`/`Sec-CH-DPR` and `Width`/`Sec-CH-Width` set the default `dpr` and `width`")
    preferred_formats: tuple[str, ...] = setting(
        ("jpeg", "png", "gif"), "IMGPROXY_PREFERRED_FORMATS", parse=saveable_formats,
        doc="Without an asked or negotiated format: the source's format when listed, else "
            "the first listed one that holds the image (alpha, animation)")
    etag_buster: str = setting("", "IMGPROXY_ETAG_BUSTER",
                               doc="Change it to change every ETag (and refuse old ones)")
    last_modified_buster: str = setting(
        "", "IMGPROXY_LAST_MODIFIED_BUSTER", parse=rfc3339,
        doc="RFC 3339 time: older `Last-Modified` values are sent as this one")
    set_canonical_header: bool = setting(
        False, "IMGPROXY_SET_CANONICAL_HEADER", parse=boolean,
        doc="`Link: <source>; rel=\"canonical\"` for http(s) sources")
    fallback_image_data: str = setting(
        "", "IMGPROXY_FALLBACK_IMAGE_DATA",
        doc="Image (base64) served, processed as asked, when the source cannot be had")
    fallback_image_path: str = setting("", "IMGPROXY_FALLBACK_IMAGE_PATH",
                                       doc="Fallback image file")
    fallback_image_url: str = setting("", "IMGPROXY_FALLBACK_IMAGE_URL",
                                      doc="Fallback image fetched once at start-up")
    fallback_image_http_code: int = setting(
        200, "IMGPROXY_FALLBACK_IMAGE_HTTP_CODE", parse=http_code,
        doc="Status of a fallback answer; 0: the source error's status")
    fallback_image_ttl: int = setting(
        0, "IMGPROXY_FALLBACK_IMAGE_TTL", parse=integer(0),
        doc="`max-age` of a fallback answer; 0: as other answers")
    use_linear_colorspace: bool = setting(
        False, "IMGPROXY_USE_LINEAR_COLORSPACE", parse=boolean,
        doc="Resize in linear light (scRGB): truer, slower")
    disable_shrink_on_load: bool = setting(
        False, "IMGPROXY_DISABLE_SHRINK_ON_LOAD", parse=boolean,
        doc="Decode JPEG, WebP and SVG at full size, then resize (with linear colour: "
            "all of the resize in linear light)")
    png_quantize: bool = setting(False, "IMGPROXY_PNG_QUANTIZE", parse=boolean,
                                 doc="Write PNG as a palette image (smaller, lossy)")
    png_quantization_colors: int = setting(
        256, "IMGPROXY_PNG_QUANTIZATION_COLORS", parse=integer(2, 256),
        doc="Palette size with `IMGPROXY_PNG_QUANTIZE` (2..256)")
    webp_preset: str = setting(
        "default", "IMGPROXY_WEBP_PRESET",
        parse=choice("default", "photo", "picture", "drawing", "icon", "text"),
        doc="WebP encoder hint: `default`, `photo`, `picture`, `drawing`, `icon`, `text`")
    health_check_path: str = setting("", "IMGPROXY_HEALTH_CHECK_PATH", parse=path,
                                     doc="Another path answering as `/health`")

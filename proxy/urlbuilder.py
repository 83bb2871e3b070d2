"""Signed vipsgate/imgproxy URLs for backend code: ``UrlBuilder``, ``srcset``, ``<picture>``.

Standard library only (it imports ``vipsgate.options``, ``vipsgate.signing`` and
``vipsgate.geometry``, which are stdlib-only too), so a backend can install or
vendor it without libvips or aiohttp. There is one grammar: the builder makes a
``ProcessingOptions`` and formats it with ``options.build_path``, the function
the server's parser is tested against, then checks that the path parses back::

    from vipsgate.urlbuilder import UrlBuilder

    images = UrlBuilder("https://img.example.com", key="<hex>", salt="<hex>")
    im = images.url("s3://bucket/cat.jpg", 300, 200, crop="center", format="webp",
                    source_size=(1600, 1200))
    im.url, im.width, im.height   # -> 'https://img.example.com/<sig>/rs:fill:300:200/...', 300, 200
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from .errors import BuilderConfigError, ProxyError
from .formats import canonical, mime_type
from .geometry import plan, result_size
from .options import Crop, Extend, Gravity, ProcessingOptions, Trim, Watermark
from .paths import ParserConfig, build_path, normalize_path, parse_path
from .signing import sign

__all__ = ["ImageURL", "UrlBuilder", "expected_size", "to_gravity"]



def _gravity_words() -> dict[str, str]:
    """"top-left", "north_east", "ne", "br", "center", "smart"... -> imgproxy gravity names."""
    vertical = {"no": ("north", "top"), "so": ("south", "bottom")}
    horizontal = {"ea": ("east", "right"), "we": ("west", "left")}
    words = {"center": "ce", "centre": "ce", "middle": "ce", "smart": "sm", "focus": "fp",
             "ne": "noea", "nw": "nowe", "se": "soea", "sw": "sowe",
             "tr": "noea", "tl": "nowe", "br": "soea", "bl": "sowe"}
    for short, names in (*vertical.items(), *horizontal.items()):
        words.update(dict.fromkeys(names, short))
    for v, v_names in vertical.items():
        for h, h_names in horizontal.items():
            words.update({f"{a}{sep}{b}": v + h for a in v_names for b in h_names
                          for sep in ("", "_", "-", " ")})
    return words


_GRAVITY_WORDS = _gravity_words()
_RESIZING_WORDS = {"cover": "fill", "contain": "fit", "stretch": "force", "fill_down": "fill-down"}
_FIELD_TYPES = {f.name: str(f.type) for f in fields(ProcessingOptions)}
#: characters a URL path carries unchanged; anything else (a raw cachebuster) is refused
_NOT_IN_PATH = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]")
_PARSER = ParserConfig(allow_security_options=True)  # the server decides
_TRUE_WORDS = frozenset({"1", "t", "true", "yes", "on", "y"})
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def to_gravity(value: Any) -> Gravity:
    """A ``Gravity`` from a friendly value.

    Accepts a ``Gravity``; imgproxy names (``"ce"``, ``"noea"``, ``"sm"``); words
    (``"center"``, ``"top-left"``, ``"north_east"``, ``"smart"``); ``"fp:0.5:0.3"``;
    and tuples ``("fp", x, y)`` or ``("no", x_offset, y_offset)``.
    """
    if isinstance(value, Gravity):
        return value
    if isinstance(value, str):
        value = value.split(":")
    if not isinstance(value, (tuple, list)) or not value:
        raise ValueError(f"invalid gravity: {value!r}")
    name = str(value[0]).strip().lower()
    kind = _GRAVITY_WORDS.get(name, name)
    if len(value) > 3:
        raise ValueError(f"invalid gravity: {value!r}")
    x, y = (float(v) if v not in ("", None) else 0.0 for v in (*value[1:], 0, 0)[:2])
    return Gravity(kind, x, y)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    return bool(value)


def _to_color(value: Any) -> tuple[int, int, int]:
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 3:
            text = "".join(c * 2 for c in text)
        if len(text) != 6:
            raise ValueError(f"invalid colour: {value!r}")
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    r, g, b = (int(c) for c in value)
    return (r, g, b)


def _to_extend(value: Any) -> Extend:
    if isinstance(value, Extend):
        return value
    if isinstance(value, (bool, int)) or (isinstance(value, str) and ":" not in value
                                         and value.lower() in _TRUE_WORDS | {"0", "f", "false"}):
        return Extend(_to_bool(value))
    return Extend(True, to_gravity(value))  # a gravity: extend towards it


def _to_padding(value: Any) -> tuple[int, int, int, int]:
    if isinstance(value, (int, str)):
        value = [int(p) for p in str(value).split(":")]
    values = [int(p) for p in value]
    if not 1 <= len(values) <= 4:
        raise ValueError(f"invalid padding: {value!r}")
    top = values[0]
    right = values[1] if len(values) > 1 else top
    bottom = values[2] if len(values) > 2 else top
    left = values[3] if len(values) > 3 else right
    return (top, right, bottom, left)


def _to_pair(value: Any, convert: Any) -> tuple[Any, Any]:
    if isinstance(value, (tuple, list)):
        a, b = value
        return convert(a), convert(b)
    return convert(value), convert(value)


def _to_format(value: Any) -> str:
    name = str(value).strip().lower().lstrip(".")
    return canonical(name) or name


def _to_expires(value: Any) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


_CONVERTERS: dict[str, Any] = {
    "resizing_type": lambda v: _RESIZING_WORDS.get(str(v), str(v)),
    "gravity": to_gravity,
    "extend": _to_extend,
    "extend_ar": _to_extend,
    "padding": _to_padding,
    "zoom": lambda v: _to_pair(v, float),
    "flip": lambda v: _to_pair(v, _to_bool) if isinstance(v, (tuple, list))
    else ("h" in str(v), "v" in str(v)),
    "background": lambda v: None if v in (None, "") else _to_color(v),
    "trim": lambda v: v if v is None or isinstance(v, Trim) else Trim(float(v)),
    "watermark": lambda v: v if v is None or isinstance(v, Watermark) else Watermark(float(v)),
    "format": lambda v: None if v in (None, "") else _to_format(v),
    "format_quality": lambda v: tuple(sorted(
        (_to_format(k), int(q)) for k, q in (v.items() if isinstance(v, Mapping) else v))),
    "skip_processing": lambda v: (_to_format(v),) if isinstance(v, str)
    else tuple(_to_format(f) for f in v),
    "expires": _to_expires,
    "cachebuster": str,
}
_BY_TYPE: dict[str, Any] = {"int": int, "float": float, "bool": _to_bool, "str": str}


def _convert(name: str, value: Any) -> Any:
    """One keyword argument -> the ``ProcessingOptions`` field value."""
    if name not in _FIELD_TYPES:
        raise TypeError(f"unknown image option {name!r}")
    if name in _CONVERTERS:
        return _CONVERTERS[name](value)
    if name == "crop":
        return _to_crop_area(value)
    kind = _FIELD_TYPES[name]
    if value is None and kind.endswith("| None"):
        return None
    convert = _BY_TYPE.get(kind.split(" | ")[0])
    return convert(value) if convert else value


def _to_crop_area(value: Any) -> Crop | None:
    if value is None or isinstance(value, Crop):
        return value
    width, height, *gravity = value
    return Crop(float(width), float(height), to_gravity(gravity) if gravity else None)


def _is_gravity_spec(value: Any) -> bool:
    if isinstance(value, Gravity):
        return True
    if isinstance(value, (tuple, list)):
        return bool(value) and isinstance(value[0], str)
    return isinstance(value, str) and value.lower() not in _TRUE_WORDS | {"0", "f", "false"}


def expected_size(options: ProcessingOptions, src_width: int, src_height: int
                  ) -> tuple[int, int]:
    """Output size for a raster source of ``src_width x src_height`` (EXIF rotation applied).

    Server-wide limits the builder does not know (``IMGPROXY_MAX_RESULT_DIMENSION``)
    are not applied, only the ``max_result_dimension`` option.
    """
    if options.raw:
        return src_width, src_height
    if options.rotate % 180:  # geometry works on the image as displayed (rotated)
        src_width, src_height = src_height, src_width
    p = plan(options, src_width, src_height, options.max_result_dimension or 0)
    return result_size(p, src_width, src_height)


@dataclass(frozen=True)
class ImageURL:
    """A built URL. ``str(im)`` is the URL.

    ``width``/``height`` are the expected output size in pixels, known only when the
    builder was given the source size (``None`` otherwise).
    """

    url: str
    width: int | None
    height: int | None
    options: ProcessingOptions
    source: str
    source_size: tuple[int, int] | None = None
    builder: UrlBuilder | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.url

    def with_dpr(self, dpr: float | str) -> ImageURL:
        """The same image for a device pixel ratio (``2``, ``"2x"``, ``1.5``)."""
        if self.builder is None:
            raise ValueError("this ImageURL was not made by a UrlBuilder")
        ratio = float(str(dpr).strip().rstrip("xX"))
        return self.builder.build(replace(self.options, dpr=ratio), self.source,
                                  self.source_size)

    def srcset(self, densities: Iterable[float] = (1, 2, 3)) -> str:
        """``"<url> 1x, <url> 2x, ..."`` for this image at each density."""
        return ", ".join(f"{self.url if d == self.options.dpr else self.with_dpr(d).url} "
                         f"{_num(d)}x" for d in densities)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(float(value))


#: where ``UrlBuilder.from_env`` reads each constructor argument
ENV_NAMES = {"base_url": "VIPSGATE_BASE_URL", "key": "IMGPROXY_KEY", "salt": "IMGPROXY_SALT",
             "signature_size": "IMGPROXY_SIGNATURE_SIZE", "encode": "VIPSGATE_URL_ENCODING",
             "media_base_url": "VIPSGATE_MEDIA_BASE_URL", "insecure": "VIPSGATE_URL_INSECURE"}


class UrlBuilder:
    """Builds signed URLs that vipsgate (or imgproxy) serves.

    ``key``/``salt``: hex strings (as in ``IMGPROXY_KEY``/``IMGPROXY_SALT``; with a
    comma-separated list the first pair signs) or raw bytes. Unsigned URLs
    (``/insecure/...``, for a server with ``VIPSGATE_INSECURE=1``) need ``insecure=True``
    and no key: a missing key or salt is an error, never a silent fallback.
    ``signature_size`` truncates signatures like ``IMGPROXY_SIGNATURE_SIZE``. ``encode`` is
    ``"base64"`` (default) or ``"plain"`` for the source URL part. ``media_base_url``
    (e.g. ``https://www.example.com``) is put in front of relative sources
    (``/media/cat.jpg``) only, so ``s3://`` and ``local:///`` sources keep working.
    Invalid arguments raise ``BuilderConfigError`` (a ``ValueError``) naming the argument.
    """

    def __init__(self, base_url: str = "", key: str | bytes | None = None,
                 salt: str | bytes | None = None, signature_size: int | None = None,
                 encode: str = "base64", *, insecure: bool = False,
                 media_base_url: str = "") -> None:
        if encode not in ("base64", "plain"):
            raise BuilderConfigError("encode", "must be 'base64' or 'plain'")
        try:
            size = 32 if signature_size is None else int(signature_size)
        except (TypeError, ValueError):
            size = 0
        if not 1 <= size <= 32:
            raise BuilderConfigError("signature_size", "must be an integer 1..32")
        if media_base_url and not _ABSOLUTE.match(media_base_url):
            raise BuilderConfigError("media_base_url", "must be an absolute URL such as "
                                     f"https://www.example.com, not {media_base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.media_base_url = media_base_url.rstrip("/")
        self.encode = encode
        self.signature_size = size
        self._key = _secret(key, "key")
        self._salt = _secret(salt, "salt")
        if insecure and (self._key or self._salt):
            raise BuilderConfigError("insecure", "unsigned URLs take no key or salt")
        if not insecure and not (self._key and self._salt):
            raise BuilderConfigError("salt" if self._key else "key", (
                "missing: signed URLs need the server's hex key and salt "
                "(unsigned /insecure/ URLs need insecure=True)"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UrlBuilder:
        """From ``VIPSGATE_BASE_URL``, ``IMGPROXY_KEY``, ``IMGPROXY_SALT``,
        ``IMGPROXY_SIGNATURE_SIZE``, ``VIPSGATE_URL_ENCODING`` (base64|plain),
        ``VIPSGATE_MEDIA_BASE_URL`` and ``VIPSGATE_URL_INSECURE``; an invalid value raises
        ``BuilderConfigError`` naming the variable."""
        env = os.environ if environ is None else environ
        values = {option: env.get(name) or None for option, name in ENV_NAMES.items()}
        try:
            return cls(values["base_url"] or "", values["key"], values["salt"],
                       values["signature_size"],  # type: ignore[arg-type]
                       values["encode"] or "base64",
                       insecure=(values["insecure"] or "").strip().lower() in _TRUE_WORDS,
                       media_base_url=values["media_base_url"] or "")
        except BuilderConfigError as exc:
            raise BuilderConfigError(ENV_NAMES[exc.option], exc.message) from None

    def sign(self, path: str) -> str:
        """The signature segment for ``path`` (``"insecure"`` for an insecure builder)."""
        if not self._key:
            return "insecure"
        return sign(self._key, self._salt, path, self.signature_size)

    def url_for_path(self, path: str) -> str:
        """The full URL for a ready-made path (``/rs:fill:300:200/plain/...``), signed."""
        path = path if path.startswith("/") else "/" + path
        return f"{self.base_url}/{self.sign(path)}{path}"

    def url(self, source: str, width: int = 0, height: int = 0, *,
            resizing_type: str | None = None, gravity: Any = None, enlarge: bool | None = None,
            quality: int | None = None, format: str | None = None, dpr: float | None = None,
            crop: Any = None, source_size: tuple[int, int] | None = None,
            **options: Any) -> ImageURL:
        """A signed URL for ``source`` (``s3://``, ``https://``, ``local:///``, ...).

        ``crop`` is either a gravity (``"center"``, ``"smart"``, ``("fp", .5, .3)``,
        ``True`` for the default), meaning "fill the box and crop towards it", or an
        area ``(width, height[, gravity...])`` / ``Crop`` for imgproxy's ``crop``
        option (cut before resizing). Other keyword arguments are ``ProcessingOptions``
        fields (``blur=2``, ``padding=10``, ``background="#fff"``, ``extend=True``, ...).
        ``source_size=(w, h)`` (after EXIF rotation) lets the result carry the output
        size. Invalid values raise ``ValueError``.
        """
        given = {"resizing_type": resizing_type, "gravity": gravity, "enlarge": enlarge,
                 "quality": quality, "format": format, "dpr": dpr}
        values = {k: v for k, v in given.items() if v is not None}
        if crop is not None and crop is not False and (crop is True or _is_gravity_spec(crop)):
            if gravity is not None and crop is not True:
                raise ValueError("give the crop gravity either as crop= or as gravity=")
            values.setdefault("resizing_type", "fill")
            if crop is not True:
                values["gravity"] = crop
        elif crop is not None and crop is not False:
            values["crop"] = crop
        values.update(options)
        try:
            fields_ = {name: _convert(name, value) for name, value in values.items()}
            built = ProcessingOptions(width=int(width or 0), height=int(height or 0), **fields_)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, TypeError) and "unknown image option" in str(exc):
                raise
            raise ValueError(f"invalid image option: {exc}") from None
        return self.build(built, source, source_size)

    def build(self, options: ProcessingOptions, source: str,
              source_size: tuple[int, int] | None = None) -> ImageURL:
        """Like ``url`` for a ready ``ProcessingOptions``; checks it parses back unchanged."""
        if not source:
            raise ValueError("empty source URL")
        source = self.absolute(source)
        path = build_path(options, source, self.encode)
        try:
            parsed = parse_path(path, _PARSER)
        except ProxyError as exc:
            raise ValueError(f"invalid image options: {exc}") from None
        if (parsed.source != source or _NOT_IN_PATH.search(path)
                or "/" + normalize_path(path[1:]) != path):
            raise ValueError(f"the source or an option cannot be put in a URL path: {path}")
        width = height = None
        if source_size is not None:
            width, height = expected_size(parsed.options, *(int(v) for v in source_size))
        return ImageURL(self.url_for_path(path), width, height, parsed.options, source,
                        tuple(source_size) if source_size else None,  # type: ignore[arg-type]
                        self)

    def absolute(self, source: str) -> str:
        """``source`` with ``media_base_url`` in front when it is relative (``/media/a.jpg``)."""
        if self.media_base_url and source.startswith("/") and not source.startswith("//"):
            return self.media_base_url + source
        return source

    def srcset(self, source: str, width: int = 0, height: int = 0,
               densities: Iterable[float] = (1, 2, 3), **options: Any) -> str:
        """A ``srcset`` value with one ``dpr`` variant per density: ``"<url> 1x, <url> 2x"``."""
        return self.url(source, width, height, **options).srcset(densities)

    def picture(self, source: str, width: int = 0, height: int = 0, *,
                formats: Iterable[str] = ("avif", "webp", "jpeg"), alt: str = "",
                densities: Iterable[float] = (1, 2), loading: str = "lazy",
                attrs: Mapping[str, Any] | None = None, **options: Any) -> str:
        """``<picture>`` HTML: a ``<source>`` per format and an ``<img>`` fallback.

        The last format is the fallback ``<img>`` (``src``, ``srcset``, ``width``,
        ``height`` when ``source_size`` is given, ``alt``, ``loading``,
        ``decoding="async"``; ``attrs`` adds more, e.g. ``{"class": "hero"}``).
        """
        formats, densities = list(formats) or [None], list(densities)  # type: ignore[list-item]
        options.pop("format", None)
        lines = ["<picture>"]
        for fmt in formats[:-1]:
            srcset = self.url(source, width, height, format=fmt, **options).srcset(densities)
            lines.append(f'  <source type="{_attr(mime_type(_to_format(fmt)))}" '
                         f'srcset="{_attr(srcset)}">')
        fallback = self.url(source, width, height, format=formats[-1], **options)
        img: dict[str, Any] = {"src": fallback.url, "srcset": fallback.srcset(densities),
                               "width": fallback.width, "height": fallback.height, "alt": alt,
                               "loading": loading, "decoding": "async", **(attrs or {})}
        body = " ".join(f'{name}="{_attr(value)}"' for name, value in img.items()
                        if value is not None)
        lines += [f"  <img {body}>", "</picture>"]
        return "\n".join(lines)


def _attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _secret(value: str | bytes | None, option: str) -> bytes:
    if not value:
        return b""
    if isinstance(value, bytes):
        return value
    first = value.split(",")[0].strip()
    try:
        return bytes.fromhex(first)
    except ValueError:
        raise BuilderConfigError(option, "must be hex (as IMGPROXY_KEY/IMGPROXY_SALT are), "
                                 f"got {len(first)} characters that are not") from None

"""imgproxy URL grammar: request path -> frozen ``ProcessingOptions`` and back.

Standard library only: the URL builder for backend code (``urlbuilder.py``)
formats options with the same table this module parses them with, so there is
one grammar. Parsing follows imgproxy v4 (see README "URL reference"):

    /{signature}/{option}/{option}.../plain/{percent-encoded source}[@{ext}]
    /{signature}/{option}/{option}.../{base64url source, may be split by /}[.{ext}]

Every malformed path raises ``InvalidURL`` (404), as imgproxy does.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote, unquote

from .errors import Forbidden, InvalidURL

SEP = ":"
RESIZING_TYPES = ("fit", "fill", "fill-down", "force", "auto")
GRAVITY_TYPES = ("ce", "no", "so", "ea", "we", "noea", "nowe", "soea", "sowe", "sm", "fp")
WATERMARK_POSITIONS = ("ce", "no", "so", "ea", "we", "noea", "nowe", "soea", "sowe", "re")
#: every format name imgproxy's URL accepts (output support is checked when processing)
FORMATS = ("jpeg", "png", "webp", "avif", "gif", "ico", "svg", "heic", "bmp", "tiff", "jxl")
FORMAT_ALIASES = {"jpg": "jpeg"}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PLAIN_SEGMENT = re.compile(r"(?:^|/)plain/")  # the ``plain`` segment that starts a source


@dataclass(frozen=True)
class Gravity:
    type: str = "ce"
    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True)
class Extend:
    enabled: bool = False
    gravity: Gravity = Gravity()


@dataclass(frozen=True)
class Crop:
    width: float = 0.0
    height: float = 0.0
    gravity: Gravity | None = None  # None: use the ``gravity`` option


@dataclass(frozen=True)
class Trim:
    threshold: float = 0.0
    color: tuple[int, int, int] | None = None
    equal_hor: bool = False
    equal_ver: bool = False


@dataclass(frozen=True)
class Watermark:
    opacity: float = 0.0
    position: str = "ce"
    x: float = 0.0
    y: float = 0.0
    scale: float = 0.0


@dataclass(frozen=True)
class ProcessingOptions:
    """Everything a URL can ask for. ``None`` means "the server's default"."""

    resizing_type: str = "fit"
    width: int = 0
    height: int = 0
    min_width: int = 0
    min_height: int = 0
    zoom: tuple[float, float] = (1.0, 1.0)
    dpr: float = 1.0
    enlarge: bool = False
    extend: Extend = Extend()
    extend_ar: Extend = Extend()
    gravity: Gravity = Gravity()
    crop: Crop | None = None
    trim: Trim | None = None
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    rotate: int = 0
    flip: tuple[bool, bool] = (False, False)
    background: tuple[int, int, int] | None = None
    blur: float = 0.0
    sharpen: float = 0.0
    pixelate: int = 0
    watermark: Watermark | None = None
    quality: int = 0
    format_quality: tuple[tuple[str, int], ...] = ()
    max_bytes: int = 0
    format: str | None = None
    auto_rotate: bool | None = None
    strip_metadata: bool | None = None
    keep_copyright: bool | None = None
    strip_color_profile: bool | None = None
    enforce_thumbnail: bool | None = None
    preserve_hdr: bool = False
    skip_processing: tuple[str, ...] = ()
    raw: bool = False
    cachebuster: str = ""
    expires: int = 0
    filename: str | None = None
    return_attachment: bool | None = None
    max_src_resolution: float | None = None
    max_src_file_size: int | None = None
    max_animation_frames: int | None = None
    max_animation_frame_resolution: float | None = None
    max_result_dimension: int | None = None


SECURITY_OPTIONS = frozenset({"max_src_resolution", "msr", "max_src_file_size", "msfs",
                              "max_animation_frames", "maf", "max_animation_frame_resolution",
                              "mafr", "max_result_dimension", "mrd"})


@dataclass(frozen=True)
class ParserConfig:
    """What the parser needs from the server's settings."""

    presets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    only_presets: bool = False
    allowed_options: frozenset[str] | None = None
    allow_security_options: bool = False
    base_url: str = ""
    base64_url_includes_filename: bool = False


@dataclass(frozen=True)
class ParsedPath:
    options: ProcessingOptions
    source: str
    used_presets: tuple[str, ...] = ()


# --- argument parsers ----------------------------------------------------------------

def parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool`` truth set; anything else is false (not an error)."""
    return value in _TRUE


def _int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidURL(f"Invalid {name}: {value}") from None
    if number < minimum:
        raise InvalidURL(f"Invalid {name}: {value} (expected >= {minimum})")
    return number


def _float(name: str, value: str, minimum: float = 0.0, strict: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InvalidURL(f"Invalid {name}: {value}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidURL(f"Invalid {name}: {value}")
    if number < minimum or (strict and number <= minimum):
        raise InvalidURL(f"Invalid {name}: {value}")
    return number


def _color(name: str, args: list[str]) -> tuple[int, int, int]:
    if len(args) == 1:
        text = args[0]
        if re.fullmatch(r"[0-9A-Fa-f]{6}", text):
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
        if re.fullmatch(r"[0-9A-Fa-f]{3}", text):
            return tuple(int(c, 16) * 17 for c in text)  # type: ignore[return-value]
    elif len(args) == 3:
        rgb = tuple(_int(name, a) for a in args)
        if all(0 <= c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    raise InvalidURL(f"Invalid {name}: {SEP.join(args)}")


def _max_args(name: str, args: list[str], count: int) -> None:
    if len(args) > count:
        raise InvalidURL(f"Invalid {name} arguments: {SEP.join(args)}")


def _gravity(name: str, args: list[str], allow_sm: bool = True) -> Gravity:
    kind = args[0]
    if kind not in GRAVITY_TYPES or (kind == "sm" and not allow_sm):
        raise InvalidURL(f"Invalid {name}: {kind}")
    if kind == "sm":
        _max_args(name, args, 1)
        return Gravity("sm")
    if kind == "fp":
        if len(args) != 3:
            raise InvalidURL(f"Invalid {name} arguments: {SEP.join(args)}")
        x, y = (_float(name, a) for a in args[1:])
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise InvalidURL(f"Invalid {name}: focus point must be within 0..1")
        return Gravity("fp", x, y)
    _max_args(name, args, 3)
    x = _float(name, args[1], float("-inf")) if len(args) > 1 and args[1] else 0.0
    y = _float(name, args[2], float("-inf")) if len(args) > 2 and args[2] else 0.0
    return Gravity(kind, x, y)


def _extend(name: str, args: list[str]) -> Extend:
    _max_args(name, args, 4)
    enabled = parse_bool(args[0])
    gravity = _gravity(name, args[1:], allow_sm=False) if len(args) > 1 and args[1] else Gravity()
    return Extend(enabled, gravity)


def _format_name(name: str, value: str) -> str:
    value = FORMAT_ALIASES.get(value, value)
    if value not in FORMATS:
        raise InvalidURL(f"Invalid image format in {name}: {value}")
    return value


# --- option table: name -> (apply function, aliases) ----------------------------------

Fields = dict[str, Any]
Apply = Callable[[Fields, list[str]], None]


def _apply_size(f: Fields, args: list[str], name: str = "size") -> None:
    _max_args(name, args, 7)
    if args and args[0]:
        f["width"] = _int("width", args[0])
    if len(args) > 1 and args[1]:
        f["height"] = _int("height", args[1])
    if len(args) > 2 and args[2]:
        f["enlarge"] = parse_bool(args[2])
    if len(args) > 3 and args[3]:
        f["extend"] = _extend("extend", args[3:])


def _apply_resize(f: Fields, args: list[str]) -> None:
    _max_args("resize", args, 8)
    if args and args[0]:
        _apply_resizing_type(f, args[:1])
    _apply_size(f, args[1:], "resize")


def _apply_resizing_type(f: Fields, args: list[str]) -> None:
    _max_args("resizing type", args, 1)
    if args[0] not in RESIZING_TYPES:
        raise InvalidURL(f"Invalid resizing type: {args[0]}")
    f["resizing_type"] = args[0]


def _apply_zoom(f: Fields, args: list[str]) -> None:
    _max_args("zoom", args, 2)
    zx = _float("zoom", args[0], strict=True)
    zy = _float("zoom", args[1], strict=True) if len(args) > 1 else zx
    f["zoom"] = (zx, zy)


def _apply_crop(f: Fields, args: list[str]) -> None:
    _max_args("crop", args, 5)
    width = _float("crop width", args[0])
    height = _float("crop height", args[1]) if len(args) > 1 and args[1] else 0.0
    gravity = _gravity("crop gravity", args[2:]) if len(args) > 2 and args[2] else None
    f["crop"] = Crop(width, height, gravity)


def _apply_trim(f: Fields, args: list[str]) -> None:
    _max_args("trim", args, 4)
    if not args[0]:
        f["trim"] = None
        return
    color = _color("trim color", args[1:2]) if len(args) > 1 and args[1] else None
    f["trim"] = Trim(_float("trim threshold", args[0]), color,
                     len(args) > 2 and parse_bool(args[2]), len(args) > 3 and parse_bool(args[3]))


def _apply_padding(f: Fields, args: list[str]) -> None:
    _max_args("padding", args, 4)
    values = [_int("padding", a) if a else None for a in args]
    top = values[0] or 0
    right = values[1] if len(values) > 1 and values[1] is not None else top
    bottom = values[2] if len(values) > 2 and values[2] is not None else top
    left = values[3] if len(values) > 3 and values[3] is not None else right
    f["padding"] = (top, right, bottom, left)


def _apply_rotate(f: Fields, args: list[str]) -> None:
    _max_args("rotate", args, 1)
    angle = _int("rotate", args[0], minimum=-(10**9))
    if angle % 90:
        raise InvalidURL(f"Invalid rotation angle: {angle}")
    f["rotate"] = angle % 360


def _apply_background(f: Fields, args: list[str]) -> None:
    f["background"] = None if args == [""] else _color("background", args)


def _apply_watermark(f: Fields, args: list[str]) -> None:
    _max_args("watermark", args, 7)
    opacity = _float("watermark opacity", args[0])
    if opacity > 1:
        raise InvalidURL(f"Invalid watermark opacity: {args[0]}")
    position = args[1] if len(args) > 1 and args[1] else "ce"
    if position not in WATERMARK_POSITIONS:
        raise InvalidURL(f"Invalid watermark position: {position}")
    x = _float("watermark x", args[2], float("-inf")) if len(args) > 2 and args[2] else 0.0
    y = _float("watermark y", args[3], float("-inf")) if len(args) > 3 and args[3] else 0.0
    scale = _float("watermark scale", args[4]) if len(args) > 4 and args[4] else 0.0
    f["watermark"] = Watermark(opacity, position, x, y, scale) if opacity > 0 else None


def _apply_quality(f: Fields, args: list[str]) -> None:
    _max_args("quality", args, 1)
    q = _int("quality", args[0])
    if q > 100:
        raise InvalidURL(f"Invalid quality: {q}")
    f["quality"] = q


def _apply_format_quality(f: Fields, args: list[str]) -> None:
    if len(args) % 2:
        raise InvalidURL("Missing quality for format in format_quality")
    pairs = dict(f["format_quality"])
    for fmt, q in zip(args[::2], args[1::2], strict=True):
        pairs[_format_name("format_quality", fmt)] = _int("format quality", q)
        if pairs[FORMAT_ALIASES.get(fmt, fmt)] > 100:
            raise InvalidURL(f"Invalid format quality: {q}")
    f["format_quality"] = tuple(sorted(pairs.items()))


def _apply_filename(f: Fields, args: list[str]) -> None:
    _max_args("filename", args, 2)
    name = args[0]
    if len(args) > 1 and parse_bool(args[1]):
        try:
            name = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidURL(f"Invalid filename encoding: {name}") from None
    f["filename"] = name or None


def _apply_skip(f: Fields, args: list[str]) -> None:
    f["skip_processing"] = tuple(_format_name("skip_processing", a) for a in args)


def _setter(key: str, convert: Callable[[str, str], Any], nargs: int = 1) -> Apply:
    def apply(f: Fields, args: list[str]) -> None:
        _max_args(key, args, nargs)
        f[key] = convert(key, args[0])
    return apply


def _flag(key: str) -> Apply:
    return _setter(key, lambda _n, v: parse_bool(v))


def _apply_flip(f: Fields, args: list[str]) -> None:
    _max_args("flip", args, 2)
    f["flip"] = (parse_bool(args[0]), len(args) > 1 and parse_bool(args[1]))


def _apply_expires(f: Fields, args: list[str]) -> None:
    _max_args("expires", args, 1)
    f["expires"] = _int("expires", args[0], minimum=-(2**63))


_OPTIONS: list[tuple[tuple[str, ...], Apply]] = [
    (("resize", "rs"), _apply_resize),
    (("size", "s"), _apply_size),
    (("resizing_type", "rt"), _apply_resizing_type),
    (("width", "w"), _setter("width", _int)),
    (("height", "h"), _setter("height", _int)),
    (("min-width", "min_width", "mw"), _setter("min_width", _int)),
    (("min-height", "min_height", "mh"), _setter("min_height", _int)),
    (("zoom", "z"), _apply_zoom),
    (("dpr",), _setter("dpr", lambda n, v: _float(n, v, strict=True))),
    (("enlarge", "el"), _flag("enlarge")),
    (("extend", "ex"), lambda f, a: f.__setitem__("extend", _extend("extend", a))),
    (("extend_aspect_ratio", "extend_ar", "exar"),
     lambda f, a: f.__setitem__("extend_ar", _extend("extend_aspect_ratio", a))),
    (("gravity", "g"), lambda f, a: f.__setitem__("gravity", _gravity("gravity", a))),
    (("crop", "c"), _apply_crop),
    (("trim", "t"), _apply_trim),
    (("padding", "pd"), _apply_padding),
    (("auto_rotate", "ar"), _flag("auto_rotate")),
    (("rotate", "rot"), _apply_rotate),
    (("flip", "fl"), _apply_flip),
    (("background", "bg"), _apply_background),
    (("blur", "bl"), _setter("blur", _float)),
    (("sharpen", "sh"), _setter("sharpen", _float)),
    (("pixelate", "pix"), _setter("pixelate", _int)),
    (("watermark", "wm"), _apply_watermark),
    (("quality", "q"), _apply_quality),
    (("format_quality", "fq"), _apply_format_quality),
    (("max_bytes", "mb"), _setter("max_bytes", _int)),
    (("format", "f", "ext"), _setter("format", _format_name)),
    (("strip_metadata", "sm"), _flag("strip_metadata")),
    (("keep_copyright", "kcr"), _flag("keep_copyright")),
    (("strip_color_profile", "scp"), _flag("strip_color_profile")),
    (("enforce_thumbnail", "eth"), _flag("enforce_thumbnail")),
    (("preserve_hdr", "ph"), _flag("preserve_hdr")),
    (("skip_processing", "skp"), _apply_skip),
    (("raw",), _flag("raw")),
    (("cachebuster", "cb"), _setter("cachebuster", lambda _n, v: v)),
    (("expires", "exp"), _apply_expires),
    (("filename", "fn"), _apply_filename),
    (("return_attachment", "att"), _flag("return_attachment")),
    (("max_src_resolution", "msr"),
     _setter("max_src_resolution", lambda n, v: _float(n, v, strict=True))),
    (("max_src_file_size", "msfs"), _setter("max_src_file_size", _int)),
    (("max_animation_frames", "maf"),
     _setter("max_animation_frames", lambda n, v: _int(n, v, minimum=1))),
    (("max_animation_frame_resolution", "mafr"),
     _setter("max_animation_frame_resolution", _float)),
    (("max_result_dimension", "mrd"), _setter("max_result_dimension", _int)),
]
OPTION_TABLE: dict[str, Apply] = {name: fn for names, fn in _OPTIONS for name in names}
#: every accepted option name, long and short
OPTION_NAMES = frozenset(OPTION_TABLE) | {"preset", "pr"}


# --- path handling --------------------------------------------------------------------

def split_signature(raw_path: str, prefix: str = "") -> tuple[str, str]:
    """Split ``/{signature}/{rest}`` (query already removed) and normalise ``rest``.

    Returns ``(signature, "/" + rest)``; the second value is what is signed.
    """
    if prefix:
        if not raw_path.startswith(prefix):
            raise InvalidURL("Invalid path")
        raw_path = raw_path[len(prefix):]
    path = raw_path.lstrip("/") if raw_path.startswith("/") else raw_path
    signature, slash, rest = path.partition("/")
    if not signature or not slash or not rest:
        raise InvalidURL("Invalid path")
    return signature, "/" + normalize_path(rest)


def normalize_path(rest: str) -> str:
    """imgproxy's denormalisation: ``%3A`` -> ``:`` in options, ``s:/x`` -> ``s://x`` in plain."""
    match = _PLAIN_SEGMENT.search(rest)
    if match:
        head, tail = rest[:match.end()], rest[match.end():]
        tail = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", _fix_scheme, tail, count=1)
        return re.sub("%3[Aa]", ":", head) + tail
    return re.sub("%3[Aa]", ":", rest)


def _fix_scheme(match: re.Match[str]) -> str:
    return f"{match.group(1)}:///" if match.group(1) == "local" else f"{match.group(1)}://"


def parse_path(path: str, config: ParserConfig = ParserConfig()) -> ParsedPath:
    """Parse the signed path (after the signature, starting with ``/``)."""
    segments = path.lstrip("/").split("/")
    values: Fields = dict(_DEFAULT_FIELDS)
    used: list[str] = []
    if "default" in config.presets:
        _apply_preset(values, "default", config, used)
    if config.only_presets:
        for name in segments[0].split(SEP) if segments[0] else ():
            _apply_preset(values, name, config, used)
        source_segments = segments[1:]
    else:
        index = 0
        while index < len(segments) and SEP in segments[index]:
            _apply_segment(values, segments[index], config, used, from_url=True)
            index += 1
        if index == 0 and segments[0] in RESIZING_TYPES:
            raise InvalidURL("deprecated basic URL format")
        source_segments = segments[index:]
    source, extension = _parse_source(source_segments, config)
    if extension:
        values["format"] = _format_name("extension", extension)
    return ParsedPath(ProcessingOptions(**values), source, tuple(used))


def _apply_segment(values: Fields, segment: str, config: ParserConfig, used: list[str],
                   from_url: bool) -> None:
    name, _, rest = segment.partition(SEP)
    args = rest.split(SEP)
    if from_url:
        if config.allowed_options is not None and name not in config.allowed_options:
            raise InvalidURL(f"Forbidden processing option {name}")
        if name in SECURITY_OPTIONS and not config.allow_security_options:
            raise Forbidden(f"Security processing option {name} is not allowed")
    if name in ("preset", "pr"):
        for preset in args:
            _apply_preset(values, preset, config, used)
        return
    apply = OPTION_TABLE.get(name)
    if apply is None:
        raise InvalidURL(f"Unknown processing option {name}")
    apply(values, args)


def _apply_preset(values: Fields, name: str, config: ParserConfig, used: list[str]) -> None:
    if name in used:
        return  # a preset that refers back to itself is skipped, as imgproxy does
    segments = config.presets.get(name)
    if segments is None:
        raise InvalidURL(f"Unknown preset: {name}")
    used.append(name)
    for segment in segments:
        _apply_segment(values, segment, config, used, from_url=False)


def _parse_source(segments: list[str], config: ParserConfig) -> tuple[str, str]:
    if not segments or not any(segments):
        raise InvalidURL("no source URL")
    if segments[0] == "plain":
        joined = "/".join(segments[1:])
        parts = joined.split("@")
        if len(parts) > 2:
            raise InvalidURL("Multiple formats are specified")
        if _BAD_ESCAPE.search(parts[0]):
            raise InvalidURL("Invalid escaping in source URL")
        try:
            source = unquote(parts[0], errors="strict")
        except UnicodeDecodeError:
            raise InvalidURL("Invalid URL escaping: not UTF-8") from None
        extension = parts[1] if len(parts) > 1 else ""
    else:
        if config.base64_url_includes_filename and len(segments) > 1:
            segments = segments[:-1]
        parts = "".join(segments).split(".")
        if len(parts) > 2:
            raise InvalidURL("Multiple formats are specified")
        encoded = parts[0].rstrip("=")
        try:
            source = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_",
                                      validate=True).decode()
        except (binascii.Error, ValueError):
            raise InvalidURL("Invalid url encoding") from None
        extension = parts[1] if len(parts) > 1 else ""
    if not source:
        raise InvalidURL("empty source URL")
    if config.base_url and not source.startswith(config.base_url):
        source = config.base_url + source
    return source, extension


def parse_preset_definitions(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``name=opt:a/opt:b`` lines -> {name: segments}; raises ValueError when invalid."""
    presets: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, eq, body = entry.partition("=")
        if not eq or not name.strip() or not body.strip():
            raise ValueError(f"invalid preset {entry!r} (expected name=option:args/...)")
        presets[name.strip()] = tuple(s for s in body.strip().split("/") if s)
    config = ParserConfig(presets=presets)
    for name, segments in presets.items():
        for segment in segments:  # validate each option once, at start-up
            if SEP not in segment:
                raise ValueError(f"invalid option {segment!r} in preset {name!r}")
            try:
                _apply_segment(dict(_DEFAULT_FIELDS), segment, config, [name], from_url=False)
            except InvalidURL as exc:
                raise ValueError(f"preset {name!r}: {exc.reason}") from None
    return presets


_DEFAULTS = ProcessingOptions()
_DEFAULT_FIELDS: Fields = {f.name: getattr(_DEFAULTS, f.name) for f in fields(ProcessingOptions)}


# --- options -> path (canonical form; used by urlbuilder and as the cache key) --------

def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _b(value: bool) -> str:
    return "1" if value else "0"


def _gravity_args(g: Gravity) -> list[str]:
    if g.type == "sm" or (g.type != "fp" and g.x == 0 and g.y == 0):
        return [g.type]
    return [g.type, _num(g.x), _num(g.y)]


def _rgb_hex(c: tuple[int, int, int]) -> str:
    return "".join(f"{v:02x}" for v in c)


def option_segments(o: ProcessingOptions, include_header_only: bool = True) -> list[str]:
    """Canonical option segments for ``o`` (defaults omitted, fixed order, short names)."""
    d = _DEFAULTS
    out: list[str] = []

    def add(name: str, *args: str) -> None:
        out.append(SEP.join((name, *args)))

    if (o.resizing_type, o.width, o.height) != (d.resizing_type, d.width, d.height):
        add("rs", o.resizing_type, str(o.width), str(o.height))
    if o.min_width:
        add("mw", str(o.min_width))
    if o.min_height:
        add("mh", str(o.min_height))
    if o.zoom != d.zoom:
        add("z", *(_num(z) for z in o.zoom))
    if o.dpr != d.dpr:
        add("dpr", _num(o.dpr))
    if o.enlarge:
        add("el", "1")
    for name, ext in (("ex", o.extend), ("exar", o.extend_ar)):
        if ext != Extend():
            add(name, _b(ext.enabled), *_gravity_args(ext.gravity))
    if o.gravity != d.gravity:
        add("g", *_gravity_args(o.gravity))
    if o.crop is not None:
        args = [_num(o.crop.width), _num(o.crop.height)]
        add("c", *args, *(_gravity_args(o.crop.gravity) if o.crop.gravity else []))
    if o.trim is not None:
        t = o.trim
        add("t", _num(t.threshold), _rgb_hex(t.color) if t.color else "", _b(t.equal_hor),
            _b(t.equal_ver))
    if o.padding != d.padding:
        add("pd", *(str(p) for p in o.padding))
    if o.auto_rotate is not None:
        add("ar", _b(o.auto_rotate))
    if o.rotate:
        add("rot", str(o.rotate))
    if o.flip != d.flip:
        add("fl", *(_b(v) for v in o.flip))
    if o.background is not None:
        add("bg", _rgb_hex(o.background))
    if o.blur:
        add("bl", _num(o.blur))
    if o.sharpen:
        add("sh", _num(o.sharpen))
    if o.pixelate:
        add("pix", str(o.pixelate))
    if o.watermark is not None:
        w = o.watermark
        add("wm", _num(w.opacity), w.position, _num(w.x), _num(w.y), _num(w.scale))
    if o.quality:
        add("q", str(o.quality))
    if o.format_quality:
        add("fq", *(x for fmt, q in o.format_quality for x in (fmt, str(q))))
    if o.max_bytes:
        add("mb", str(o.max_bytes))
    for name, value in (("sm", o.strip_metadata), ("kcr", o.keep_copyright),
                        ("scp", o.strip_color_profile), ("eth", o.enforce_thumbnail)):
        if value is not None:
            add(name, _b(value))
    if o.preserve_hdr:
        add("ph", "1")
    if o.skip_processing:
        add("skp", *o.skip_processing)
    if o.raw:
        add("raw", "1")
    if o.cachebuster:
        add("cb", o.cachebuster)
    for name, value in (("msr", o.max_src_resolution), ("msfs", o.max_src_file_size),
                        ("maf", o.max_animation_frames),
                        ("mafr", o.max_animation_frame_resolution),
                        ("mrd", o.max_result_dimension)):
        if value is not None:
            add(name, _num(value))
    if include_header_only:
        if o.expires:
            add("exp", str(o.expires))
        if o.filename is not None:
            encoded = base64.urlsafe_b64encode(o.filename.encode()).rstrip(b"=").decode()
            add("fn", encoded, "1")
        if o.return_attachment is not None:
            add("att", _b(o.return_attachment))
    if o.format is not None:
        add("f", o.format)
    return out


def encode_source(source: str, encoding: str = "base64", split: int = 0) -> str:
    """The source part of a path: ``plain/<escaped>`` or base64url (optionally split)."""
    if encoding == "plain":
        return "plain/" + quote(source, safe="/:=&,;+$!*'()~-._")
    if encoding != "base64":
        raise ValueError("encoding must be 'base64' or 'plain'")
    text = base64.urlsafe_b64encode(source.encode()).rstrip(b"=").decode()
    if split > 0:
        text = "/".join(text[i:i + split] for i in range(0, len(text), split))
    return text


def build_path(options: ProcessingOptions, source: str, encoding: str = "base64",
               extension: str | None = None, split: int = 0) -> str:
    """The path to sign, ``/opt/opt/.../source[.ext]``, parsed back by ``parse_path``."""
    opts = options
    if extension is None and options.format is not None:
        extension, opts = options.format, replace(options, format=None)
    parts = option_segments(opts)
    src = encode_source(source, encoding, split)
    if extension:
        src += ("@" if encoding == "plain" else ".") + extension
    return "/" + "/".join([*parts, src])


def cache_key(options: ProcessingOptions) -> str:
    """Canonical text of everything in ``options`` that affects the pixels."""
    return "/".join(option_segments(options, include_header_only=False))

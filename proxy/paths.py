"""Whole request paths: signature split, presets, the source, and the way back.

Standard library only. Parsing follows imgproxy v4 (README "URL reference")::

    /{signature}/{option}/{option}.../plain/{percent-encoded source}[@{ext}]
    /{signature}/{option}/{option}.../{base64url source, may be split by /}[.{ext}]

Every malformed path raises ``InvalidURL`` (404), as imgproxy does; a security
option the server does not allow raises ``Forbidden``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote

from .arguments import SEP, format_name
from .errors import Forbidden, InvalidURL
from .grammar import BY_NAME, DEFAULT_FIELDS, SECURITY_OPTIONS, Fields, option_segments
from .options import RESIZING_TYPES, ProcessingOptions
from .replacements import Replacement, apply

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PLAIN_SEGMENT = re.compile(r"(?:^|/)plain/")  # the ``plain`` segment that starts a source
MAX_PRESET_DEPTH = 16  # presets may name presets; deeper chains are refused at start-up


@dataclass(frozen=True)
class ParserConfig:
    """What the parser needs from the server's settings."""

    presets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    only_presets: bool = False
    allowed_options: frozenset[str] | None = None
    allow_security_options: bool = False
    base_url: str = ""
    base64_url_includes_filename: bool = False
    separator: str = SEP  # IMGPROXY_ARGUMENTS_SEPARATOR
    replacements: tuple[Replacement, ...] = ()  # IMGPROXY_URL_REPLACEMENTS


@dataclass(frozen=True)
class ParsedPath:
    options: ProcessingOptions
    source: str
    used_presets: tuple[str, ...] = ()
    given: frozenset[str] = frozenset()  # option fields set by the URL or a preset


class _Written(dict[str, Any]):
    """Option fields, remembering which ones an option or preset set (even to the
    default value): client hints only fill in what the URL left unsaid."""

    def __init__(self, values: Fields) -> None:
        super().__init__(values)
        self.written: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        self.written.add(key)
        super().__setitem__(key, value)


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
    values = _Written(DEFAULT_FIELDS)
    used: list[str] = []
    if "default" in config.presets:
        _apply_preset(values, "default", config, used)
    if config.only_presets:
        for name in segments[0].split(config.separator) if segments[0] else ():
            _apply_preset(values, name, config, used)
        source_segments = segments[1:]
    else:
        index = 0
        while index < len(segments) and config.separator in segments[index]:
            _apply_segment(values, segments[index], config, used, from_url=True)
            index += 1
        if index == 0 and segments[0] in RESIZING_TYPES:
            raise InvalidURL("deprecated basic URL format")
        source_segments = segments[index:]
    source, extension = _parse_source(source_segments, config)
    if extension:
        values["format"] = format_name("extension", extension)
    return ParsedPath(ProcessingOptions(**values), source, tuple(used),
                      frozenset(values.written))


def _apply_segment(values: Fields, segment: str, config: ParserConfig, used: list[str],
                   from_url: bool) -> None:
    name, _, rest = segment.partition(config.separator)
    args = rest.split(config.separator)
    if from_url:
        if config.allowed_options is not None and name not in config.allowed_options:
            raise InvalidURL(f"Forbidden processing option {name}")
        if name in SECURITY_OPTIONS and not config.allow_security_options:
            raise Forbidden(f"Security processing option {name} is not allowed")
    if name in ("preset", "pr"):
        for preset in args:
            _apply_preset(values, preset, config, used)
        return
    row = BY_NAME.get(name)
    if row is None:
        raise InvalidURL(f"Unknown processing option {name}")
    row.apply(values, args)


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
    source = apply(config.replacements, source)
    if config.base_url and not source.startswith(config.base_url):
        source = config.base_url + source
    return source, extension


def parse_preset_definitions(entries: Iterable[str], separator: str = SEP
                             ) -> dict[str, tuple[str, ...]]:
    """``name=opt:a/opt:b`` lines -> {name: segments}; raises ValueError (one line) when
    an entry or an option in it is invalid, or a chain of presets is too deep. Option
    arguments are separated by ``separator`` (IMGPROXY_ARGUMENTS_SEPARATOR), as in URLs."""
    presets: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, eq, body = entry.partition("=")
        if not eq or not name.strip() or not body.strip():
            raise ValueError(f"invalid preset {entry!r} (expected name=option:args/...)")
        presets[name.strip()] = tuple(s for s in body.strip().split("/") if s)
    config = ParserConfig(presets=presets, separator=separator)
    for name, segments in presets.items():
        for segment in segments:  # validate each option once, at start-up
            if separator not in segment:
                raise ValueError(f"invalid option {segment!r} in preset {name!r}")
            if segment.partition(separator)[0] in ("preset", "pr"):
                continue  # checked below, as a chain
            try:
                _apply_segment(dict(DEFAULT_FIELDS), segment, config, [name], from_url=False)
            except InvalidURL as exc:
                raise ValueError(f"preset {name!r}: {exc.reason}") from None
    for name in presets:
        _check_chain(presets, name, [], separator)
    return presets


def _check_chain(presets: Mapping[str, tuple[str, ...]], name: str, chain: list[str],
                 separator: str = SEP) -> None:
    """Refuse unknown presets named by presets, and chains deeper than MAX_PRESET_DEPTH
    (a preset naming one already in its chain is skipped at parse time, as imgproxy does)."""
    if name in chain:
        return
    if name not in presets:
        raise ValueError(f"preset {chain[-1]!r} names unknown preset {name!r}")
    if len(chain) >= MAX_PRESET_DEPTH:
        raise ValueError(f"presets nest more than {MAX_PRESET_DEPTH} deep: "
                         f"{' -> '.join([*chain[:3], '...', name])}")
    for segment in presets[name]:
        option, _, args = segment.partition(separator)
        if option in ("preset", "pr"):
            for inner in args.split(separator):
                _check_chain(presets, inner, [*chain, name], separator)


# --- options -> path (canonical form; used by the URL builder) --------------------------

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

"""Value parsers for settings: each raises ValueError with a short explanation, and
``setting()``, which declares a field of the settings table (default, environment
names, parser, documentation)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

from .. import formats

Parser = Callable[[str], Any]


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(text: str) -> int:
        value = int(text.strip())
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"expected an integer in {minimum}..{maximum if maximum else ''}")
        return value
    return parse


def number(minimum: float = 0.0) -> Parser:
    def parse(text: str) -> float:
        value = float(text)
        if not (value >= minimum and value != float("inf")):
            raise ValueError(f"expected a finite number >= {minimum}")
        return value
    return parse


def share(text: str) -> float:
    """A fraction of a whole: ``0.5``; more than 0, at most 1."""
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError("expected a number more than 0 and at most 1")
    return value


_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def size(text: str) -> int:
    """``134217728``, ``128MiB``, ``64M``, ``1G``."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError("expected a size such as 134217728, 128MiB or 1G")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def size_or_auto(text: str) -> int | str:
    """A size (``size``), or ``auto`` (derived at start-up)."""
    return "auto" if text.strip().lower() == "auto" else size(text)


def items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def hex_items(text: str) -> tuple[str, ...]:
    values = items(text)
    for item in values:
        bytes.fromhex(item)  # ValueError names the problem
    return values


def format_names(text: str) -> tuple[str, ...]:
    names = items(text)
    unknown = [name for name in names if formats.canonical(name) is None]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}")
    return tuple(formats.canonical(name) or name for name in names)


def format_qualities(text: str) -> tuple[tuple[str, int], ...]:
    result: dict[str, int] = {}
    for item in items(text):
        given, eq, value = item.partition("=")
        name = formats.canonical(given.strip())
        if not eq or name is None:
            raise ValueError(f"expected format=quality pairs, got {item!r}")
        quality = int(value)
        if not 1 <= quality <= 100:
            raise ValueError(f"quality for {name} must be 1..100")
        result[name] = quality
    return tuple(result.items())


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items(text))


def choice(*choices: str) -> Parser:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text
    return parse


def bind_address(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT or :PORT")
    return f"{host or '0.0.0.0'}:{port}"


def plain(text: str) -> str:
    return text


def setting(default: Any, *env: str, parse: Parser = plain, doc: str = "") -> Any:
    """A settings field: default, environment names (first is primary), parser, doc."""
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})

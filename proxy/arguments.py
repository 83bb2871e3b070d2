"""Option arguments: the parsers (text -> value, ``InvalidURL`` when invalid) and the
writers (value -> text) that ``grammar.py``'s table rows are made of. Standard library
only."""

from __future__ import annotations

import re

from . import formats
from .errors import InvalidURL
from .options import GRAVITY_TYPES, Extend, Gravity

SEP = ":"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


# --- argument parsers ----------------------------------------------------------------

def parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool`` truth set; anything else is false (not an error)."""
    return value in _TRUE


#: no option value needs more: it keeps every size, offset and factor finite and within
#: libvips' 32-bit ints, so an absurd value is a 404, never an overflow in the pipeline
MAX_INT = 2**31 - 1
MAX_FLOAT = 1e6


def parse_int(name: str, value: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidURL(f"Invalid {name}: {value}") from None
    if number < minimum:
        raise InvalidURL(f"Invalid {name}: {value} (expected >= {minimum})")
    if number > maximum:
        raise InvalidURL(f"Invalid {name}: {value} (expected <= {maximum})")
    return number


def parse_float(name: str, value: str, minimum: float = 0.0, strict: bool = False,
                maximum: float = MAX_FLOAT) -> float:
    """A finite number in ``minimum``..``maximum`` (``-MAX_FLOAT`` at most below 0)."""
    try:
        number = float(value)
    except ValueError:
        raise InvalidURL(f"Invalid {name}: {value}") from None
    if number != number or abs(number) > maximum:
        raise InvalidURL(f"Invalid {name}: {value}")
    if number < minimum or (strict and number <= minimum):
        raise InvalidURL(f"Invalid {name}: {value}")
    return number


def parse_positive(name: str, value: str) -> float:
    return parse_float(name, value, strict=True)


def parse_color(name: str, args: list[str]) -> tuple[int, int, int]:
    if len(args) == 1:
        text = args[0]
        if re.fullmatch(r"[0-9A-Fa-f]{6}", text):
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
        if re.fullmatch(r"[0-9A-Fa-f]{3}", text):
            r, g, b = (int(c, 16) * 17 for c in text)
            return (r, g, b)
    elif len(args) == 3:
        r, g, b = (parse_int(name, a) for a in args)
        if all(0 <= c <= 255 for c in (r, g, b)):
            return (r, g, b)
    raise InvalidURL(f"Invalid {name}: {SEP.join(args)}")


def max_args(name: str, args: list[str], count: int) -> None:
    if len(args) > count:
        raise InvalidURL(f"Invalid {name} arguments: {SEP.join(args)}")


def parse_gravity(name: str, args: list[str], allow_sm: bool = True) -> Gravity:
    kind = args[0]
    if kind not in GRAVITY_TYPES or (kind == "sm" and not allow_sm):
        raise InvalidURL(f"Invalid {name}: {kind}")
    if kind == "sm":
        max_args(name, args, 1)
        return Gravity("sm")
    if kind == "fp":
        if len(args) != 3:
            raise InvalidURL(f"Invalid {name} arguments: {SEP.join(args)}")
        x, y = (parse_float(name, a) for a in args[1:])
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise InvalidURL(f"Invalid {name}: focus point must be within 0..1")
        return Gravity("fp", x, y)
    max_args(name, args, 3)
    x = parse_float(name, args[1], float("-inf")) if len(args) > 1 and args[1] else 0.0
    y = parse_float(name, args[2], float("-inf")) if len(args) > 2 and args[2] else 0.0
    return Gravity(kind, x, y)


def parse_extend(name: str, args: list[str]) -> Extend:
    max_args(name, args, 4)
    enabled = parse_bool(args[0])
    gravity = parse_gravity(name, args[1:], allow_sm=False) if len(args) > 1 and args[1] \
        else Gravity()
    return Extend(enabled, gravity)


def format_name(name: str, value: str) -> str:
    canonical = formats.canonical(value)
    if canonical is None:
        raise InvalidURL(f"Invalid image format in {name}: {value}")
    return canonical


# --- writers ---------------------------------------------------------------------------

def num(value: float) -> str:
    """A number as written in URLs: integers without a fraction, floats exactly (repr)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def flag(value: bool) -> str:
    return "1" if value else "0"


def gravity_args(g: Gravity) -> list[str]:
    if g.type == "sm" or (g.type != "fp" and g.x == 0 and g.y == 0):
        return [g.type]
    return [g.type, num(g.x), num(g.y)]


def rgb_hex(c: tuple[int, int, int]) -> str:
    return "".join(f"{v:02x}" for v in c)

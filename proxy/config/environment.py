"""The environment as a whole: every problem at once (``vipsgate config --check``) and
the names that draw a start-up warning (unknown or unsupported)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields

from ..errors import ConfigError
from . import Settings, from_env
from .unsupported import READ_ELSEWHERE, UNSUPPORTED

PREFIXES = ("IMGPROXY_", "VIPSGATE_")


def setting_names() -> frozenset[str]:
    """Every environment name a field of ``Settings`` reads."""
    return frozenset(name for f in fields(Settings) for name in f.metadata.get("env", ()))


def unknown_names(env: Mapping[str, str]) -> list[str]:
    """``IMGPROXY_*``/``VIPSGATE_*`` names vipsgate does not know at all, sorted."""
    known = setting_names() | UNSUPPORTED.keys() | READ_ELSEWHERE.keys()
    return sorted(name for name in env if name.startswith(PREFIXES) and name not in known)


def unknown_lines(env: Mapping[str, str]) -> list[str]:
    """One line per unknown name that is set, with the closest known name."""
    lines = []
    candidates = sorted(setting_names())
    for name in unknown_names(env):
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"unknown setting {name} is ignored{hint}")
    return lines


def unsupported_lines(env: Mapping[str, str]) -> list[str]:
    """One line per imgproxy setting vipsgate does not support that is set."""
    return [f"{name} is not supported ({UNSUPPORTED[name]}) and is ignored"
            for name in sorted(env) if name in UNSUPPORTED]


def warnings(env: Mapping[str, str]) -> list[str]:
    """The start-up warnings: unknown names, then unsupported ones."""
    return unknown_lines(env) + unsupported_lines(env)


def problems(env: Mapping[str, str]) -> list[str]:
    """Every invalid value (one line each, naming the variable), then whole-configuration
    problems once the values parse. Empty when ``from_env(env)`` would succeed."""
    lines = []
    for f in fields(Settings):
        for name in f.metadata.get("env", ()):
            if name in env:
                try:
                    f.metadata["parse"](env[name])
                except (ValueError, TypeError) as exc:
                    lines.append(f"{name}={env[name]!r}: {exc}")
                break  # the first name given is the one read
    if not lines:
        try:
            from_env(env)
        except ConfigError as exc:
            lines.append(str(exc))
    return lines

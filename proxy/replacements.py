"""``IMGPROXY_URL_REPLACEMENTS``: source URL prefixes rewritten before use, as imgproxy
does. Standard library only.

A pattern is a prefix in which ``*`` matches anything within one path segment
(``[^/]*``); the replacement may refer to what the n-th ``*`` matched as ``${n}`` or
``$n`` (Go's template syntax, ``$$`` for a dollar sign). Rules apply in order, each to
the result of the one before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_REFERENCE = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Replacement:
    pattern: re.Pattern[str]
    template: str  # in Python's ``re.sub`` syntax

    def __call__(self, url: str) -> str:
        return self.pattern.sub(self.template, url, count=1)


def wildcard(pattern: str) -> re.Pattern[str]:
    """``http://*.cdn/`` -> ``^http://([^/]*)\\.cdn/`` (a prefix; ``*`` stays in a segment)."""
    return re.compile("^" + "([^/]*)".join(re.escape(part) for part in pattern.split("*")))


def template(go: str, groups: int) -> str:
    """A Go replacement template as a Python one: ``${1}``/``$1`` -> ``\\g<1>``; a name
    that is not the number of one of the ``groups`` expands to nothing, as in Go."""
    out, last = [], 0
    for match in _REFERENCE.finditer(go):
        out.append(go[last:match.start()].replace("\\", "\\\\"))
        name = match.group(1) or match.group(2)
        if name is None:
            out.append("$")
        elif name.isdigit() and int(name) <= groups:
            out.append(f"\\g<{int(name)}>")
        last = match.end()
    out.append(go[last:].replace("\\", "\\\\"))
    return "".join(out)


def compile_rules(pairs: Iterable[tuple[str, str]]) -> tuple[Replacement, ...]:
    rules = []
    for pattern, replacement in pairs:
        regex = wildcard(pattern)
        rules.append(Replacement(regex, template(replacement, regex.groups)))
    return tuple(rules)


def apply(rules: Iterable[Replacement], url: str) -> str:
    for rule in rules:
        url = rule(url)
    return url

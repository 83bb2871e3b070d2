"""The small commands behind ``vipsgate sign``, ``config --check``, ``health`` and
``--version``: each returns what to print, or raises ``ValueError`` with the one line
to print instead."""

from __future__ import annotations

import platform
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from . import __version__, formats
from .errors import ProxyError
from .paths import parse_path
from .signing import Signer


def version() -> str:
    """``vipsgate 0.1.0 (libvips 8.18.7, Python 3.11.7)``."""
    try:
        import pyvips
        libvips = f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, "
    except Exception:  # no libvips here: say so, the version still prints
        libvips = "libvips not loadable, "
    return f"vipsgate {__version__} ({libvips}Python {platform.python_version()})"


def plain_source_problem(path: str) -> str | None:
    """Why a ``plain/`` source would not reach the server as written, or ``None``.

    A bare ``?`` or ``#`` ends the path (what follows is the request's query string or
    fragment, neither signed nor used), and ``@`` separates the output format.
    """
    segments = path.lstrip("/").split("/")
    first = next((i for i, segment in enumerate(segments) if ":" not in segment), None)
    if first is None or segments[first] != "plain":
        return None  # a base64 source, which cannot hold any of them
    tail = "/".join(segments[first + 1:])
    for char, escaped in (("?", "%3F"), ("#", "%23")):
        if char in tail:
            return (f"unescaped '{char}' in the plain source: write it as {escaped} "
                    f"(a bare '{char}' ends the path the server sees)")
    if tail.count("@") > 1:
        return "more than one '@' in the plain source: write an '@' of the source as %40"
    _, at, extension = tail.partition("@")
    if at and formats.canonical(extension) is None:
        return (f"'@{extension}' is not an output format: write an '@' of the source "
                "as %40")
    return None


def sign(path: str, settings: Any) -> str:
    """The signed path for ``path``, checked with the server's own parser and settings."""
    from .verify import parser_config

    path = path if path.startswith("/") else "/" + path
    problem = plain_source_problem(path)
    if problem:
        raise ValueError(problem)
    try:
        parse_path(path, parser_config(settings))
    except ProxyError as exc:
        raise ValueError(f"the server would refuse this path ({exc.status}): {exc.reason}"
                         ) from None
    signer = Signer.from_hex(settings.keys, settings.salts, settings.signature_size)
    return f"/{signer.sign(path)}{path}"


def check_environment(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for ``vipsgate config --check``: invalid values and unknown
    names are errors, settings vipsgate does not support are warnings."""
    from .config import environment

    errors = environment.problems(env) + environment.unknown_lines(env)
    return errors, environment.unsupported_lines(env)


def health_url(settings: Any) -> str:
    """The ``/health`` URL of the server these settings describe, from inside its host."""
    host, port = settings.host_port
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(
        host, host)
    return f"http://{host}:{port}{settings.path_prefix.rstrip('/')}/health"


def health(url: str, timeout: float = 3.0) -> str:
    """Probe ``url``; the answer's body, or ``ValueError`` saying why it is unhealthy."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read(200).decode(errors="replace").strip())
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, OSError):
            reason = reason.strerror or reason
        raise ValueError(f"{url}: {reason}") from None

"""Development playground: a page to try options and see the signed URL and result.

Served only when ``VIPSGATE_PLAYGROUND=1`` (``make run`` sets it), as a sub-application
at ``/playground``. The page never sees the key: it posts the option fields to
``POST /playground/sign`` and the server signs with its own key through
``UrlBuilder``, after checking that the path parses with the server's own parser
settings (presets, allowed options).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .config import Settings
from .errors import ProxyError
from .paths import ParserConfig, parse_path
from .urlbuilder import UrlBuilder

STATIC = Path(__file__).parent / "playground"
FILES = {"app.js": "text/javascript", "style.css": "text/css"}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".svg",
                            ".tif", ".tiff", ".bmp", ".heic", ".ico", ".jxl"})
SOURCE_PREFIXES = ("local:///", "http://", "https://")
MAX_BODY = 8192  # the app's client_max_size (1 KiB) is for image requests
MAX_SAMPLES = 100
NO_CACHE = {"Cache-Control": "no-cache"}
#: JSON field -> ``UrlBuilder.url`` keyword; empty values mean "the server's default"
FIELDS = {"resizing_type": str, "gravity": str, "dpr": float, "quality": int,
          "format": str, "enlarge": bool}


class BadRequest(Exception):
    """An invalid form: answered with 400 and ``{"error": ...}``."""


def playground_app(settings: Settings, parser: ParserConfig) -> web.Application:
    """The playground's routes; mount it before the image catch-all route."""
    page = Playground(settings, parser)
    app = web.Application()
    app.router.add_get("", page.index)
    app.router.add_get("/", page.redirect)
    for name in FILES:
        app.router.add_get(f"/{name}", page.static)
    app.router.add_get("/samples", page.samples)
    app.router.add_post("/sign", page.sign)
    return app


class Playground:
    def __init__(self, settings: Settings, parser: ParserConfig) -> None:
        self.settings = settings
        self.parser = parser

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "index.html").read_bytes(), headers=NO_CACHE,
                            content_type="text/html", charset="utf-8")

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302,
                            headers={"Location": f"{self.settings.path_prefix}/playground"})

    async def static(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        return web.Response(body=(STATIC / name).read_bytes(), headers=NO_CACHE,
                            content_type=FILES[name], charset="utf-8")

    async def samples(self, request: web.Request) -> web.Response:
        """The images at the top of the local root, as ``local:///`` sources."""
        root = self.settings.local_root
        names = sorted(p.name for p in Path(root).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) if root else []
        sources = ["local:///" + quote(name) for name in names[:MAX_SAMPLES]]
        return web.json_response({"samples": sources}, headers=NO_CACHE)

    async def sign(self, request: web.Request) -> web.Response:
        """Option fields in, ``{path, url, srcset, picture}`` out (400 when invalid)."""
        try:
            form = await read_form(request)
            result = self.build(form, str(request.url.origin()), self.parser)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400, headers=NO_CACHE)
        return web.json_response(result, headers=NO_CACHE)

    def builder(self, base_url: str, encode: str) -> UrlBuilder:
        s = self.settings
        if not s.keys:  # VIPSGATE_INSECURE: unsigned URLs
            return UrlBuilder(base_url, encode=encode, insecure=True)
        return UrlBuilder(base_url, s.keys[0], s.salts[0], s.signature_size, encode)

    def build(self, form: dict[str, Any], origin: str, parser: ParserConfig
              ) -> dict[str, Any]:
        """``path`` includes the path prefix; ``url`` is ``origin`` + ``path``."""
        prefix = self.settings.path_prefix
        source = str(form.get("source") or "").strip()
        if not source.startswith(SOURCE_PREFIXES) or len(source) > 2048:
            raise BadRequest("source must start with local:///, http:// or https://")
        width, height = (_field(form, name, int) or 0 for name in ("width", "height"))
        options = {name: _field(form, name, kind) for name, kind in FIELDS.items()}
        options = {name: value for name, value in options.items() if value not in (None, "")}
        encode = "plain" if form.get("encode") == "plain" else "base64"
        builder = self.builder(origin + prefix, encode)
        try:
            image = builder.url(source, width, height, **options)
            # srcset and <picture> vary dpr themselves; <picture> offers every format
            rest = {k: v for k, v in options.items() if k != "dpr"}
            srcset = builder.srcset(source, width, height, densities=(1, 2, 3), **rest)
            picture = builder.picture(source, width, height, formats=("avif", "webp", "jpeg"),
                                      alt=source.rsplit("/", 1)[-1], **rest)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        path = image.url[len(origin):]
        signed = "/" + path[len(prefix):].lstrip("/").partition("/")[2]
        try:  # the server's own parser: presets, allowed options, security options
            parsed = parse_path(signed, parser)
        except ProxyError as exc:
            raise BadRequest(exc.reason) from None
        if not parsed.source.startswith(SOURCE_PREFIXES):
            raise BadRequest(f"source {parsed.source!r} is not local:/// or http(s)")
        return {"path": path, "url": image.url, "srcset": srcset, "picture": picture}


async def read_form(request: web.Request) -> dict[str, Any]:
    body = b""
    while len(body) <= MAX_BODY:  # read() returns what has arrived so far
        chunk = await request.content.read(MAX_BODY + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > MAX_BODY:
        raise BadRequest("request body too large")
    try:
        form = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("body must be JSON") from None
    if not isinstance(form, dict):
        raise BadRequest("body must be a JSON object")
    return form


def _field(form: dict[str, Any], name: str, kind: type) -> Any:
    """A form field as ``kind``; ``None`` when missing or empty."""
    value = form.get(name)
    if value is None or value == "":
        return None
    if kind is bool:
        return value in (True, 1, "1", "true", "on")
    if kind is str:
        return str(value)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number") from None

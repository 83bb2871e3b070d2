"""The image front door: a GET for an image URL goes straight to the image handler.

Almost every request a proxy behind a CDN sees is an image URL, and a cache hit costs
little beyond HTTP itself; aiohttp's router (resolving a long path against every
route) and its middleware chain (a wrapper per middleware and application) were a
fifth of a hit's CPU. The connection handler (``connections.GuardedHandler``) asks
``route`` first: an image GET is handed to ``Tracing.around`` with the image handler,
which is what the router and the app's middleware would have called; anything else
(the probes, the landing page, ``OPTIONS``, other methods, paths outside the prefix)
goes through aiohttp's router as before. The app registers the same routes, so a
server started without the front door (aiohttp's test server) answers the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.web_request import BaseRequest

from .connections import Entry
from .middleware import Handler, Tracing


class FrontDoor:
    """Which requests skip the router: GETs under ``prefix/`` except the ``others``
    (exact paths the router serves) and the paths under ``other_prefixes``."""

    def __init__(self, prefix: str, others: Iterable[str], other_prefixes: Iterable[str],
                 handler: Handler, tracing: Tracing) -> None:
        self.start = prefix + "/"
        self.others = frozenset(others)
        self.other_prefixes = tuple(other_prefixes)
        self.handler, self.tracing = handler, tracing

    def route(self, request: BaseRequest) -> Entry | None:
        """The image entry for an image GET; None: aiohttp's router decides."""
        if request.method != "GET":
            return None
        path = request.raw_path
        if "?" in path:
            path = path.split("?", 1)[0]
        if len(path) <= len(self.start) or not path.startswith(self.start) \
                or path in self.others or path.startswith(self.other_prefixes):
            return None
        return self.enter

    async def enter(self, request: BaseRequest) -> web.StreamResponse:
        # the request is aiohttp's web.Request (the app's request factory made it)
        return await self.tracing.around(request, self.handler, True)  # type: ignore[arg-type]

"""Shared test harness: settings, a real app on 127.0.0.1, signing, image helpers, the
pollers (``wait_until``, ``wait_for``), an HTTP origin (``origin``) and ``vipsgate serve``
as a subprocess (``serve``)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

os.environ.setdefault("VIPS_CONCURRENCY", "1")
os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vipsgate.app import SETTINGS, VERIFIER, create_app
from vipsgate.config import Settings, from_env
from vipsgate.negotiate import FormatPolicy, negotiate
from vipsgate.paths import parse_path
from vipsgate.processing import Result, process
from vipsgate.processing.vips import init as init_libvips
from vipsgate.resolve import Effective, resolve
from vipsgate.results import ResultKey, result_key
from vipsgate.signing import Signer
from vipsgate.sources import Fetched, Sources
from vipsgate.verify import parser_config

init_libvips()  # as the worker pool does

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
TEST_KEY = "943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881"
TEST_SALT = "520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5"


def make_settings(images: Path | None = None, **env: str) -> Settings:
    """Settings as the server would read them from ``env`` (plus a test key/salt)."""
    base = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT, "IMGPROXY_WORKERS": "2"}
    if images is not None:
        base["IMGPROXY_LOCAL_FILESYSTEM_ROOT"] = str(images)
    base.update(env)
    return from_env(base)


SIGNER = Signer.from_hex([TEST_KEY], [TEST_SALT])


def key_for(app: web.Application, path: str, accept: str = "") -> ResultKey:
    """The result-cache key ``app`` uses for the signed ``path`` (without signature)."""
    settings = app[SETTINGS]
    parsed = parse_path(path, app[VERIFIER].parser)
    policy = negotiate(parsed.options.format, accept, auto_webp=settings.auto_webp,
                       auto_avif=settings.auto_avif, enforce_webp=settings.enforce_webp,
                       enforce_avif=settings.enforce_avif)
    return result_key(resolve(parsed.options, settings), parsed.source, policy.key)


async def wait_until(condition: Callable[[], object], timeout: float = 10.0,
                     interval: float = 0.002) -> object:
    """Poll a condition that no event announces (bounded), yielding to the event loop.

    ``condition`` may also return an awaitable (a probe over HTTP); its true value is
    returned. Raises ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
             what: str = "") -> object:
    """``wait_until`` for synchronous code (threads, subprocesses, /proc): poll until
    ``condition()`` is true and return its value; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what or getattr(condition, '__name__', 'condition')}: "
                               f"not true within {timeout} s")
        time.sleep(interval)
    return value


def effective(options: str = "", fmt: str | None = None, **env: str) -> Effective:
    """The effective options of a URL with ``options`` (``"rs:fit:10:10/q:50"``) under
    the settings ``env`` would give: the production path, settings table included."""
    path = (f"/{options}" if options else "") + "/plain/local:///x" + (f"@{fmt}" if fmt else "")
    settings = make_settings(**env)
    parser = dataclasses.replace(parser_config(settings), allow_security_options=True)
    return resolve(parse_path(path, parser).options, settings)


def process_url(data: bytes, options: str = "", fmt: str | None = None,
                watermark: bytes | None = None, **env: str) -> Result:
    """``process`` as the server calls it, for the URL options and format given."""
    return process(data, effective(options, fmt, **env), FormatPolicy(fmt), watermark)


def signed(path: str) -> str:
    """``/<signature>/path`` for the test key."""
    path = path if path.startswith("/") else "/" + path
    return f"/{SIGNER.sign(path)}{path}"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """An empty directory served as ``local:///``; tests write images into it."""
    root = tmp_path / "images"
    root.mkdir()
    return root


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client, images: Path) -> ClientFactory:  # type: ignore[no-untyped-def]
    """``await make_client(**env)``: the real app on 127.0.0.1 with these settings."""
    async def factory(**env: str) -> TestClient:
        return await aiohttp_client(create_app(make_settings(images, **env)))
    return factory


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not present")
    return CORPUS


# --- an HTTP origin on 127.0.0.1 ---------------------------------------------------------

#: settings that let the proxy fetch from the ``origin`` fixture
LOOPBACK = {"IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES": "1"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Origin:
    """A real HTTP origin on 127.0.0.1 (the ``origin`` fixture), changed while it runs.

    ``add(path, body, **headers)`` serves bytes; ``route(path, handler)`` runs an aiohttp
    handler for anything exotic (redirects, endless or truncated bodies). A path ending
    in ``*`` is a prefix (``"/*"``: every path); other paths answer 404. Each request is
    first recorded (``requests``, ``peers``, ``hits`` per path) and announced
    (``await arrived(n)``); then it waits while the origin is held (``hold()`` until
    ``release()``, or always until ``release()`` for a route added with ``hold=True``);
    ``fail(path)`` turns the next request to ``path`` into a 500.
    """

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.server = TestServer(app, host="127.0.0.1")
        self.requests: list[web.Request] = []
        self.peers: list[tuple[str, int]] = []
        self.hits: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._routes: dict[str, tuple[Handler, bool]] = {}
        self._holding = False
        self._released = asyncio.Event()
        self._arrival = asyncio.Condition()

    @property
    def port(self) -> int:
        assert self.server.port is not None, "the origin is not started"
        return self.server.port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def paths(self) -> list[str]:
        """The path of every request, in arrival order."""
        return [request.path for request in self.requests]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, body: bytes, *, content_type: str = "image/jpeg", status: int = 200,
            hold: bool = False, hold_body: bool = False, **headers: str) -> str:
        """Serve ``body`` at ``path`` (replacing what was there); returns its URL.

        ``hold``: each request waits for ``release()``. ``hold_body``: the headers go
        out at once, the body after ``release()`` (a ``Content-Length`` in ``headers``
        may promise more than ``body``)."""
        async def serve(request: web.Request) -> web.StreamResponse:
            if not hold_body:
                return web.Response(body=body, status=status, content_type=content_type,
                                    headers=headers)
            response = web.StreamResponse(status=status, headers={
                "Content-Type": content_type, "Content-Length": str(len(body)), **headers})
            await response.prepare(request)
            await self._released.wait()
            await response.write(body)
            return response
        return self.route(path, serve, hold=hold)

    def route(self, path: str, handler: Handler, *, hold: bool = False) -> str:
        """Answer requests to ``path`` with ``handler``; returns the URL of ``path``."""
        self._routes[path] = (handler, hold)
        return self.url(path.removesuffix("*"))

    def hold(self) -> None:
        """From now on every request waits until ``release()``."""
        self._holding = True
        self._released.clear()

    def release(self) -> None:
        """Let every waiting and later request through."""
        self._holding = False
        self._released.set()

    def fail(self, path: str, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` answer 500."""
        self.failures[path] += times

    async def arrived(self, count: int = 1, path: str | None = None,
                      timeout: float = 10.0) -> None:
        """Wait until ``count`` requests (to ``path``, or to any path) have arrived."""
        def enough() -> bool:
            return (self.hits[path] if path is not None else len(self.requests)) >= count

        async with asyncio.timeout(timeout), self._arrival:
            await self._arrival.wait_for(enough)

    async def close(self) -> None:
        """Stop listening: connections to ``base`` are refused from now on."""
        self.release()
        await self.server.close()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append(request)
        transport = request.transport
        self.peers.append(transport.get_extra_info("peername")[:2] if transport else ("", 0))
        self.hits[path] += 1
        async with self._arrival:
            self._arrival.notify_all()
        handler, hold = self._find(path)
        if hold or self._holding:
            await self._released.wait()
        if self.failures[path] > 0:
            self.failures[path] -= 1
            return web.Response(status=500, text="boom")
        if handler is None:
            return web.Response(status=404, text="no such path on the test origin")
        return await handler(request)

    def _find(self, path: str) -> tuple[Handler | None, bool]:
        if path in self._routes:
            return self._routes[path]
        prefixes = [p for p in self._routes if p.endswith("*") and path.startswith(p[:-1])]
        return self._routes[max(prefixes, key=len)] if prefixes else (None, False)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """A real HTTP origin on 127.0.0.1 for one test (see ``Origin``); the proxy reaches
    it with ``LOOPBACK`` in its settings."""
    server = Origin()
    await server.server.start_server()
    yield server
    await server.close()


async def fetch_source(sources: Sources, url: str, max_bytes: int | None = None) -> Fetched:
    """Check then fetch ``url`` as the server does; ``max_bytes`` None: the setting."""
    limit = sources.settings.max_src_file_size if max_bytes is None else max_bytes
    return await sources.fetch(sources.check(url), limit)



async def assert_revalidates(client: Any, path: str, change: Callable[[], object]) -> None:
    """The result at ``path`` answers 304 to its own ETag until ``change()`` replaces the
    source, then 200 with another ETag (a source's validators, end to end)."""
    first = await client.get(path)
    assert first.status == 200
    etag = first.headers["ETag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert (again.status, again.headers["ETag"]) == (304, etag)
    change()
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


# --- ``vipsgate serve`` as a subprocess --------------------------------------------------

BANNER = re.compile(r"vipsgate listening on (http://127\.0\.0\.1:(\d+))")


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (for a server that needs a fixed
    port: several processes share one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """The lines a subprocess writes to one pipe, read by a thread as they come (so
    the pipe never fills up), and waited for with a deadline."""

    def __init__(self, pipe: IO[str], name: str) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), name=name,
                                        daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str | re.Pattern[str], count: int = 1,
                 timeout: float = 30.0) -> list[re.Match[str]]:
        """The first ``count`` lines that match ``pattern`` (searched), once written."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [match for match in map(regex.search, self.lines) if match]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    why = "the output ended" if self.ended else f"none within {timeout} s"
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"{count} line(s) matching {regex.pattern!r} expected,"
                                         f" {len(found)} seen ({why}); last lines:\n{tail}")
                self._changed.wait(left)

    def rest(self, timeout: float = 10.0) -> list[str]:
        """Every line, once the pipe has closed (the process and its children exited)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self._thread.name} is still open"
        return list(self.lines)

    def _pump(self, pipe: IO[str]) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()


class ServerProcess:
    """A running ``python -m vipsgate serve`` started by the ``serve`` fixture."""

    def __init__(self, args: list[str], env: dict[str, str], processes: int,
                 timeout: float) -> None:
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout = Output(self.proc.stdout, f"serve-{self.proc.pid}-stdout")
        self.stderr = Output(self.proc.stderr, f"serve-{self.proc.pid}-stderr")
        try:  # one banner per process: "vipsgate listening on http://127.0.0.1:PORT (...)"
            banners = self.stdout.wait_for(BANNER, processes, timeout)
        except AssertionError as failed:
            self.stop()
            raise AssertionError(f"{failed}\nexit status {self.proc.returncode}, stderr:\n"
                                 + "\n".join(self.stderr.rest()[-20:])) from None
        self.banners = [match.string for match in banners]
        self.base_url = banners[0].group(1)
        self.port = int(banners[0].group(2))
        #: the server processes' ids, from the banners (only with several processes)
        self.pids = {int(pid) for line in self.banners for pid in re.findall(r"process (\d+)",
                                                                               line)}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        """The exit status, once the process exits (``TimeoutExpired`` after ``timeout``)."""
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


ServeFactory = Callable[..., ServerProcess]


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    """``serve(**env)``: ``python -m vipsgate serve --host 127.0.0.1 --port 0`` with the
    environment without any IMGPROXY_/VIPSGATE_ setting plus the test key/salt
    (``keys=False``: none, development mode) plus ``env``; returns once it listens
    (the port read from its banner, within ``timeout`` s). ``processes=N`` > 1 runs
    ``--processes N`` on a free fixed port and waits for N banners. Every server is
    stopped at teardown: SIGTERM, then SIGKILL."""
    started: list[ServerProcess] = []

    def start(*, processes: int = 1, keys: bool = True, timeout: float = 30.0,
              **env: str) -> ServerProcess:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}
        if keys:
            environ.update(IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT)
        environ.update(env)
        port = free_port() if processes > 1 else 0
        args = [sys.executable, "-m", "vipsgate", "serve", "--host", "127.0.0.1",
                "--port", str(port)]
        args += ["--processes", str(processes)]  # one unless asked (the default: per CPU)
        server = ServerProcess(args, environ, processes, timeout)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        server.stdout.rest()
        server.stderr.rest()

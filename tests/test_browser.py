"""The real client is a browser: headless Chromium against the real app.

One Chromium (Debian's ``chromium``, driven by Playwright, no browser download)
and one server thread per module. The server runs the real app with the test key,
the bundled sample images as ``local:///`` and the playground on; a tiny second
app serves a page made of the URL helper's ``<picture>`` and ``srcset`` output.
The playground's JSON endpoint is also tested over plain HTTP (no browser needed).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvips
from aiohttp import web

from conftest import ROOT, TEST_KEY, TEST_SALT, make_settings, signed
from vipsgate.app import create_app
from vipsgate.config import SAMPLES_DIR
from vipsgate.urlbuilder import UrlBuilder

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MISSING = "Chromium not available: install Debian's chromium package"
ARTIFACT = ROOT / "test-artifacts" / "playground.png"
DOCS_SCREENSHOT = ROOT / "docs" / "playground.png"
LANDSCAPE = (1600, 1067)  # proxy/samples/landscape.jpg
PORTRAIT = (900, 1067)  # proxy/samples/portrait-exif6.jpg as displayed (EXIF 6)
PREFERRED_PORT = 8080  # `make run`'s port: the screenshot shows the URLs a developer sees


# --- servers in a background thread ---------------------------------------------------

class Servers:
    """The image server (playground on) and a test-page server on 127.0.0.1."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.runners: list[web.AppRunner] = []
        self.image_base = self.page_base = ""
        self.thread = threading.Thread(target=self._run, name="browser-servers", daemon=True)

    def __enter__(self) -> Servers:
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the servers did not start within 30 s")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        app = create_app(make_settings(SAMPLES_DIR, VIPSGATE_PLAYGROUND="1"))
        self.image_base = await self._serve(app, PREFERRED_PORT)
        page = web.Application()
        page.router.add_get("/", self._page)
        self.page_base = await self._serve(page, 0)

    async def _serve(self, app: web.Application, port: int) -> str:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:  # taken: any free port (the screenshot then shows that one)
            listener.bind(("127.0.0.1", 0))
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self.runners.append(runner)
        await web.SockSite(runner, listener).start()
        host, bound = listener.getsockname()[:2]
        return f"http://{host}:{bound}"

    async def _stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_page(self.image_base), content_type="text/html")


def builder(base: str) -> UrlBuilder:
    return UrlBuilder(base, TEST_KEY, TEST_SALT)


def render_page(image_base: str) -> str:
    """A page as a backend would render it with the URL helper."""
    images = builder(image_base)
    picture = images.picture("local:///landscape.jpg", 200, 0, formats=("avif", "webp", "jpeg"),
                             alt="landscape", source_size=LANDSCAPE, loading="eager",
                             attrs={"id": "picture"})
    negotiated = images.url("local:///portrait-exif6.jpg", 150, 0, source_size=PORTRAIT)
    srcset = images.srcset("local:///portrait-exif6.jpg", 150, 0, densities=(1, 2, 3))
    return (f"<!doctype html><meta charset=utf-8><title>url helper</title>{picture}"
            f'<img id="negotiated" src="{negotiated.url}" srcset="{srcset}" '
            f'width="{negotiated.width}" height="{negotiated.height}" alt="portrait">')


# --- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(MISSING)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def image_responses(page: Any, base: str) -> list[Any]:
    """Record every response from the image server."""
    seen: list[Any] = []
    page.on("response", lambda r: seen.append(r) if r.url.startswith(base + "/") else None)
    return seen


# --- the sign endpoint over HTTP (no browser; before the browser tests: sync Playwright
# --- holds this thread's event loop while its module-scoped fixture lives) -----------

async def sign(client: Any, form: Any) -> tuple[int, Any]:
    response = await client.post("/playground/sign", data=json.dumps(form))
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_sign_endpoint_signs_with_the_server_key(make_client, images: Path) -> None:
    (images / "cat.png").write_bytes((SAMPLES_DIR / "logo.png").read_bytes())
    client = await make_client(VIPSGATE_PLAYGROUND="1")
    status, body = await sign(client, {"source": "local:///cat.png", "width": "64",
                                       "height": "", "resizing_type": "fill",
                                       "gravity": "sm", "dpr": "1", "quality": "70",
                                       "format": "webp", "encode": "plain"})
    assert status == 200, body
    assert set(body) == {"path", "url", "srcset", "picture"}
    assert body["path"] == signed("/rs:fill:64:0/g:sm/q:70/plain/local:///cat.png@webp")
    image = await client.get(body["path"])
    assert image.status == 200 and image.content_type == "image/webp"
    assert body["url"].endswith(body["path"]) and body["url"].startswith("http://127.0.0.1:")
    assert body["srcset"].count("/dpr:") == 2 and body["picture"].count("<source") == 2
    samples = await (await client.get("/playground/samples")).json()
    assert samples == {"samples": ["local:///cat.png"]}


async def test_sign_endpoint_under_a_path_prefix(make_client) -> None:
    client = await make_client(VIPSGATE_PLAYGROUND="1", IMGPROXY_PATH_PREFIX="/img",
                               IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(SAMPLES_DIR))
    page = await client.get("/img/playground")
    assert page.status == 200 and 'src="playground/app.js"' in await page.text()
    response = await client.post("/img/playground/sign",
                                 data=json.dumps({"source": "local:///logo.png", "width": 32}))
    body = await response.json()
    assert response.status == 200, body
    assert body["path"].startswith("/img/") and body["url"].endswith(body["path"])
    image = await client.get(body["path"], headers={"Accept": "image/webp"})
    assert image.status == 200 and image.content_type == "image/webp"
    assert image.headers["Vary"] == "Accept"


@pytest.mark.parametrize("form", [
    {"source": "file:///etc/passwd"},
    {"source": "s3://bucket/cat.jpg"},
    {"source": "local:///cat.png", "width": "-5"},
    {"source": "local:///cat.png", "dpr": "0"},
    {"source": "local:///cat.png", "gravity": "sideways"},
    {"source": "local:///cat.png", "format": "exe"},
    {"source": "local:///cat.png", "width": "wide"},
    ["not", "an", "object"],
])
async def test_sign_endpoint_rejects_invalid_forms(make_client, form: Any) -> None:
    client = await make_client(VIPSGATE_PLAYGROUND="1")
    status, body = await sign(client, form)
    assert status == 400 and body["error"], body


async def test_sign_endpoint_bounds_the_body_and_redirects_the_slash(make_client) -> None:
    client = await make_client(VIPSGATE_PLAYGROUND="1")
    padding = "x" * 9000  # over the endpoint's 8 KiB, in several TCP reads
    status, body = await sign(client, {"source": "local:///cat.png", "pad": padding})
    assert status == 400 and "too large" in body["error"]
    response = await client.get("/playground/", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/playground"


async def test_playground_is_off_by_default(make_client) -> None:
    client = await make_client()
    assert (await client.get("/playground")).status == 404
    assert (await client.post("/playground/sign", data="{}")).status in (404, 405)


# --- the URL helper's markup in a real browser ---------------------------------------

@pytest.mark.browser
def test_picture_and_srcset_in_chromium(browser: Any, servers: Servers) -> None:
    context = browser.new_context(device_scale_factor=2, viewport={"width": 800, "height": 600})
    try:
        page = context.new_page()
        seen = image_responses(page, servers.image_base)
        page.goto(servers.page_base + "/", wait_until="load")
        shown = page.evaluate("""() => Array.from(document.images, (img) => ({
            id: img.id, src: img.currentSrc, complete: img.complete,
            natural: img.naturalWidth, width: img.width}))""")
        by_url = {r.url: r for r in seen}
        got = {img["id"]: fetched(by_url[img["src"]]) for img in shown}
    finally:
        context.close()

    assert {img["id"] for img in shown} == {"picture", "negotiated"}
    assert {img["width"] for img in shown} == {200, 150}  # the builder's width attributes
    for img in shown:  # decoded, the 2x variant, with twice the pixels
        response = got[img["id"]]
        assert img["complete"] and img["natural"] > 0, img
        assert "/dpr:2/" in img["src"], img
        # naturalWidth is density-corrected (the srcset's 2x halves it): the pixels are 2x
        assert img["natural"] == img["width"], img
        assert response["pixels"] == 2 * img["width"], (img, response)
        assert response["status"] == 200
        assert "image/avif" in response["accept"] and "image/webp" in response["accept"]

    # <picture>: Chromium takes the first <source> type it decodes, AVIF
    picture = got["picture"]
    assert picture["url"].endswith(".avif") and picture["type"] == "image/avif"
    # plain srcset: the server chose the format from the Accept header, and says so
    negotiated = got["negotiated"]
    assert negotiated["type"] in ("image/avif", "image/webp"), negotiated
    assert "accept" in negotiated["vary"].lower(), negotiated
    assert all("/dpr:3/" not in r.url for r in seen)  # only the variants it needed


def fetched(response: Any) -> dict[str, Any]:
    """What the browser sent and got for one image, and the image's real pixel width."""
    body = response.body()
    return {"url": response.url, "status": response.status,
            "accept": response.request.all_headers().get("accept", ""),
            "type": response.headers.get("content-type", ""),
            "vary": response.headers.get("vary", ""),
            "bytes": len(body), "pixels": pyvips.Image.new_from_buffer(body, "").width}


# --- the playground -------------------------------------------------------------------

@pytest.mark.browser
def test_playground_round_trip(browser: Any, servers: Servers) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        page = context.new_page()
        seen = image_responses(page, servers.image_base)
        page.goto(servers.image_base + "/playground")
        page.wait_for_selector("body[data-state=ready]")
        first = page.get_attribute("#result", "data-url")
        assert first and "rs:fit:400:300" in first

        page.fill("#width", "480")
        page.fill("#height", "0")
        page.click("#go")
        page.wait_for_selector('#result[data-url*="rs:fit:480:0/"]')
        page.wait_for_selector("body[data-state=ready]")
        url = page.get_attribute("#result", "data-url")
        natural = page.evaluate("document.getElementById('result').naturalWidth")
        facts = {name: page.inner_text(f"#{name}") for name in ("size", "bytes", "type")}
        html = page.content()
        results = [(r.status, r.headers.get("content-type", ""),
                    r.request.all_headers().get("accept", "")) for r in seen if r.url == url]
        ARTIFACT.parent.mkdir(exist_ok=True)
        page.mouse.move(1090, 790)  # no hover or focus styles in the picture
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=str(ARTIFACT), animations="disabled")
    finally:
        context.close()

    assert url and url != first and url.startswith(servers.image_base + "/")
    assert url.split("/")[3] != first.split("/")[3]  # a new signature
    assert results, "the page did not fetch the new URL"
    status, content_type, accept = results[-1]
    assert status == 200 and content_type.startswith("image/"), results
    assert facts["type"] == content_type
    assert TEST_KEY not in html and TEST_SALT not in html
    # the same request outside the browser: the server accepts the URL, and the page
    # showed that image's real size and byte count (Playwright has no body for fetch())
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"] == content_type
        body = response.read()
    assert natural == pyvips.Image.new_from_buffer(body, "").width == 480
    assert facts["size"].startswith("480 × ")
    assert int(facts["bytes"].split()[0].replace(",", "")) == len(body)
    _publish(ARTIFACT)


def _publish(screenshot: Path) -> None:
    """Copy the screenshot to docs/ for the README as an 8-bit palette PNG (under half
    the size). Chromium's text rendering varies by a level in a few pixels from run to
    run, so the file is rewritten only when the picture changed visibly: `make test`
    leaves the tree clean."""
    shot = pyvips.Image.new_from_file(str(screenshot))
    assert (shot.width, shot.height) == (1100, 800)
    data = shot.pngsave_buffer(palette=True, compression=9, strip=True)
    if DOCS_SCREENSHOT.is_file():
        old = pyvips.Image.new_from_file(str(DOCS_SCREENSHOT))
        new = pyvips.Image.new_from_buffer(data, "")
        if (old.width, old.height) == (new.width, new.height):
            diff = (old.extract_band(0, n=3) - new.extract_band(0, n=3)).abs().bandmean()
            if (diff > 32).avg() / 255 < 0.0002:  # fewer than ~180 pixels changed
                return
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    DOCS_SCREENSHOT.write_bytes(data)

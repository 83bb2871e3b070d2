"""HTTP(S) sources against a real origin on 127.0.0.1: SSRF guard, redirects, limits.

Every socket connect made in this module is recorded; a test fails if anything
tried to dial an address that is not loopback, so "refused before dialling" is
checked on the wire, not inferred from timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.resolver import DefaultResolver
from yarl import URL

from conftest import LOOPBACK, Origin, fetch_source, make_settings, signed
from imagegen import jpeg, load
from vipsgate.app import SOURCES
from vipsgate.errors import InvalidSource, SourceNotFound, SourceTooLarge
from vipsgate.paths import encode_source
from vipsgate.sources import Sources, check_size
from vipsgate.sources.http import (
    BlockedAddress,
    GuardedResolver,
    guarded_socket_factory,
    status_error,
)
from vipsgate.sources.netguard import AddressPolicy

IMAGE = jpeg(64, 48)


class Dialled(list[str]):
    """Addresses connected to; ``ports`` holds the ports."""

    ports: list[int]


@pytest.fixture(autouse=True)
def dialled(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dialled]:
    """Every address a socket in this process connects to, during one test."""
    seen = Dialled()
    seen.ports = []
    original = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        if isinstance(address, tuple):
            seen.append(str(address[0]))
            seen.ports.append(int(address[1]))
        return original(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield seen
    leaked = [a for a in seen if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    assert not leaked, f"connections left loopback: {leaked}"


IMAGE_HEADERS = {"Set-Cookie": "session=abc; Path=/", "ETag": '"v1"',
                 "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT",
                 "Cache-Control": "max-age=60", "Expires": "Thu, 22 Oct 2015 07:28:00 GMT"}


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def chain(request: web.Request) -> web.Response:
    hops = int(request.path.rsplit("/", 1)[1])
    raise web.HTTPFound(f"/chain/{hops - 1}" if hops > 1 else "/img.jpg")


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.path.rsplit("/", 1)[1]), text="origin says no")


async def truncated(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(len(IMAGE))})
    await response.prepare(request)
    await response.write(IMAGE[:100])
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.fixture
def origin(origin: Origin) -> Origin:
    """The shared origin with this module's routes (``/bare``, without validators, is
    replaced by ``origin.add("/bare", ...)``; ``/slow`` is released at teardown)."""
    origin.add("/img.jpg", IMAGE, **IMAGE_HEADERS)
    origin.add("/bare", IMAGE)
    origin.route("/redirect", redirect)
    origin.route("/chain/*", chain)
    origin.route("/status/*", status)
    origin.add("/slow", IMAGE, hold=True)
    origin.add("/declared-huge", b"", hold_body=True, **{"Content-Length": str(512 * 1024**2)})
    origin.route("/truncated", truncated)
    return origin


@dataclass
class Endless:
    """``/endless``: a chunked body that never ends; it stops when the client hangs up."""

    streamed: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\xff" * 65536
        try:
            while self.streamed < 1024**3:  # a bound for a broken client, never reached
                await response.write(chunk)
                self.streamed += len(chunk)
        finally:  # the client hung up: a write failed or aiohttp cancelled the handler
            self.closed.set()
        return response


@pytest.fixture
def endless(origin: Origin) -> Endless:
    body = Endless()
    origin.route("/endless", body.handler)
    return body


def image_path(source: str, encoding: str = "base64") -> str:
    return signed("/rs:fit:32:32/" + encode_source(source, encoding))


async def test_origin_is_refused_by_default_and_served_with_loopback_allowed(
        make_client, origin: Origin, dialled: list[str]) -> None:
    client = await make_client()
    response = await client.get(image_path(origin.url("/img.jpg")))
    assert response.status == 404
    assert origin.requests == []
    assert str(origin.port) not in " ".join(dialled)

    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(origin.url("/img.jpg")))
    assert response.status == 200
    out = load(await response.read())
    assert (out.width, out.height) == (32, 24)
    assert len(origin.requests) == 1
    assert origin.requests[0].headers["User-Agent"] == "vipsgate/0.1"
    assert "127.0.0.1" in dialled  # the recorder sees this event loop's connects


async def test_hostname_resolving_to_loopback_is_refused(make_client, origin: Origin) -> None:
    client = await make_client()
    response = await client.get(image_path(origin.url("/img.jpg", host="localhost")))
    assert response.status == 404
    assert origin.requests == []
    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(origin.url("/img.jpg", host="localhost")))
    assert response.status == 200


@pytest.mark.parametrize("host", [
    "2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::1]",
    "[64:ff9b::7f00:1]"])
async def test_other_spellings_of_loopback_are_refused(make_client, origin: Origin,
                                                       host: str) -> None:
    client = await make_client()
    response = await client.get(image_path(origin.url("/img.jpg", host=host)))
    assert response.status == 404
    assert origin.requests == []


async def test_query_string_and_user_agent_reach_the_origin(make_client, origin: Origin) -> None:
    client = await make_client(IMGPROXY_USER_AGENT="thumbs/%current_version (+ops@x)",
                               **LOOPBACK)
    for encoding in ("base64", "plain"):
        response = await client.get(image_path(origin.url(f"/img.jpg?w=1&e={encoding}"),
                                               encoding))
        assert response.status == 200
    assert [dict(r.query) for r in origin.requests] == [{"w": "1", "e": "base64"},
                                                        {"w": "1", "e": "plain"}]
    assert origin.requests[0].headers["User-Agent"] == "thumbs/0.1.0 (+ops@x)"
    assert "Cookie" not in origin.requests[1].headers  # no jar shared between requests


@pytest.mark.parametrize("target", [
    "http://10.0.0.1/img.jpg", "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/", "http://[64:ff9b::a00:1]/", "http://0.0.0.0/",
    "http://192.168.1.1:8080/x"])
async def test_redirect_to_private_or_metadata_address_is_refused_before_dialling(
        make_client, origin: Origin, dialled: list[str], target: str) -> None:
    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(origin.url(f"/redirect?to={target}")))
    assert response.status == 404
    assert (await response.text()).strip() == "Invalid source URL"
    assert len(origin.requests) == 1
    assert URL(target).host not in dialled


async def test_redirects_are_followed_up_to_the_limit(make_client, origin: Origin) -> None:
    client = await make_client(IMGPROXY_MAX_REDIRECTS="3", **LOOPBACK)
    assert (await client.get(image_path(origin.url("/chain/3")))).status == 200
    origin.requests.clear()
    response = await client.get(image_path(origin.url("/chain/4")))
    assert response.status == 404
    assert [r.path for r in origin.requests] == ["/chain/4", "/chain/3", "/chain/2", "/chain/1"]


async def test_allowed_sources_are_checked_on_every_redirect(make_client,
                                                             origin: Origin) -> None:
    prefix = f"http://127.0.0.1:{origin.port}/"
    client = await make_client(IMGPROXY_ALLOWED_SOURCES=f"{prefix}redirect,{prefix}chain/",
                               **LOOPBACK)
    response = await client.get(image_path(origin.url("/redirect?to=/img.jpg")))
    assert response.status == 404
    assert [r.path for r in origin.requests] == ["/redirect"]
    assert (await client.get(image_path(origin.url("/img.jpg")))).status == 404
    response = await client.get(image_path(origin.url("/redirect?to=/chain/1")))
    assert response.status == 404  # /chain/1 is allowed, its redirect to /img.jpg is not
    assert [r.path for r in origin.requests] == ["/redirect", "/redirect", "/chain/1"]


async def test_redirect_to_another_scheme_is_refused(make_client, images,
                                                     origin: Origin) -> None:
    (images / "secret.jpg").write_bytes(IMAGE)
    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(origin.url("/redirect?to=local:///secret.jpg")))
    assert response.status == 404


async def test_endless_body_is_cut_off_at_the_size_limit(make_client, origin: Origin,
                                                         endless: Endless) -> None:
    limit = 256 * 1024
    client = await make_client(IMGPROXY_MAX_SRC_FILE_SIZE=str(limit), **LOOPBACK)
    response = await client.get(image_path(origin.url("/endless")))
    assert response.status == 422
    async with asyncio.timeout(10):
        await endless.closed.wait()  # the proxy hung up on the origin mid-body
    assert endless.streamed < 64 * 1024**2


async def test_declared_length_over_the_limit_is_refused_without_reading(
        make_client, origin: Origin) -> None:
    client = await make_client(IMGPROXY_MAX_SRC_FILE_SIZE="1MiB", IMGPROXY_DOWNLOAD_TIMEOUT="30",
                               **LOOPBACK)
    response = await client.get(image_path(origin.url("/declared-huge")))
    assert response.status == 422


async def test_slow_origin_times_out_with_504(make_client, origin: Origin) -> None:
    client = await make_client(IMGPROXY_DOWNLOAD_TIMEOUT="0.5", **LOOPBACK)
    response = await client.get(image_path(origin.url("/slow")))
    assert response.status == 504
    assert len(origin.requests) == 1


async def test_body_cut_short_is_422(make_client, origin: Origin) -> None:
    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(origin.url("/truncated")))
    assert response.status == 422


@pytest.mark.parametrize(("code", "expected"), [
    (500, 502), (503, 502), (403, 403), (429, 429), (418, 418), (404, 404), (410, 404),
    (401, 401), (407, 407), (408, 408)])  # every 4xx as is (imgproxy 3.31+)
async def test_origin_status_mapping(make_client, origin: Origin, code: int,
                                     expected: int) -> None:
    """imgproxy's fetcher/errors.go (newResponseStatusError): 4xx as is, 5xx -> 502."""
    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(origin.url(f"/status/{code}")))
    assert response.status == expected
    assert "origin says no" not in await response.text()


async def test_connection_refused_is_502(make_client, origin: Origin) -> None:
    port = origin.port
    await origin.close()
    client = await make_client(**LOOPBACK)
    response = await client.get(image_path(f"http://127.0.0.1:{port}/img.jpg"))
    assert response.status == 502


async def test_meta_and_headers_come_from_the_origin(origin: Origin) -> None:
    settings = make_settings(**LOOPBACK)
    async with Sources(settings) as sources:
        fetched = await fetch_source(sources, origin.url("/img.jpg"))
    assert fetched.data == IMAGE
    meta = fetched.meta
    assert (meta.etag, meta.content_type, meta.cache_control, meta.size) == (
        '"v1"', "image/jpeg", "max-age=60", len(IMAGE))
    assert meta.last_modified == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert meta.expires == "Thu, 22 Oct 2015 07:28:00 GMT"


async def test_one_session_serves_every_request(make_client, origin: Origin) -> None:
    client = await make_client(**LOOPBACK)
    http = client.app[SOURCES].by_scheme["http"]
    session = http.session
    for i in range(3):
        assert (await client.get(image_path(origin.url(f"/img.jpg?n={i}")))).status == 200
    assert http.session is session and not session.closed
    assert len(set(origin.peers)) == 1  # one kept-alive connection from the shared pool


async def test_guarded_resolver_filters_real_resolution() -> None:
    refusing = GuardedResolver(AddressPolicy(), DefaultResolver())
    with pytest.raises(BlockedAddress):
        await refusing.resolve("localhost", 80)
    allowing = GuardedResolver(AddressPolicy(allow_loopback=True), DefaultResolver())
    results = await allowing.resolve("localhost", 80)
    assert results and all(ipaddress.ip_address(r["host"]).is_loopback for r in results)
    await refusing.close()
    await allowing.close()


def test_socket_factory_refuses_to_dial_forbidden_addresses() -> None:
    factory = guarded_socket_factory(AddressPolicy(allow_loopback=True))
    stream = (socket.AF_INET, socket.SOCK_STREAM, 0, "")
    with pytest.raises(BlockedAddress):
        factory((*stream, ("169.254.169.254", 80)))
    with pytest.raises(BlockedAddress):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 0, "", ("::ffff:10.0.0.1", 80, 0, 0)))
    sock = factory((*stream, ("127.0.0.1", 80)))
    sock.close()


def test_status_mapping_function() -> None:
    assert status_error(200, "u") is None
    assert isinstance(status_error(404, "u"), SourceNotFound)
    assert status_error(418, "u").status == 418  # type: ignore[union-attr]
    for code in (401, 407, 408):  # passed through, as imgproxy 3.31+ does
        assert status_error(code, "u").status == code  # type: ignore[union-attr]
    assert status_error(502, "u").status == 502  # type: ignore[union-attr]
    assert status_error(302, "u").status == 502  # type: ignore[union-attr]


async def raw_get(client, path: str):  # type: ignore[no-untyped-def]
    """GET ``path`` byte for byte (the client's URL class would re-quote it)."""
    return await client.session.get(
        URL(str(client.make_url("/")).rstrip("/") + path, encoded=True))


def plain_path(source: str) -> str:
    """A signed ``plain/`` path (``@`` escaped: it would start the extension); ``%3F``
    etc. stay as the attacker sent them, the parser decodes them."""
    return signed("/rs:fit:10:10/plain/" + quote(source, safe=":/%"))


@pytest.mark.parametrize("source", [
    "http://127.0.0.1:{port}%3F.example.com/img.jpg",  # %3F decodes to ?: query
    "http://127.0.0.1:{port}%23.example.com/img.jpg",  # #: fragment
    "http://127.0.0.1:{port}%5C.example.com/img.jpg",  # \\: browsers' /
    "http://a.example.com@127.0.0.1:{port}/img.jpg",  # userinfo
    "http://x.example.com:pw@127.0.0.1:{port}/img.jpg",
    "http://127.0.0.1:{port}/.example.com/img.jpg"])
async def test_wildcard_cannot_reach_past_the_host(make_client, origin: Origin,
                                                   dialled: Dialled, source: str) -> None:
    port = origin.port
    client = await make_client(IMGPROXY_ALLOWED_SOURCES="http://*.example.com/", **LOOPBACK)
    response = await raw_get(client, plain_path(source.format(port=port)))
    assert response.status == 404
    assert origin.requests == [] and port not in dialled.ports


@pytest.mark.parametrize("source", [
    "http://a.example.com@127.0.0.1:{port}/img.jpg", "http://a.example.com:x@127.0.0.1:{port}/",
    "http://a.example.com:{port}@127.0.0.1:{port}/img.jpg"])
async def test_host_pattern_without_slash_ends_at_the_host(make_client, origin: Origin,
                                                           dialled: Dialled,
                                                           source: str) -> None:
    port = origin.port
    client = await make_client(IMGPROXY_ALLOWED_SOURCES="http://a.example.com", **LOOPBACK)
    response = await raw_get(client, plain_path(source.format(port=port)))
    assert response.status == 404
    assert origin.requests == [] and port not in dialled.ports


async def test_allowed_pattern_with_wildcard_still_serves(make_client, origin: Origin) -> None:
    port = origin.port
    client = await make_client(IMGPROXY_ALLOWED_SOURCES=f"http://*:{port}/img", **LOOPBACK)
    assert (await raw_get(client, plain_path(origin.url("/img.jpg")))).status == 200
    assert (await raw_get(client, plain_path(origin.url("/bare")))).status == 404
    assert [r.path for r in origin.requests] == ["/img.jpg"]


async def test_redirect_to_userinfo_trick_is_refused(make_client, origin: Origin) -> None:
    port = origin.port
    client = await make_client(
        IMGPROXY_ALLOWED_SOURCES=f"http://127.0.0.1:{port}/redirect,http://a.example.com",
        **LOOPBACK)
    target = quote(f"http://a.example.com@127.0.0.1:{port}/img.jpg", safe="")
    response = await client.get(image_path(origin.url(f"/redirect?to={target}")))
    assert response.status == 404
    assert [r.path for r in origin.requests] == ["/redirect"]


MALFORMED = [
    "http://[::1/img.jpg", "http://[zz]/img.jpg", "https://xn--/x", "http://[::1]x/",
    "http://" + "a" * 300 + ".example.com/img.jpg", "http://a..b/x", "http://127.0.0.1:99999/",
    "http://h:port/", "http:///img.jpg", "http://a\\b/", "http://[::1]:x/"]


@pytest.mark.parametrize("source", MALFORMED)
async def test_malformed_source_urls_are_404(make_client, origin: Origin, dialled: Dialled,
                                             source: str) -> None:
    client = await make_client(**LOOPBACK)
    response = await raw_get(client, plain_path(source))
    assert response.status == 404
    assert (await response.text()).strip() == "Invalid source URL"
    assert origin.requests == [] and dialled.ports == [client.server.port]


async def test_malformed_redirect_target_is_refused(make_client, origin: Origin) -> None:
    client = await make_client(**LOOPBACK)
    for target in ("http://[zz]/x", "https://xn--/x", f"http://{'a' * 300}.example.com/"):
        response = await client.get(image_path(origin.url(f"/redirect?to={quote(target)}")))
        assert response.status in (404, 502)
    assert len(origin.requests) == 3


async def test_per_request_size_limit(origin: Origin, images) -> None:  # type: ignore[no-untyped-def]
    (images / "a.jpg").write_bytes(IMAGE)
    settings = make_settings(images, IMGPROXY_MAX_SRC_FILE_SIZE="100", **LOOPBACK)
    async with Sources(settings) as sources:
        for url in (origin.url("/img.jpg"), "local:///a.jpg"):
            with pytest.raises(SourceTooLarge):
                await fetch_source(sources, url)  # the setting
            fetched = await fetch_source(sources, url, max_bytes=len(IMAGE))  # msfs raises it
            assert fetched.data == IMAGE
            assert (await fetch_source(sources, url, max_bytes=0)).data == IMAGE  # 0: no limit
            with pytest.raises(SourceTooLarge):
                await fetch_source(sources, url, max_bytes=len(IMAGE) - 1)
            # a source from the originals cache, fetched under a larger limit
            assert check_size(fetched, len(IMAGE)) is fetched
            assert check_size(fetched, 0) is fetched
            with pytest.raises(SourceTooLarge):
                check_size(fetched, len(IMAGE) - 1)
            with pytest.raises(SourceTooLarge):
                check_size(fetched, 100)  # the setting
    assert len(origin.requests) == 4


async def test_source_without_validators_gets_a_content_etag(make_client, origin: Origin) -> None:
    async with Sources(make_settings(**LOOPBACK)) as sources:
        meta = (await fetch_source(sources, origin.url("/bare"))).meta
        assert meta.etag == f'"b2-{hashlib.blake2b(IMAGE, digest_size=16).hexdigest()}"'
        assert meta.last_modified is None
        assert (await fetch_source(sources, origin.url("/img.jpg"))).meta.etag == '"v1"'  # kept

    path = image_path(origin.url("/bare"))
    etags = []
    for body in (IMAGE, IMAGE, jpeg(64, 48, q=50)):
        origin.add("/bare", body)
        client = await make_client(**LOOPBACK)  # a fresh app: no cached source or result
        response = await client.get(path)
        assert response.status == 200
        etags.append(response.headers["ETag"])
        again = await client.get(path, headers={"If-None-Match": etags[-1]})
        assert again.status == 304
    assert etags[0] == etags[1] != etags[2]


@pytest.mark.parametrize("source", MALFORMED)
async def test_malformed_source_urls_are_invalid_in_the_sources_layer(
        origin: Origin, dialled: Dialled, source: str) -> None:
    async with Sources(make_settings(**LOOPBACK)) as sources:
        with pytest.raises(InvalidSource):
            await fetch_source(sources, source)
        with pytest.raises(InvalidSource):  # the HTTP source alone, no Sources.check
            await sources.by_scheme["http"].open(source, 0)
    assert dialled == []

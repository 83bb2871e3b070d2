"""``raw``: the origin's response relayed, against a real HTTP origin on 127.0.0.1.

Ported from imgproxy's ``handlers/stream/handler_test.go`` (TestHandlerBasicRequest,
...ResponseHeadersPassthrough, ...RequestHeadersPassthrough, ...ContentDisposition,
...CacheControl, ...SecurityHeaders, ...ErrorResponse, ...CanonicalHeader) and
``integration_test/processing_handler_test.go`` (TestRawOption).
"""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from aiohttp import web

from conftest import LOOPBACK, Origin, signed
from imagegen import jpeg, solid
from vipsgate.respond import CSP

DATA = solid(8, 8).pngsave_buffer()
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.fixture
def proxy(make_client):  # type: ignore[no-untyped-def]
    def factory(**env: str):  # type: ignore[no-untyped-def]
        return make_client(**LOOPBACK, IMGPROXY_TTL="4242", **env)
    return factory


def max_age(response) -> int:  # type: ignore[no-untyped-def]
    return next(int(d.strip()[8:]) for d in response.headers["Cache-Control"].split(",")
                if d.strip().startswith("max-age="))


async def test_basic_request_and_response_headers_pass_through(proxy, origin):
    """TestHandlerBasicRequest, TestHandlerResponseHeadersPassthrough, TestRawOption."""
    url = origin.add("/img", DATA, content_type="image/png", **{
        "Accept-Ranges": "bytes", "ETag": "etag", "Last-Modified": LAST_MODIFIED,
        "X-Private": "not passed"})
    client = await proxy()
    response = await client.get(signed(f"/raw:1/plain/{url}"))
    assert response.status == 200 and await response.read() == DATA
    h = response.headers
    assert (h["Content-Type"], h["Content-Length"], h["Accept-Ranges"], h["ETag"],
            h["Last-Modified"]) == ("image/png", str(len(DATA)), "bytes", "etag", LAST_MODIFIED)
    assert "X-Private" not in h
    assert h["Content-Security-Policy"] == CSP  # TestHandlerSecurityHeaders
    assert h["Content-Disposition"] == 'inline; filename="img.png"'


async def test_request_headers_pass_through(proxy, origin):
    """TestHandlerRequestHeadersPassthrough: If-None-Match, Accept-Encoding and Range go to
    the origin; its 304 and 206 come back, the body as sent."""
    async def serve(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"test-etag-123"':
            return web.Response(status=304, headers={"ETag": '"test-etag-123"'})
        if request.headers.get("Range") == "bytes=0-3":
            return web.Response(status=206, body=DATA[:4], headers={
                "Content-Range": f"bytes 0-3/{len(DATA)}", "Content-Type": "image/png"})
        return web.Response(body=DATA, content_type="image/png",
                            headers={"ETag": '"test-etag-123"'})
    url = origin.route("/img.png", serve)
    client = await proxy()
    path = signed(f"/raw:1/plain/{url}")
    response = await client.get(path, headers={"If-None-Match": '"test-etag-123"',
                                               "Accept-Encoding": "gzip"})
    assert response.status == 304 and response.headers["ETag"] == '"test-etag-123"'
    sent = origin.requests[-1].headers
    assert (sent["If-None-Match"], sent["Accept-Encoding"]) == ('"test-etag-123"', "gzip")
    response = await client.get(path, headers={"Range": "bytes=0-3"})
    assert response.status == 206 and await response.read() == DATA[:4]
    assert response.headers["Content-Range"] == f"bytes 0-3/{len(DATA)}"


async def test_encoded_bodies_are_relayed_undecoded(proxy, origin):
    import gzip
    packed = gzip.compress(b"x" * 1000)
    url = origin.add("/img.svgz", packed, content_type="image/png",
                     **{"Content-Encoding": "gzip"})
    client = await proxy()
    response = await client.get(signed(f"/raw:1/plain/{url}"),
                                headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert await response.read() == packed


async def test_content_disposition(proxy, origin):
    """TestHandlerContentDisposition: ``fn`` and ``att`` as for processed images; the
    extension from the URL, else from the Content-Type."""
    url = origin.add("/test.png", DATA, content_type="image/png")
    bare = origin.add("/picture", DATA, content_type="image/png")
    client = await proxy()
    response = await client.get(signed(f"/raw:1/fn:custom_name/att:1/plain/{url}"))
    assert response.headers["Content-Disposition"] == 'attachment; filename="custom_name.png"'
    response = await client.get(signed(f"/raw:1/plain/{bare}"))
    assert response.headers["Content-Disposition"] == 'inline; filename="picture.png"'


@pytest.mark.parametrize(("passthrough", "origin_headers", "expires", "expected"), [
    ("1", {"Cache-Control": "max-age=3600, public"}, None, 3600),  # Passthrough
    ("1", {"Expires": 3600}, None, 3600),  # ExpiresPassthrough
    ("0", {"Cache-Control": "max-age=3600, public"}, None, 4242),  # PassthroughDisabled
    ("0", {}, 3600, 3600),  # WithProcessingOptionsExpires
    ("1", {"Cache-Control": "max-age=7200, public"}, 1800, 1800),  # ...OverridesOrigin
    ("1", {"Cache-Control": "max-age=1800, public", "Expires": 3600}, None, 1800),  # Both
    ("1", {"Cache-Control": "max-age=7200, public", "Expires": 7200}, 2700, 2700),
    ("0", {}, None, 4242),  # NoOriginHeaders
])
async def test_cache_control(proxy, origin, passthrough, origin_headers, expires, expected):
    """TestHandlerCacheControl, case by case."""
    headers = {k: formatdate(time.time() + v, usegmt=True) if k == "Expires" else v
               for k, v in origin_headers.items()}
    url = origin.add("/img.png", DATA, content_type="image/png", **headers)
    client = await proxy(IMGPROXY_CACHE_CONTROL_PASSTHROUGH=passthrough)
    options = f"/exp:{int(time.time()) + expires}" if expires else ""
    response = await client.get(signed(f"/raw:1{options}/plain/{url}"))
    assert response.status == 200
    assert abs(max_age(response) - expected) <= 60
    assert "Expires" not in response.headers


async def test_error_status_passes_through_with_our_body(proxy, origin):
    """TestHandlerErrorResponse: the origin's 404 is ours; the body is vipsgate's one line,
    never the origin's page (a difference, for safety)."""
    origin.add("/teapot", b"<h1>I'm a teapot</h1>", content_type="text/html", status=418)
    client = await proxy()
    response = await client.get(signed(f"/raw:1/plain/{origin.url('/missing')}"))
    assert response.status == 404
    response = await client.get(signed(f"/raw:1/plain/{origin.url('/teapot')}"))
    assert response.status == 418 and "teapot" not in await response.text()


async def test_canonical_header(proxy, origin):
    """TestHandlerCanonicalHeader."""
    url = origin.add("/img.png", DATA, content_type="image/png")
    for enabled in (True, False):
        client = await proxy(IMGPROXY_SET_CANONICAL_HEADER=str(enabled).lower())
        response = await client.get(signed(f"/raw:1/plain/{url}"))
        assert response.headers.get("Link") == (f'<{url}>; rel="canonical"' if enabled else None)


async def test_document_types_are_never_relayed_as_documents(proxy, origin: Origin):
    """A difference, for safety: HTML/SVG/XML types become the sniffed image type or
    ``application/octet-stream``."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    pairs = [("/page", b"<html><script>alert(1)</script></html>", "text/html"),
             ("/drawing.svg", svg, "image/svg+xml"),
             ("/photo", jpeg(16, 16), "text/html")]
    client = await proxy()
    for path, body, content_type in pairs:
        origin.add(path, body, content_type=content_type)
        response = await client.get(signed(f"/raw:1/plain/{origin.url(path)}"))
        assert response.status == 200 and await response.read() == body
        expected = "image/jpeg" if path == "/photo" else "application/octet-stream"
        assert response.headers["Content-Type"] == expected, path


async def test_local_files_answer_304_to_their_own_validators(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(16, 16))
    client = await make_client()
    path = signed("/raw:1/plain/local:///a.jpg")
    first = await client.get(path)
    etag = first.headers["ETag"]
    assert first.status == 200 and first.headers["Content-Type"] == "image/jpeg"
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag
    since = await client.get(path, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status == 304

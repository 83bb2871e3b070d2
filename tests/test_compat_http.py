"""imgproxy's response headers, case by case: CORS, Content-Disposition, Cache-Control,
the canonical link, origin statuses; and client hints end to end."""

from __future__ import annotations

import base64
import time
from email.utils import formatdate
from types import SimpleNamespace

import pytest

from conftest import LOOPBACK, effective, make_settings, signed
from imagegen import jpeg, load
from vipsgate import client_hints
from vipsgate.config import Settings
from vipsgate.http_cache import cache_control
from vipsgate.options import ProcessingOptions
from vipsgate.paths import parse_path
from vipsgate.resolve import Resolver
from vipsgate.respond import content_disposition
from vipsgate.sources import SourceMeta


@pytest.mark.parametrize(("origin", "expected"), [
    ("https://example.com", "https://example.com"), ("", None)])
async def test_cors(make_client, images, origin, expected):
    """server/server_test.go TestWithCORS: the origin and ``GET, OPTIONS``, or nothing."""
    (images / "a.jpg").write_bytes(jpeg(16, 16))
    client = await make_client(IMGPROXY_ALLOW_ORIGIN=origin)
    for response in (await client.get(signed("/plain/local:///a.jpg")),
                     await client.options("/any")):
        assert response.headers.get("Access-Control-Allow-Origin") == expected
        methods = response.headers.get("Access-Control-Allow-Methods")
        assert methods == ("GET, OPTIONS" if expected else None)


@pytest.mark.parametrize(("url", "filename", "ext", "attachment", "expected"), [
    ("http://example.com/test.jpg", None, "jpeg", False, 'inline; filename="test.jpg"'),
    ("http://example.com/path/to/", None, "png", False, 'inline; filename="image.png"'),
    ("http://example.com/path/to/", "example", "png", False, 'inline; filename="example.png"'),
    ("http://example.com/path/to/face.png", None, "jpeg", False, 'inline; filename="face.jpg"'),
    ("http://example.com/path/to/123.png", "face", "jpeg", False,
     'inline; filename="face.jpg"'),
    ("http://example.com/test.jpg", None, "jpeg", True, 'attachment; filename="test.jpg"'),
    ("http://example.com/test.jpg", 'my"file', "png", False,
     'inline; filename="my%22file.png"'),
    ("http://example.com/test.jpg", "back\\slash", "png", False,
     'inline; filename="back\\slash.png"'),
])
def test_content_disposition(url, filename, ext, attachment, expected):
    """httpheaders/cdv_test.go TestContentDispositionValue (the ASCII cases: no
    ``filename*`` added; only a name that is not ASCII gets one)."""
    e = effective()
    e = type(e)(**{**e.__dict__, "filename": filename, "return_attachment": attachment})
    assert content_disposition(url, e, ext) == expected


def test_cache_control_cases():
    """server/responsewriter/writer_test.go TestHeaderCases: passthrough of Cache-Control
    and of a future Expires; an Expires in the past falls back to the TTL."""
    s = Settings(ttl=3600, cache_control_passthrough=True)
    assert cache_control(s, 0, SourceMeta(cache_control="no-cache, no-store, must-revalidate")
                         ) == "no-cache, no-store, must-revalidate"
    future = SourceMeta(expires=formatdate(time.time() + 1239, usegmt=True))
    assert cache_control(s, 0, future) in ("max-age=1238, public", "max-age=1239, public")
    past = SourceMeta(expires=formatdate(time.time() - 3600, usegmt=True))
    assert cache_control(s, 0, past) == "max-age=3600, public"
    assert cache_control(Settings(ttl=0), 0, SourceMeta()) == "no-cache"


async def test_cache_control_passthrough_over_http(make_client, origin):
    """integration_test/processing_handler_test.go TestCacheControlPassthrough*."""
    cc = origin.add("/cc.jpg", jpeg(16, 16), **{"Cache-Control": "max-age=1234, public",
                                                "Expires": formatdate(time.time() + 3600,
                                                                      usegmt=True)})
    past = origin.add("/past.jpg", jpeg(16, 16),
                      Expires=formatdate(time.time() - 3600, usegmt=True))
    client = await make_client(IMGPROXY_CACHE_CONTROL_PASSTHROUGH="1", IMGPROXY_TTL="500",
                               **LOOPBACK)
    response = await client.get(signed(f"/rs:fill:4:4/plain/{cc}"))
    assert response.headers["Cache-Control"] == "max-age=1234, public"
    assert "Expires" not in response.headers
    response = await client.get(signed(f"/rs:fill:4:4/plain/{past}"))
    assert response.headers["Cache-Control"] == "max-age=500, public"
    off = await make_client(**LOOPBACK)
    response = await off.get(signed(f"/rs:fill:4:4/plain/{cc}"))
    assert response.headers["Cache-Control"] != "max-age=1234, public"


async def test_canonical_link_for_http_sources_only(make_client, origin, images):
    """server/responsewriter/writer_test.go Canonical_*: set for http(s) sources."""
    (images / "a.jpg").write_bytes(jpeg(16, 16))
    url = origin.add("/a.jpg", jpeg(16, 16))
    client = await make_client(IMGPROXY_SET_CANONICAL_HEADER="1", **LOOPBACK)
    response = await client.get(signed(f"/rs:fit:8:8/plain/{url}"))
    assert response.headers["Link"] == f'<{url}>; rel="canonical"'
    response = await client.get(signed("/rs:fit:8:8/plain/local:///a.jpg"))
    assert "Link" not in response.headers
    off = await make_client(**LOOPBACK)
    assert "Link" not in (await off.get(signed(f"/rs:fit:8:8/plain/{url}"))).headers


# --- client hints ------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "width", "dpr"), [
    ({}, 0, 1.0), ({"Width": "100"}, 100, 1.0), ({"DPR": "2"}, 0, 2.0),
    ({"Width": "100", "DPR": "2"}, 50, 2.0),
    ({"Sec-CH-Width": "300", "Width": "100", "Sec-CH-DPR": "3", "DPR": "2"}, 100, 3.0),
    ({"DPR": "9", "Width": "-5"}, 0, 1.0),  # out of range: ignored
])
def test_client_hints_set_the_defaults(headers, width, dpr):
    """options/parser/processing_options_test.go TestParsePathClientHints."""
    parsed = parse_path("/plain/http://images.dev/lorem/ipsum.jpg@png")
    hints = client_hints.read(headers)
    options = parsed.options if hints is None else client_hints.apply(
        parsed.options, parsed.given, hints)
    assert (options.width, options.dpr) == (width, dpr)


def test_url_options_override_client_hints():
    """options/parser/processing_options_test.go TestParsePathClientHintsRedefine, and a
    preset counts as the URL (even restating the default)."""
    hints = client_hints.Hints(2.0, 100)
    parsed = parse_path("/width:150/dpr:3.0/plain/http://images.dev/lorem/ipsum.jpg@png")
    options = client_hints.apply(parsed.options, parsed.given, hints)
    assert (options.width, options.dpr) == (150, 3.0)
    parsed = parse_path("/w:0/plain/http://images.dev/a.jpg")
    assert client_hints.apply(parsed.options, parsed.given, hints).width == 0
    assert client_hints.apply(ProcessingOptions(), frozenset(), hints).width == 50


async def test_client_hints_over_http(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(400, 300))
    client = await make_client(IMGPROXY_ENABLE_CLIENT_HINTS="1")
    path = signed("/plain/local:///a.jpg@png")
    plain = await client.get(path)
    hinted = await client.get(path, headers={"Sec-CH-Width": "200", "Sec-CH-DPR": "2"})
    assert load(await plain.read()).width == 400
    assert load(await hinted.read()).width == 200  # width 100 at dpr 2
    assert plain.headers["ETag"] != hinted.headers["ETag"]  # another result, another key
    for response in (plain, hinted):
        assert response.headers["Vary"] == "Sec-CH-DPR, DPR, Sec-CH-Width, Width"  # @png
        assert response.headers["Accept-CH"] == "Sec-CH-DPR, DPR, Sec-CH-Width, Width"
    again = await client.get(path, headers={"Width": "200", "DPR": "2"})
    assert again.headers["ETag"] == hinted.headers["ETag"]
    off = await make_client()
    response = await off.get(path, headers={"Width": "200", "DPR": "2"})
    assert load(await response.read()).width == 400 and "Accept-CH" not in response.headers


def test_client_hints_key_the_result():
    """The hints change the effective options, so the result key (derived from them)."""
    resolver = Resolver(make_settings(IMGPROXY_ENABLE_CLIENT_HINTS="1"), lambda source: source)
    url = SimpleNamespace(parsed=parse_path("/plain/local:///a.jpg"), resolved=None)
    plain = resolver(url)
    hinted = resolver(url, client_hints.Hints(2.0, 0))
    assert resolver(url, client_hints.Hints(2.0, 0)) is hinted  # memoised per hint
    assert plain.effective.dpr == 1.0 and hinted.effective.dpr == 2.0
    assert resolver(url, None) is plain


def test_parsed_paths_know_which_options_the_url_gave():
    encoded = base64.urlsafe_b64encode(b"local:///a.jpg").decode().rstrip("=")
    assert parse_path(f"/rs:fit:10:10/{encoded}").given == frozenset(
        {"resizing_type", "width", "height"})

"""The fallback image (``IMGPROXY_FALLBACK_IMAGE_*``) against a real HTTP origin.

As imgproxy's ``handlers/processing/request_methods.go`` (handleDownloadError) serves
it: for source errors only, processed with the request's options, with
``IMGPROXY_FALLBACK_IMAGE_HTTP_CODE`` (0: the error's status) and the
``IMGPROXY_FALLBACK_IMAGE_TTL`` of ``server/responsewriter/writer_test.go``
(SetMaxAgeTTL, SetMaxAgeTTLOutlivesExpires); the image is read once at start-up
(``auximageprovider/static_provider_test.go``: data, path, URL).
"""

from __future__ import annotations

import base64
import time

import pytest

from conftest import LOOPBACK, signed
from imagegen import jpeg, load, solid
from vipsgate.app import METRICS
from vipsgate.errors import ConfigError

FALLBACK = solid(80, 60, (0, 200, 0)).pngsave_buffer()
DATA = base64.b64encode(FALLBACK).decode()


@pytest.fixture
def proxy(make_client):  # type: ignore[no-untyped-def]
    def factory(**env: str):  # type: ignore[no-untyped-def]
        return make_client(**LOOPBACK, IMGPROXY_FALLBACK_IMAGE_DATA=DATA, **env)
    return factory


def processed(client) -> float:  # type: ignore[no-untyped-def]
    registry = client.server.app[METRICS].registry
    return registry.get_sample_value("vipsgate_stage_duration_seconds_count",
                                     {"stage": "process"}) or 0.0


def green(data: bytes) -> bool:
    image = load(data)
    return abs(image.extract_band(1).avg() - 200) < 3 and image.extract_band(0).avg() < 3


async def test_a_missing_source_gets_the_fallback_processed_as_asked(proxy, origin):
    client = await proxy()
    response = await client.get(signed(f"/rs:fit:40:40/plain/{origin.url('/missing.jpg')}"))
    assert response.status == 200 and response.headers["Content-Type"] == "image/png"
    body = await response.read()
    assert load(body).width == 40 and green(body)
    assert response.headers["Cache-Control"] == "max-age=31536000, public"
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    assert response.headers["Content-Disposition"] == 'inline; filename="missing.png"'
    metrics = client.server.app[METRICS].registry
    assert metrics.get_sample_value("vipsgate_errors_total", {"type": "download"}) == 1


async def test_status_and_ttl(proxy, origin):
    url = signed(f"/plain/{origin.url('/missing.jpg')}@jpg")
    client = await proxy(IMGPROXY_FALLBACK_IMAGE_HTTP_CODE="0")
    response = await client.get(url)
    assert response.status == 404 and green(await response.read())
    assert "Cache-Control" not in response.headers  # an error status, no TTL asked
    client = await proxy(IMGPROXY_FALLBACK_IMAGE_HTTP_CODE="0", IMGPROXY_FALLBACK_IMAGE_TTL="60")
    response = await client.get(url)
    assert response.status == 404 and response.headers["Cache-Control"] == "max-age=60, public"
    client = await proxy(IMGPROXY_FALLBACK_IMAGE_HTTP_CODE="203", IMGPROXY_FALLBACK_IMAGE_TTL="60")
    soon = int(time.time()) + 30
    response = await client.get(signed(f"/exp:{soon}/plain/{origin.url('/missing.jpg')}"))
    assert response.status == 203
    max_age = int(response.headers["Cache-Control"].split("=")[1].split(",")[0])
    assert 25 <= max_age <= 30  # exp outlives the TTL: it caps it


async def test_every_kind_of_source_failure(proxy, origin):
    origin.add("/page.html", b"<html>not an image</html>", content_type="text/html")
    origin.add("/slow.jpg", jpeg(8, 8), hold=True)  # answers once the test has ended
    origin.add("/boom.jpg", b"", status=503)
    client = await proxy(IMGPROXY_DOWNLOAD_TIMEOUT="0.3")
    for path in ("/page.html", "/boom.jpg", "/missing.jpg"):
        response = await client.get(signed(f"/rs:fit:10:10/plain/{origin.url(path)}@png"))
        assert response.status == 200, path
        assert green(await response.read()), path
    response = await client.get(signed(f"/rs:fit:10:10/plain/{origin.url('/slow.jpg')}@png"))
    assert response.status == 200 and green(await response.read())  # the download timed out


async def test_never_for_signature_option_or_refused_source_errors(proxy, origin):
    client = await proxy(IMGPROXY_ALLOWED_SOURCES="http://nowhere.example/")
    missing = origin.url("/missing.jpg")
    assert (await client.get(f"/bad-signature/plain/{missing}")).status == 403
    assert (await client.get(signed(f"/rs:bogus/plain/{missing}"))).status == 404
    response = await client.get(signed(f"/plain/{missing}"))  # not an allowed source
    assert response.status == 404 and response.headers["Content-Type"].startswith("text/plain")


async def test_rendered_once_per_options_and_never_kept_for_the_source(proxy, origin):
    client = await proxy()
    for path in ("/a.jpg", "/b.jpg", "/a.jpg"):
        response = await client.get(signed(f"/rs:fit:20:20/plain/{origin.url(path)}@png"))
        assert green(await response.read())
    assert processed(client) == 1  # one rendering shared by every failing source
    assert origin.hits["/a.jpg"] == 2  # the failing source is asked again each time
    origin.add("/a.jpg", jpeg(64, 48))  # the origin recovers
    response = await client.get(signed(f"/rs:fit:20:20/plain/{origin.url('/a.jpg')}@png"))
    assert not green(await response.read()) and response.headers.get("ETag")


async def test_from_a_path_and_a_url(make_client, origin, tmp_path):
    (tmp_path / "fallback.png").write_bytes(FALLBACK)
    url = origin.add("/fallback.png", FALLBACK, content_type="image/png")
    for env in ({"IMGPROXY_FALLBACK_IMAGE_PATH": str(tmp_path / "fallback.png")},
                {"IMGPROXY_FALLBACK_IMAGE_URL": url}):
        client = await make_client(**LOOPBACK, **env)
        response = await client.get(signed(f"/plain/{origin.url('/missing.jpg')}@png"))
        assert response.status == 200 and green(await response.read()), env
    assert origin.hits["/fallback.png"] == 1  # fetched once, at start-up


async def test_an_unreadable_fallback_stops_start_up(make_client):
    bad = base64.b64encode(b"not an image").decode()
    with pytest.raises(ConfigError, match="IMGPROXY_FALLBACK_IMAGE_DATA"):
        await make_client(IMGPROXY_FALLBACK_IMAGE_DATA=bad)


async def test_without_a_fallback_errors_stay_errors(make_client, origin):
    client = await make_client(**LOOPBACK)
    response = await client.get(signed(f"/plain/{origin.url('/missing.jpg')}"))
    assert response.status == 404

"""The image front door (``front.py``): image GETs skip aiohttp's router, and the server
answers every request as the router would have."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from conftest import ServerProcess, make_settings, signed
from imagegen import jpeg
from vipsgate.app import FRONT, create_app

PREFIX = "/img"


@pytest.fixture
def front(images: Path):  # type: ignore[no-untyped-def]
    return create_app(make_settings(images, IMGPROXY_PATH_PREFIX=PREFIX,
                                    VIPSGATE_PLAYGROUND="1"))[FRONT]


@pytest.mark.parametrize("path", [
    "/img/sig/rs:fit:10:10/plain/local:///a.jpg", "/img/x", "/img/sig/plain/a.jpg?x=1",
    "/img/healthz", "/img/metricsx", "/img/.well-knownx/a",
])
def test_image_gets_take_the_front_door(front, path: str) -> None:  # type: ignore[no-untyped-def]
    assert front.route(make_mocked_request("GET", path)) == front.enter


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/img/health"), ("GET", "/img/ready"), ("GET", "/img/metrics"),
    ("GET", "/img/metrics?name=x"), ("GET", "/img/favicon.ico"), ("GET", "/img/"),
    ("GET", "/img"), ("GET", "/img/.well-known/security.txt"), ("GET", "/img/playground"),
    ("GET", "/img/playground/sign"), ("GET", "/other/sig/plain/a.jpg"), ("GET", "/"),
    ("HEAD", "/img/sig/plain/a.jpg"), ("OPTIONS", "/img/sig/plain/a.jpg"),
    ("POST", "/img/sig/plain/a.jpg"),
])
def test_everything_else_goes_to_the_router(front, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    assert front.route(make_mocked_request(method, path)) is None


def _exchange(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        headers = {k.lower(): v for k, v in answer.getheaders()
                   if k.lower() not in ("date", "x-request-id", "last-modified")}
        return answer.status, headers, answer.read()
    finally:
        connection.close()


async def test_the_server_answers_as_the_router_does(serve, make_client, images: Path) -> None:  # type: ignore[no-untyped-def]
    """The real server (front door) and aiohttp's test server (router only) give the same
    status, headers and body for images, errors, probes and other methods."""
    (images / "cat.jpg").write_bytes(jpeg(64, 48))
    env = {"IMGPROXY_PATH_PREFIX": PREFIX, "IMGPROXY_ALLOW_ORIGIN": "*",
           "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(images)}
    server: ServerProcess = serve(**env)
    client = await make_client(**env)
    image = PREFIX + signed("/rs:fit:32:32/plain/local:///cat.jpg@png")
    cases = [("GET", image), ("GET", image + "?v=1"), ("HEAD", image), ("OPTIONS", image),
             ("POST", image), ("GET", PREFIX + "/bad-signature/plain/local:///cat.jpg"),
             ("GET", PREFIX + signed("/rs:fit:32:32/plain/local:///missing.jpg")),
             ("GET", PREFIX + "/health"), ("GET", PREFIX + "/favicon.ico"),
             ("GET", PREFIX + "/.well-known/a"), ("GET", "/outside")]
    for method, path in cases:
        status, headers, body = _exchange(server.port, method, path)
        answer = await client.request(method, path)
        expected = {k.lower(): v for k, v in answer.headers.items()
                    if k.lower() not in ("date", "x-request-id", "last-modified")}
        assert (status, headers, body) == (answer.status, expected, await answer.read()), \
            (method, path)
        assert headers["server"].startswith("vipsgate/")

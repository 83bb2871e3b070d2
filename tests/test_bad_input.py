"""Odd but possible requests get a clean answer: never a 500, never a broken header."""

from __future__ import annotations

import asyncio
import base64

from yarl import URL

from conftest import signed
from imagegen import jpeg


def _fn(name: str) -> str:
    return "fn:" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") + ":1"


async def test_non_ascii_bearer_token_is_403_not_500(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(40, 30))
    client = await make_client(IMGPROXY_SECRET="s3cret")
    path = signed("/rs:fit:10:10/plain/local:///a.jpg")
    # raw bytes that are not UTF-8: the server sees them as surrogate escapes
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                 + b"Authorization: Bearer \xff\xfe\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"403"
    ok = await client.get(path, headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200


async def test_invalid_utf8_escape_in_a_plain_source_is_404(make_client):
    client = await make_client()
    response = await client.get(URL(signed("/rs:fit:10:10/plain/local:///%ff.jpg"),
                                    encoded=True))
    assert response.status == 404
    assert "Invalid URL" in await response.text()


async def test_file_name_cannot_inject_headers(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(40, 30))
    client = await make_client()
    for name in ("a\r\nX-Evil: 1", "nul\x00byte", "del\x7f"):
        response = await client.get(signed(f"/{_fn(name)}/rs:fit:10:10/plain/local:///a.jpg"))
        assert response.status == 200, name
        assert "X-Evil" not in response.headers
        disposition = response.headers["Content-Disposition"]
        assert not any(ord(c) < 32 or c == "\x7f" for c in disposition)


async def test_non_ascii_file_name_uses_rfc_8187(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(40, 30))
    client = await make_client()
    option = _fn('日本 "photo"')
    response = await client.get(signed(f"/{option}/rs:fit:10:10/plain/local:///a.jpg"))
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('inline; filename="')
    assert "filename*=UTF-8''%E6%97%A5%E6%9C%AC%20%22photo%22.jpg" in disposition
    assert disposition.encode("latin-1").isascii()


async def test_cors_preflight_is_200(make_client):
    client = await make_client(IMGPROXY_ALLOW_ORIGIN="*")
    response = await client.options("/any/path/at/all", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]


async def test_non_positive_expires_is_ignored(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(40, 30))
    client = await make_client()
    for value in (0, -1):
        response = await client.get(signed(f"/exp:{value}/rs:fit:10:10/plain/local:///a.jpg"))
        assert response.status == 200, value
        assert response.headers["Cache-Control"].startswith("max-age=31536000")
    expired = await client.get(signed("/exp:1609448400/rs:fit:10:10/plain/local:///a.jpg"))
    assert expired.status == 404

"""The core request path end to end: signed URL -> resized image."""

from __future__ import annotations

from conftest import signed
from imagegen import jpeg, load


async def test_signed_url_is_resized(make_client, images):
    (images / "cat.jpg").write_bytes(jpeg(800, 600))
    client = await make_client()
    response = await client.get(signed("/rs:fit:300:300/plain/local:///cat.jpg"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    out = load(await response.read())
    assert (out.width, out.height) == (300, 225)


async def test_bad_signature_is_403(make_client, images):
    (images / "cat.jpg").write_bytes(jpeg(80, 60))
    client = await make_client()
    response = await client.get("/badsignature/rs:fit:30:30/plain/local:///cat.jpg")
    assert response.status == 403

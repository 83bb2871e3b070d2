"""Presets, only-presets mode and allowed options, end to end through HTTP."""

from __future__ import annotations

import pytest

from conftest import make_settings, signed
from imagegen import jpeg, load
from vipsgate.app import create_app
from vipsgate.errors import ConfigError


async def size_of(client, path: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    response = await client.get(signed(path))
    assert response.status == 200, (path, response.status, await response.text())
    image = load(await response.read())
    return image.width, image.height


async def status_of(client, path: str) -> int:  # type: ignore[no-untyped-def]
    response = await client.get(signed(path))
    await response.read()
    return response.status


@pytest.fixture
def cat(images):  # type: ignore[no-untyped-def]
    (images / "cat.jpg").write_bytes(jpeg(400, 200))
    return "plain/local:///cat.jpg"


async def test_presets_apply_in_order_and_url_options_override(make_client, cat):
    client = await make_client(
        IMGPROXY_PRESETS="thumb=rs:fill:50:50,small=w:100/q:50,wide=rs:fit:300:300")
    assert await size_of(client, f"/pr:thumb/{cat}") == (50, 50)
    assert await size_of(client, f"/preset:small/{cat}") == (100, 50)
    assert await size_of(client, f"/pr:thumb:wide/{cat}") == (300, 150)  # later wins
    assert await size_of(client, f"/pr:thumb/rs:fill:20:30/{cat}") == (20, 30)
    assert await size_of(client, f"/rs:fill:20:30/pr:thumb/{cat}") == (50, 50)  # inline
    assert await status_of(client, f"/pr:nope/{cat}") == 404


async def test_default_preset_applies_to_every_request(make_client, cat):
    client = await make_client(IMGPROXY_PRESETS="default=rs:fit:40:40/q:50")
    assert await size_of(client, f"/{cat}") == (40, 20)
    assert await size_of(client, f"/w:100/{cat}") == (80, 40)  # h:40 still from the preset
    assert await size_of(client, f"/rs:fit:100:100/{cat}") == (100, 50)  # URL wins


async def test_looping_presets_are_tolerated(make_client, cat):
    client = await make_client(IMGPROXY_PRESETS="a=w:60/pr:b,b=h:10/pr:a")
    assert await size_of(client, f"/pr:a/{cat}") == (20, 10)  # b's height applies last


async def test_presets_from_a_file(make_client, cat, tmp_path):
    path = tmp_path / "presets.txt"
    path.write_text("# thumbnails\nthumb=rs:fill:30:30\n\nbig=w:200\n")
    client = await make_client(IMGPROXY_PRESETS_PATH=str(path))
    assert await size_of(client, f"/pr:thumb/{cat}") == (30, 30)
    assert await size_of(client, f"/pr:big/{cat}") == (200, 100)


def test_an_invalid_preset_stops_start_up(images):
    with pytest.raises(ConfigError, match="PRESETS"):
        make_settings(images, IMGPROXY_PRESETS="bad=rs:wrong:1:1")
    with pytest.raises(ConfigError, match="PRESETS"):
        make_settings(images, IMGPROXY_PRESETS="noequals")


async def test_only_presets_mode(make_client, cat):
    client = await make_client(IMGPROXY_ONLY_PRESETS="true",
                               IMGPROXY_PRESETS="thumb=rs:fill:50:50,blurry=bl:2/q:40")
    assert await size_of(client, f"/thumb/{cat}") == (50, 50)
    response = await client.get(signed(f"/thumb:blurry/{cat}@png"))
    assert response.status == 200 and response.headers["Content-Type"] == "image/png"
    assert await status_of(client, f"/rs:fit:10:10/{cat}") == 404  # options are not presets
    assert await status_of(client, f"/unknown/{cat}") == 404


async def test_allowed_processing_options(make_client, cat):
    client = await make_client(IMGPROXY_ALLOWED_PROCESSING_OPTIONS="w,h,pr",
                               IMGPROXY_PRESETS="blurry=bl:2/rs:fill:30:30")
    assert await size_of(client, f"/w:100/h:30/{cat}") == (60, 30)
    assert await status_of(client, f"/w:100/h:30/bl:10/{cat}") == 404
    assert await size_of(client, f"/w:100/pr:blurry/{cat}") == (30, 30)  # contents unchecked
    assert await status_of(client, f"/pr:blurry/bl:10/{cat}") == 404


def test_allowed_options_must_be_known_names(images):
    with pytest.raises(ConfigError, match="ALLOWED_PROCESSING_OPTIONS"):
        make_settings(images, IMGPROXY_ALLOWED_PROCESSING_OPTIONS="w,bogus")
    create_app(make_settings(images, IMGPROXY_ALLOWED_PROCESSING_OPTIONS="w,rs,resize"))

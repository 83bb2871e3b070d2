"""Output format: explicit > AVIF/WebP by Accept > source format > JPEG/PNG."""

from __future__ import annotations

import pytest

from conftest import signed
from imagegen import animated, jpeg, load, png_alpha
from vipsgate.negotiate import FormatPolicy, accepted_types, modern_formats, negotiate

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_OLD = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
CURL = "*/*"


def policy(explicit=None, accept="", auto_webp=True, auto_avif=True, enforce_webp=False,  # type: ignore[no-untyped-def]
           enforce_avif=False) -> FormatPolicy:
    return negotiate(explicit, accept, auto_webp=auto_webp, auto_avif=auto_avif,
                     enforce_webp=enforce_webp, enforce_avif=enforce_avif)


def test_accept_header_q_values():
    types = accepted_types("image/webp;q=0.5, image/avif ; q=0, */*;q=0.1, IMAGE/PNG")
    assert types == {"image/webp": 0.5, "image/avif": 0.0, "*/*": 0.1, "image/png": 1.0}
    assert accepted_types("image/webp;q=abc") == {"image/webp": 0.0}
    assert accepted_types("image/webp;q=7") == {"image/webp": 1.0}
    assert accepted_types("") == {}


@pytest.mark.parametrize(("accept", "expected"), [
    (CHROME, ("avif", "webp")),
    (SAFARI_OLD, ("webp",)),
    (CURL, ()),  # */* alone does not mean the client decodes AVIF/WebP
    ("image/*", ()),
    ("", ()),
    ("image/webp;q=0", ()),  # q=0 refuses
    ("image/avif;q=0,image/webp", ("webp",)),
    ("image/avif;q=0.5,image/webp;q=0.9", ("webp", "avif")),  # the client's preference
    ("image/webp,image/avif", ("avif", "webp")),  # equal q: AVIF first
])
def test_modern_formats(accept, expected):
    assert modern_formats(accept, webp=True, avif=True) == expected


def test_disabled_formats_are_not_offered():
    assert modern_formats(CHROME, webp=True, avif=False) == ("webp",)
    assert modern_formats(CHROME, webp=False, avif=False) == ()


def test_explicit_format_wins_and_does_not_vary():
    p = policy("png", CHROME)
    assert p.choose("jpeg", False, False, 100, 100) == "png"
    assert not p.vary
    assert p.key == "png"


def test_negotiated_format_varies_on_accept():
    p = policy(None, CHROME)
    assert p.vary
    assert p.choose("jpeg", False, False, 100, 100) == "avif"
    assert policy(None, SAFARI_OLD).choose("jpeg", False, False, 100, 100) == "webp"
    assert policy(None, CURL).vary  # the answer depends on Accept even when it is */*
    assert policy(None, CHROME).key != policy(None, CURL).key


def test_source_format_or_jpeg_png_fallback():
    p = policy(None, CURL)
    assert p.choose("jpeg", False, False, 10, 10) == "jpeg"
    assert p.choose("png", True, False, 10, 10) == "png"
    assert p.choose("gif", False, True, 10, 10) == "gif"
    assert p.choose("webp", False, False, 10, 10) == "jpeg"
    assert p.choose("webp", True, False, 10, 10) == "png"  # alpha
    assert p.choose("avif", False, False, 10, 10) == "jpeg"
    assert p.choose("tiff", True, False, 10, 10) == "png"
    assert p.choose("webp", False, True, 10, 10) == "gif"  # animation


def test_no_animated_or_tiny_avif():
    p = policy(None, CHROME)
    assert p.choose("gif", False, True, 100, 100) == "webp"
    assert p.choose("jpeg", False, False, 15, 100) == "webp"
    assert policy(None, "image/avif").choose("jpeg", False, False, 15, 100) == "jpeg"


def test_nothing_negotiated_when_auto_is_off():
    p = policy(None, CHROME, auto_webp=False, auto_avif=False)
    assert not p.vary
    assert p.choose("jpeg", False, False, 100, 100) == "jpeg"


def test_enforce_overrides_an_explicit_format():
    p = policy("png", CHROME, enforce_webp=True)
    assert p.vary
    assert p.choose("jpeg", False, False, 100, 100) == "webp"
    assert policy("png", CURL, enforce_webp=True).choose("jpeg", False, False, 100, 100) == "png"
    assert policy("png", CHROME, enforce_avif=True).choose("jpeg", True, True, 100, 100) == "png"


# --- HTTP ------------------------------------------------------------------------------

MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG", "image/gif": b"GIF8",
         "image/webp": b"RIFF", "image/avif": b"ftyp"}


def _is(data: bytes, mime: str) -> bool:
    return MAGIC[mime] in data[:12]


@pytest.mark.parametrize(("source", "options", "accept", "mime", "vary"), [
    ("a.jpg", "", CHROME, "image/avif", True),
    ("a.jpg", "", SAFARI_OLD, "image/webp", True),
    ("a.jpg", "", CURL, "image/jpeg", True),
    ("a.jpg", "", "", "image/jpeg", True),
    ("alpha.png", "", CURL, "image/png", True),
    ("anim.gif", "", CHROME, "image/webp", True),  # no animated AVIF
    ("anim.gif", "", CURL, "image/gif", True),
    ("a.jpg", "@png", CHROME, "image/png", False),
    ("a.jpg", "@webp", CURL, "image/webp", False),
    ("alpha.png", "@jpg", CHROME, "image/jpeg", False),
    ("a.jpg", "@avif", "", "image/avif", False),
])
async def test_content_type_and_vary(make_client, images, source, options, accept, mime, vary):
    (images / "a.jpg").write_bytes(jpeg(120, 80))
    (images / "alpha.png").write_bytes(png_alpha(120, 80))
    (images / "anim.gif").write_bytes(animated("gif", frames=3))
    client = await make_client()
    headers = {"Accept": accept} if accept else {}
    response = await client.get(signed(f"/rs:fit:60:60/plain/local:///{source}{options}"),
                                headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == mime
    assert ("Accept" in response.headers.get("Vary", "")) == vary
    data = await response.read()
    assert _is(data, mime)
    assert load(data).width == 60


async def test_alpha_flattened_for_jpeg_output(make_client, images):
    (images / "alpha.png").write_bytes(png_alpha(120, 80))
    client = await make_client()
    response = await client.get(signed("/plain/local:///alpha.png@jpg"))
    out = load(await response.read())
    assert out.bands == 3
    assert out.getpoint(0, 0) == pytest.approx([255, 255, 255], abs=2)  # white by default
    response = await client.get(signed("/bg:ff0000/plain/local:///alpha.png@png"))
    out = load(await response.read())
    assert out.getpoint(0, 0)[:3] == pytest.approx([255, 0, 0], abs=2)


async def test_negotiation_can_be_switched_off(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(120, 80))
    client = await make_client(IMGPROXY_AUTO_WEBP="false", IMGPROXY_AUTO_AVIF="false")
    response = await client.get(signed("/plain/local:///a.jpg"), headers={"Accept": CHROME})
    assert response.headers["Content-Type"] == "image/jpeg"
    assert "Vary" not in response.headers


async def test_cached_results_are_kept_apart_by_accept(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(120, 80))
    client = await make_client()
    url = signed("/rs:fit:50:50/plain/local:///a.jpg")
    for accept, mime in ((CHROME, "image/avif"), (CURL, "image/jpeg"),
                         (SAFARI_OLD, "image/webp"), (CHROME, "image/avif")):
        response = await client.get(url, headers={"Accept": accept})
        assert response.headers["Content-Type"] == mime
        assert _is(await response.read(), mime)

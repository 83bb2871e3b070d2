"""BMP, ICO and JPEG XL results; AVIF results under 16 px fall back as imgproxy does."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import process_url, signed
from formatgen import photo_pil, saved
from imagegen import jpeg, load, png_alpha

CHROME = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
SAFARI = "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8"


def pillow(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    pairs = zip(a.convert("RGB").tobytes(), b.convert("RGB").tobytes(), strict=True)
    return sum(abs(x - y) for x, y in pairs) / (a.width * a.height * 3)


@pytest.mark.parametrize("source", ["jpeg", "png"])
def test_bmp_round_trip(source):
    im = photo_pil(120, 80)
    data = saved(im, "PNG") if source == "png" else saved(im, "JPEG", quality=95)
    result = process_url(data, "", "bmp")
    assert result.format == "bmp" and result.data[:2] == b"BM"
    out = pillow(result.data)
    assert out.format == "BMP" and out.size == (120, 80) and out.mode == "RGB"
    assert mean_difference(out, im) < 3
    again = process_url(result.data, "rs:fit:60:60", "png")  # and back in
    assert (again.width, again.height) == (60, 40)


def test_bmp_keeps_alpha_and_grey():
    out = pillow(process_url(png_alpha(40, 30), "", "bmp").data)
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0
    assert out.getpixel((20, 15))[3] == 255
    grey = pillow(process_url(saved(photo_pil(40, 30).convert("L"), "PNG"), "", "bmp").data)
    assert grey.mode == "L" and grey.size == (40, 30)


def test_ico_round_trip_and_256_px_cap():
    result = process_url(png_alpha(400, 300), "", "ico")  # larger than ICO can hold
    assert result.format == "ico" and (result.width, result.height) == (256, 192)
    out = pillow(result.data)
    assert out.format == "ICO" and out.size == (256, 192) and out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0 and out.getpixel((128, 96))[3] == 255
    small = process_url(jpeg(64, 64), "rs:fit:32:32", "ico")
    assert pillow(small.data).size == (32, 32)
    again = process_url(small.data, "", "png")  # and back in
    assert (again.width, again.height) == (32, 32)


def test_jpeg_xl_output():
    im = photo_pil(120, 80)
    result = process_url(saved(im, "PNG"), "rs:fit:60:60/q:90", "jxl")
    assert result.format == "jxl" and result.data[:2] == b"\xff\x0a"
    assert (result.width, result.height) == (60, 40)
    back = load(process_url(result.data, "", "png").data)
    assert (back.width, back.height) == (60, 40)
    alpha = process_url(png_alpha(40, 30), "", "jxl")
    assert load(process_url(alpha.data, "", "png").data).hasalpha()
    smaller = process_url(saved(im, "PNG"), "q:40", "jxl")
    assert len(smaller.data) < len(process_url(saved(im, "PNG"), "q:95", "jxl").data)


@pytest.mark.parametrize("alpha", [False, True])
def test_avif_under_16_px_falls_back(alpha):
    data = png_alpha(200, 100) if alpha else jpeg(200, 100)
    result = process_url(data, "rs:fit:30:30", "avif")  # 30x15
    assert (result.width, result.height) == (30, 15)
    assert result.format == ("png" if alpha else "jpeg")
    assert load(result.data).hasalpha() == alpha
    assert process_url(data, "rs:fit:40:40", "avif").format == "avif"  # 40x20


async def test_formats_over_http(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(200, 100))
    client = await make_client()
    for fmt, mime in (("bmp", "image/bmp"), ("ico", "image/x-icon"), ("jxl", "image/jxl")):
        response = await client.get(signed(f"/rs:fit:50:50/plain/local:///a.jpg@{fmt}"))
        assert response.status == 200 and response.content_type == mime, fmt
        disposition = response.headers["Content-Disposition"]
        assert disposition.endswith(f'.{fmt}"'), disposition
    tiny = await client.get(signed("/rs:fit:20:20/plain/local:///a.jpg@avif"))
    assert tiny.status == 200 and tiny.content_type == "image/jpeg"


async def test_jpeg_xl_is_negotiated_only_when_enabled(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(200, 100))
    path = signed("/rs:fit:50:50/plain/local:///a.jpg")
    default = await make_client()
    response = await default.get(path, headers={"Accept": SAFARI})
    assert response.content_type == "image/avif"  # AUTO_JXL is off by default (imgproxy's)
    client = await make_client(IMGPROXY_AUTO_JXL="true")
    response = await client.get(path, headers={"Accept": SAFARI})
    assert response.content_type == "image/jxl" and response.headers["Vary"] == "Accept"
    response = await client.get(path, headers={"Accept": CHROME})
    assert response.content_type == "image/avif"
    enforced = await make_client(IMGPROXY_ENFORCE_JXL="true")
    png = signed("/rs:fit:50:50/plain/local:///a.jpg@png")
    response = await enforced.get(png, headers={"Accept": SAFARI})
    assert response.content_type == "image/jxl"
    response = await enforced.get(png, headers={"Accept": CHROME})
    assert response.content_type == "image/png"

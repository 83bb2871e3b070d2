"""imgproxy's processing settings: preferred formats, linear colour, shrink-on-load off,
PNG quantisation, the WebP preset."""

from __future__ import annotations

import pytest
import pyvips

from conftest import process_url, signed
from imagegen import jpeg, load, photo, solid
from vipsgate.negotiate import FormatPolicy, negotiate


def checkerboard(size: int = 64) -> bytes:
    """1-pixel black and white squares: their mean is 128 in sRGB, 188 in light."""
    xy = pyvips.Image.xyz(size, size)
    board = ((xy[0] + xy[1]) % 2 == 0).ifthenelse(255, 0).cast("uchar")
    return board.bandjoin([board, board]).copy(interpretation="srgb").pngsave_buffer()


@pytest.mark.parametrize(("preferred", "source", "alpha", "animated", "expected"), [
    (("jpeg", "png", "gif"), "webp", False, False, "jpeg"),
    (("jpeg", "png", "gif"), "webp", True, False, "png"),
    (("jpeg", "png", "gif"), "webp", True, True, "gif"),
    (("jpeg", "png", "gif"), "png", False, False, "png"),  # the source's, when preferred
    (("webp", "png"), "jpeg", True, True, "webp"),
    (("jpeg",), "tiff", True, False, "jpeg"),  # none holds alpha: the first
    (("png", "jpeg"), "bmp", False, False, "png"),
])
def test_preferred_formats(preferred, source, alpha, animated, expected):
    """processing/processing.go determineOutputFormat / findPreferredFormat."""
    policy = FormatPolicy(preferred=preferred)
    assert policy.choose(source, alpha, animated, 100, 100) == expected


def test_preferred_formats_are_part_of_the_key_only_when_they_matter():
    kwargs = {"auto_webp": False, "auto_avif": False, "enforce_webp": False,
              "enforce_avif": False}
    default = negotiate(None, "", **kwargs)
    webp_first = negotiate(None, "", **kwargs, preferred=("webp", "png"))
    assert default.key != webp_first.key
    assert negotiate("png", "", **kwargs, preferred=("webp",)).key == "png"


async def test_preferred_formats_over_http(make_client, images):
    (images / "a.tif").write_bytes(solid(20, 20).tiffsave_buffer())
    for env, expected in (({}, "image/jpeg"),
                          ({"IMGPROXY_PREFERRED_FORMATS": "webp,png"}, "image/webp")):
        client = await make_client(**env)
        response = await client.get(signed("/plain/local:///a.tif"))
        assert response.headers["Content-Type"] == expected, env


def test_linear_colorspace_resizes_light():
    """IMGPROXY_USE_LINEAR_COLORSPACE: a halved checkerboard is light grey, not mid grey."""
    data = checkerboard()
    plain = load(process_url(data, "rs:fit:16:16", "png").data)
    linear = load(process_url(data, "rs:fit:16:16", "png",
                              IMGPROXY_USE_LINEAR_COLORSPACE="1").data)
    assert abs(plain.avg() - 128) < 2 and abs(linear.avg() - 188) < 2
    assert (linear.bands, linear.format) == (3, "uchar")
    alpha = load(process_url(pyvips.Image.new_from_buffer(data, "").bandjoin(255)
                             .pngsave_buffer(), "rs:fit:16:16", "png",
                             IMGPROXY_USE_LINEAR_COLORSPACE="1").data)
    assert alpha.bands == 4 and abs(alpha.extract_band(0).avg() - 188) < 2


def test_shrink_on_load_can_be_turned_off():
    data = jpeg(800, 600)
    shrunk = process_url(data, "rs:fit:100:100", "png")
    full = process_url(data, "rs:fit:100:100", "png", IMGPROXY_DISABLE_SHRINK_ON_LOAD="1")
    assert load(shrunk.data).width == load(full.data).width == 100
    assert shrunk.data != full.data  # decoded at 1/8 vs at full size


def test_png_quantisation():
    data = photo(120, 90).pngsave_buffer()
    full = process_url(data, "", "png")
    palette = process_url(data, "", "png", IMGPROXY_PNG_QUANTIZE="1")
    four = process_url(data, "", "png", IMGPROXY_PNG_QUANTIZE="1",
                       IMGPROXY_PNG_QUANTIZATION_COLORS="4")
    assert len(four.data) < len(palette.data) < len(full.data)
    assert load(four.data).get("bits-per-sample") == 2


def test_webp_preset_reaches_the_encoder():
    data = photo(120, 90).pngsave_buffer()
    assert process_url(data, "", "webp").data != process_url(
        data, "", "webp", IMGPROXY_WEBP_PRESET="text").data

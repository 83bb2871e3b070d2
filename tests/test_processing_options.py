"""imgproxy's processing options on generated images: pixels, sizes and metadata.

Most tests call ``process`` directly (options parsed from a real URL path);
the ones about headers, settings or the request flow go through HTTP.
"""

from __future__ import annotations

import base64

import pytest
import pyvips
from aiohttp import web

from conftest import effective, make_settings, process_url, signed
from imagegen import jpeg, load, photo, solid
from vipsgate import passthrough
from vipsgate.app import POOL, SOURCES, create_app
from vipsgate.errors import ConfigError, ImageTooLarge
from vipsgate.sources import Relayed

RED, WHITE, BLUE = (255, 0, 0), (255, 255, 255), (0, 0, 255)


def run(data: bytes, options: str = "", fmt: str | None = "png",
        watermark: bytes | None = None, **env: str):  # type: ignore[no-untyped-def]
    """Process ``data`` with the options of a URL path under the settings ``env``;
    returns (Result, decoded image)."""
    result = process_url(data, options, fmt, watermark, **env)
    return result, load(result.data)


def px(image: pyvips.Image, x: int, y: int) -> list[int]:
    return [round(v) for v in image(x, y)]


def close(a: list[int], b: tuple[int, ...] | list[int], tol: int = 3) -> bool:
    return len(a) >= len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def png(image: pyvips.Image) -> bytes:
    return image.pngsave_buffer()


def framed(border: tuple[int, int, int, int] = (15, 30, 25, 10), inner: tuple[int, int] = (60, 40),
           bg: tuple[int, ...] = WHITE) -> pyvips.Image:
    """A (200,100,50) rectangle with a red dot inside a uniform border (top, right, bottom,
    left); an RGBA ``bg`` gives a transparent border."""
    top, right, bottom, left = border
    content = solid(*inner, (200, 100, 50)).draw_rect([255, 0, 0], 2, 2, 4, 4, fill=True)
    if len(bg) == 4:
        content = content.bandjoin(255)
    w, h = inner[0] + left + right, inner[1] + top + bottom
    return content.embed(left, top, w, h, background=list(bg)).copy(interpretation="srgb")


# --- trim ----------------------------------------------------------------------------

def test_trim_removes_a_known_border_exactly():
    _, out = run(png(framed()), "t:10")
    assert (out.width, out.height) == (60, 40)
    assert close(px(out, 0, 0), (200, 100, 50)) and close(px(out, 3, 3), RED)
    assert close(px(out, 59, 39), (200, 100, 50))


def test_trim_with_a_colour_and_equal_sides():
    data = png(framed())
    _, out = run(data, "t:10:ffffff")
    assert (out.width, out.height) == (60, 40)
    _, out = run(data, "t:10:000000")  # the border is not black: nothing to trim
    assert (out.width, out.height) == (100, 80)
    _, out = run(data, "t:10::1:1")  # the smaller margin from both sides: 10 and 15
    assert (out.width, out.height) == (100 - 2 * 10, 80 - 2 * 15)
    assert close(px(out, 0, 0), (200, 100, 50)) and close(px(out, 59, 39), (200, 100, 50))
    assert close(px(out, 60, 20), WHITE) and close(px(out, 20, 40), WHITE)  # 20 and 10 left


def test_trim_transparent_border_and_then_resize():
    data = png(framed(bg=(0, 0, 0, 0)))
    _, out = run(data, "t:10")
    assert (out.width, out.height) == (60, 40)
    _, out = run(data, "t:10/rs:fit:30:30")  # geometry is planned on the trimmed size
    assert (out.width, out.height) == (30, 20)


def test_trim_of_a_uniform_image_keeps_it():
    _, out = run(png(solid(40, 30, (9, 9, 9))), "t:5")
    assert (out.width, out.height) == (40, 30)


# --- extend, padding, rotate, flip -------------------------------------------------

@pytest.mark.parametrize(("options", "red_x", "white_x"), [
    ("ex:1:we", 5, 95),  # extend to the box, image on the west
    ("ex:1:ea", 95, 5),
    ("ex:0:ea/exar:1:we", 5, 75),  # each extend has its own gravity
    ("ex:0:we/exar:1:ea", 75, 5),
])
def test_extend_and_extend_aspect_ratio_use_their_own_gravity(options, red_x, white_x):
    _, out = run(png(solid(40, 40, RED)), f"rs:fit:100:50/{options}/bg:ffffff")
    assert out.height in (40, 50)
    assert close(px(out, red_x, out.height // 2), RED, 0), out.width
    assert close(px(out, white_x, out.height // 2), WHITE, 0), out.width


def test_padding_adds_exact_pixels_of_the_background_colour():
    data = png(solid(40, 30, BLUE))
    _, out = run(data, "pd:5:10:15:20/bg:ff0000")
    assert (out.width, out.height) == (40 + 10 + 20, 30 + 5 + 15)
    for x, y in ((0, 0), (69, 49), (19, 10), (60, 10), (30, 4), (30, 35)):
        assert close(px(out, x, y), RED, 0), (x, y)
    for x, y in ((20, 5), (59, 5), (20, 34), (59, 34)):
        assert close(px(out, x, y), BLUE, 0), (x, y)


def test_padding_css_shorthand_and_transparency():
    _, out = run(png(solid(40, 30, BLUE)), "pd:4:6")  # top/bottom 4, left/right 6
    assert (out.width, out.height) == (52, 38) and out.bands == 4
    assert px(out, 0, 0)[3] == 0 and px(out, 6, 4) == [0, 0, 255, 255]
    _, out = run(png(solid(40, 30, BLUE)), "pd:16", fmt="jpeg")  # no alpha: white
    assert (out.width, out.height) == (72, 62) and close(px(out, 0, 0), WHITE, 4)


def marker() -> bytes:
    """60x40 white with a red 10x10 square in the top-left corner."""
    return png(solid(60, 40, WHITE).draw_rect([255, 0, 0], 0, 0, 10, 10, fill=True))


@pytest.mark.parametrize(("options", "size", "corner"), [
    ("rot:90", (40, 60), (35, 4)),  # clockwise: top-left goes top-right
    ("rot:180", (60, 40), (55, 35)),
    ("rot:270", (40, 60), (4, 55)),
    ("rot:-90", (40, 60), (4, 55)),
    ("fl:1", (60, 40), (55, 4)),
    ("fl:0:1", (60, 40), (4, 35)),
    ("fl:1:1", (60, 40), (55, 35)),
    ("rot:90/fl:1", (40, 60), (4, 4)),
])
def test_rotate_and_flip_move_the_marker(options, size, corner):
    _, out = run(marker(), options)
    assert (out.width, out.height) == size
    assert close(px(out, *corner), RED, 0)
    assert close(px(out, size[0] // 2, size[1] // 2), WHITE, 0)


def test_rotate_is_planned_on_the_rotated_image():
    _, out = run(marker(), "rot:90/rs:fit:20:30")
    assert (out.width, out.height) == (20, 30)


# --- filters ------------------------------------------------------------------------

def local_detail(image: pyvips.Image) -> float:
    """Mean absolute difference from a slightly blurred copy: high-frequency energy."""
    image = image.extract_band(0, n=3).cast("float")
    return (image - image.gaussblur(1.0)).abs().avg()


def test_blur_lowers_local_detail():
    source = photo(160, 120)
    _, blurred = run(png(source), "bl:2")
    _, slightly = run(png(source), "bl:0.6")
    assert local_detail(blurred) < local_detail(slightly) < local_detail(source) * 0.8
    assert (blurred.width, blurred.height) == (160, 120)


def test_sharpen_raises_local_detail():
    stripes = (pyvips.Image.xyz(160, 120)[0] / 16).cast("int") % 2 * 160 + 40
    blurred = stripes.gaussblur(1.5)
    source = blurred.bandjoin([blurred, blurred]).cast("uchar").copy(interpretation="srgb")
    _, sharpened = run(png(source), "sh:1")
    assert local_detail(sharpened) > local_detail(source) * 1.2
    assert (sharpened.width, sharpened.height) == (160, 120)


def test_blur_keeps_transparency_clean():
    image = solid(40, 40, RED, alpha=0).draw_rect([255, 0, 0, 255], 10, 10, 20, 20, fill=True)
    _, out = run(png(image), "bl:3")
    # premultiplied: the colour never turns dark where alpha fades
    edge = px(out, 9, 20)
    assert 0 < edge[3] < 255 and edge[0] > 250


def test_downscale_keeps_transparency_clean():
    """Resizing with alpha is premultiplied (as libvips' thumbnail): edge pixels keep
    their colour instead of darkening towards the transparent black around them."""
    image = solid(81, 81, [0, 0, 0], alpha=0).draw_rect([255, 0, 0, 255], 20, 20, 41, 41,
                                                     fill=True)
    _, out = run(png(image), "rs:fit:27:27")
    assert (out.width, out.height) == (27, 27)
    edges = [px(out, x, 13) for x in range(27) if 0 < px(out, x, 13)[3] < 255]
    assert edges, "the scaled square has soft edges"
    assert all(edge[0] >= 250 and edge[1] <= 5 for edge in edges), edges
    assert px(out, 13, 13) == [255, 0, 0, 255] and px(out, 0, 0)[3] == 0


def test_pixelate_makes_uniform_blocks_of_the_mean_colour():
    source = photo(50, 37)
    _, out = run(png(source), "pix:8")
    assert (out.width, out.height) == (50, 37)
    for left in range(0, 50, 8):
        for top in range(0, 37, 8):
            box = (left, top, min(8, 50 - left), min(8, 37 - top))
            block = out.crop(*box)
            assert all(block[b].max() == block[b].min() for b in range(3)), box
            if box[2:] == (8, 8):  # a whole block is the mean of the source block
                want = [source.crop(*box)[b].avg() for b in range(3)]
                assert close(px(block, 0, 0), want, 1), box
    assert out(0, 0) != out(8, 0) or out(0, 0) != out(0, 8)  # blocks are not all equal


# --- watermark ----------------------------------------------------------------------

MARK = png(solid(20, 20, RED))


def test_watermark_changes_the_expected_corner():
    data = png(solid(100, 80, WHITE))
    _, out = run(data, "wm:1:soea", watermark=MARK)
    assert close(px(out, 90, 70), RED, 0) and close(px(out, 80, 60), RED, 0)
    assert close(px(out, 79, 59), WHITE, 0) and close(px(out, 5, 5), WHITE, 0)
    _, out = run(data, "wm:1:nowe:5:7", watermark=MARK)
    assert close(px(out, 5, 7), RED, 0) and close(px(out, 4, 7), WHITE, 0)
    assert close(px(out, 24, 26), RED, 0) and close(px(out, 25, 27), WHITE, 0)
    _, out = run(data, "wm:1", watermark=MARK)  # centre
    assert close(px(out, 50, 40), RED, 0) and close(px(out, 39, 40), WHITE, 0)


def test_watermark_opacity_scales_the_effect():
    data = png(solid(100, 80, WHITE))
    _, full = run(data, "wm:1:soea", watermark=MARK)
    _, half = run(data, "wm:0.5:soea", watermark=MARK)
    _, quarter = run(data, "wm:1:soea", watermark=MARK, IMGPROXY_WATERMARK_OPACITY="0.25")
    effect = [255 - px(img, 90, 70)[1] for img in (full, half, quarter)]
    assert effect[0] == 255
    assert abs(effect[1] - 128) <= 2 and abs(effect[2] - 64) <= 2


def test_watermark_scale_and_replicate():
    """``re`` as imgproxy's processing/watermark.go (prepareWatermark) and vips/vips.c
    (vips_replicate_go, centred) tile it."""
    data = png(solid(100, 80, WHITE))
    _, out = run(data, "wm:1:ce:0:0:0.5", watermark=MARK)  # fits 50x40: a 40x40 square
    assert close(px(out, 31, 21), RED, 0) and close(px(out, 68, 58), RED, 0)
    assert close(px(out, 29, 40), WHITE, 0) and close(px(out, 71, 40), WHITE, 0)
    _, out = run(data, "wm:1:re:10:10", watermark=MARK)  # 20px tiles, 10px apart
    # imgproxy's grid (processing/watermark.go, vips.c vips_replicate_go): 30 px cells,
    # 5 x 3 of them, centred: a tile's centre on the image's (50, 40)
    for x, y in ((50, 40), (41, 31), (59, 49), (20, 40), (80, 40), (50, 10), (50, 70)):
        assert close(px(out, x, y), RED, 0), (x, y)
    for x, y in ((35, 40), (65, 40), (50, 25), (50, 55), (4, 40), (95, 40)):
        assert close(px(out, x, y), WHITE, 0), (x, y)


def test_watermark_is_a_no_op_without_a_watermark_image():
    data = png(solid(40, 40, WHITE))
    _, out = run(data, "wm:1:soea")
    assert close(px(out, 35, 35), WHITE, 0)


async def test_watermark_from_data_path_and_url(make_client, images, tmp_path):
    (images / "white.png").write_bytes(png(solid(100, 80, WHITE)))
    (images / "mark.png").write_bytes(MARK)
    (tmp_path / "mark.png").write_bytes(MARK)
    url = signed("/wm:1:nowe/plain/local:///white.png@png")
    for env in ({"IMGPROXY_WATERMARK_DATA": base64.b64encode(MARK).decode()},
                {"IMGPROXY_WATERMARK_PATH": str(tmp_path / "mark.png")},
                {"IMGPROXY_WATERMARK_URL": "local:///mark.png"}):
        client = await make_client(**env)
        response = await client.get(url)
        assert response.status == 200, env
        out = load(await response.read())
        assert close(px(out, 2, 2), RED, 0) and close(px(out, 50, 50), WHITE, 0), env
        await client.close()


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_watermark_that_is_not_an_image_stops_start_up(images, executor):
    """Start-up fails naming the setting, and what had started (the worker pool, the
    HTTP session) is closed again."""
    (images / "nope.png").write_bytes(b"nope")
    for env in ({"IMGPROXY_WATERMARK_DATA": base64.b64encode(b"nope").decode()},
                {"IMGPROXY_WATERMARK_URL": "local:///nope.png"},
                {"IMGPROXY_WATERMARK_URL": "local:///missing.png"}):
        app = create_app(make_settings(images, VIPSGATE_EXECUTOR=executor, **env))
        runner = web.AppRunner(app)
        with pytest.raises(ConfigError, match="IMGPROXY_WATERMARK_"):
            await runner.setup()
        assert app[POOL].executor is not None  # started before the watermark
        await runner.cleanup()
        assert app[POOL].executor is None and not app[SOURCES].by_scheme


# --- quality, max_bytes, AVIF speed ---------------------------------------------------

def test_format_quality_defaults_are_imgproxys():
    e = effective()
    assert [e.quality(f) for f in ("jpeg", "webp", "avif")] == [80, 79, 63]
    e = effective("fq:webp:50:jpeg:40")
    assert [e.quality(f) for f in ("jpeg", "webp", "avif")] == [40, 50, 63]
    assert effective("fq:webp:50/q:33").quality("webp") == 33
    e = effective("fq:webp:50", IMGPROXY_QUALITY="70", IMGPROXY_FORMAT_QUALITY="avif=40")
    assert [e.quality(f) for f in ("jpeg", "webp", "avif")] == [70, 50, 40]


@pytest.mark.parametrize(("fmt", "quality"), [("jpeg", 80), ("webp", 79), ("avif", 63)])
def test_default_quality_is_what_is_encoded(fmt, quality):
    data = png(photo(64, 48))
    default, _ = run(data, "", fmt)
    explicit, _ = run(data, f"q:{quality}", fmt)
    other, _ = run(data, f"q:{quality - 30}", fmt)
    assert default.data == explicit.data != other.data


def test_format_quality_setting_changes_the_output():
    data = png(photo(160, 120))
    low, _ = run(data, "", "jpeg", IMGPROXY_FORMAT_QUALITY="jpeg=20")
    default, _ = run(data, "", "jpeg")
    assert len(low.data) < len(default.data) * 0.7


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_max_bytes_result_is_never_larger_than_asked(fmt):
    data = png(photo(320, 240))
    full, _ = run(data, "", fmt)
    for divisor in (1.2, 2, 4):
        limit = int(len(full.data) / divisor)
        result, out = run(data, f"mb:{limit}", fmt)
        assert len(result.data) <= limit, (divisor, len(result.data), limit)
        assert (out.width, out.height) == (320, 240)


def test_max_bytes_is_ignored_for_lossless_formats():
    data = png(photo(64, 48))
    plain, _ = run(data, "", "png")
    limited, _ = run(data, "mb:100", "png")
    assert plain.data == limited.data


def test_avif_speed_setting_reaches_the_encoder():
    data = png(photo(64, 48))
    fast, out = run(data, "", "avif", IMGPROXY_AVIF_SPEED="9")
    slow, _ = run(data, "", "avif", IMGPROXY_AVIF_SPEED="2")
    assert fast.data != slow.data and (out.width, out.height) == (64, 48)


# --- metadata ----------------------------------------------------------------------

def tagged_jpeg() -> bytes:
    image = photo(64, 48).copy()
    for name, value in (("exif-ifd0-Copyright", "ACME Photo 2024"), ("exif-ifd0-Artist", "Jane"),
                        ("exif-ifd0-Make", "Canon"), ("exif-ifd3-GPSLatitudeRef", "N"),
                        ("exif-ifd3-GPSLatitude", "51/1 30/1 0/1")):
        image.set_type(pyvips.GValue.gstr_type, name, value)
    image.set_type(pyvips.GValue.blob_type, "xmp-data",
                   b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>')
    return image.jpegsave_buffer(keep="exif:xmp")


def exif(image: pyvips.Image) -> dict[str, str]:
    return {f: image.get(f).split(" (")[0] for f in image.get_fields()
            if f.startswith("exif-ifd")}


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_keep_copyright_keeps_copyright_and_drops_gps(fmt):
    _, out = run(tagged_jpeg(), "", fmt)  # defaults: strip, keep copyright
    tags = exif(out)
    assert tags["exif-ifd0-Copyright"].startswith("ACME Photo 2024")
    assert tags["exif-ifd0-Artist"].startswith("Jane")
    assert not any("GPS" in t or "Make" in t for t in tags)
    assert not out.get_typeof("xmp-data")


def test_without_keep_copyright_everything_is_stripped():
    _, out = run(tagged_jpeg(), "kcr:0", "jpeg")
    assert not exif(out) and not out.get_typeof("exif-data")
    _, out = run(tagged_jpeg(), "", "jpeg", IMGPROXY_KEEP_COPYRIGHT="false")
    assert not out.get_typeof("exif-data")
    _, out = run(jpeg(64, 48), "", "jpeg")  # no EXIF in: no EXIF out
    assert not out.get_typeof("exif-data")


def test_strip_metadata_off_keeps_everything():
    _, out = run(tagged_jpeg(), "sm:0", "jpeg")
    tags = exif(out)
    assert tags["exif-ifd3-GPSLatitudeRef"].startswith("N") and "exif-ifd0-Make" in tags
    assert out.get_typeof("xmp-data")


# --- skip_processing, raw, enforce_thumbnail ------------------------------------------

def test_skip_processing_returns_the_source_bytes():
    data = jpeg(64, 48)
    result, _ = run(data, "skp:jpg/rs:fit:10:10", None)
    assert result.data == data and result.format == "jpeg"
    result, _ = run(data, "skp:jpg/rs:fit:10:10", "jpeg")
    assert result.data == data
    result, out = run(data, "skp:jpg/rs:fit:10:10", "png")  # another format: processed
    assert result.format == "png" and (out.width, out.height) == (10, 8)
    result, out = run(data, "skp:png/rs:fit:10:10", None)  # not in the list: processed
    assert result.data != data and (out.width, out.height) == (10, 8)
    result, _ = run(data, "rs:fit:10:10", None, IMGPROXY_SKIP_PROCESSING_FORMATS="jpg")
    assert result.data == data


def test_skip_processing_still_checks_the_resolution():
    data = jpeg(400, 300)
    with pytest.raises(ImageTooLarge):
        run(data, "skp:jpg", None, IMGPROXY_MAX_SRC_RESOLUTION="0.1")


async def test_skip_processing_and_raw_over_http(make_client, images):
    data = jpeg(64, 48)
    (images / "cat.jpg").write_bytes(data)
    (images / "notes.txt").write_bytes(b"just text")
    client = await make_client(IMGPROXY_SKIP_PROCESSING_FORMATS="jpg")
    response = await client.get(signed("/rs:fit:10:10/plain/local:///cat.jpg"))
    assert await response.read() == data and response.headers["Content-Type"] == "image/jpeg"
    response = await client.get(signed("/rs:fit:10:10/plain/local:///cat.jpg@png"))
    assert load(await response.read()).width == 10
    response = await client.get(signed("/raw:1/rs:fit:10:10/plain/local:///cat.jpg@png"))
    assert response.status == 200 and await response.read() == data
    assert response.headers["Content-Type"] == "image/jpeg"
    response = await client.get(signed("/raw:1/plain/local:///notes.txt"))
    assert response.status == 200 and await response.read() == b"just text"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'inline; filename="notes.txt"'


def test_svg_is_never_skipped_or_served_raw_as_svg():
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><script>x()</script>' \
          b'<rect width="20" height="10" fill="red"/></svg>'
    result, out = run(svg, "skp:svg", None)
    assert result.format == "png" and (out.width, out.height) == (20, 10)
    def relayed(body: bytes, content_type: str = "") -> str:
        headers = {"Content-Type": content_type} if content_type else {}
        return passthrough.content_type(Relayed(200, headers, body))

    assert relayed(svg) == relayed(svg, "image/svg+xml") == "application/octet-stream"
    assert relayed(jpeg(8, 8)) == relayed(jpeg(8, 8), "text/html") == "image/jpeg"
    assert relayed(b"text", "text/html; charset=utf-8") == "application/octet-stream"
    assert relayed(b"bytes", "image/png") == "image/png"  # the origin names media: as is


async def test_raw_still_obeys_the_source_size_limit(make_client, images):
    data = jpeg(64, 48)
    (images / "cat.jpg").write_bytes(data)
    client = await make_client(IMGPROXY_MAX_SRC_FILE_SIZE=str(len(data) - 1))
    response = await client.get(signed("/raw:1/plain/local:///cat.jpg"))
    assert response.status == 422


def test_enforce_thumbnail_on_an_avif_without_one_uses_the_image():
    data = photo(64, 48).heifsave_buffer(compression="av1", effort=0)
    _, out = run(data, "eth:1", "png")
    assert (out.width, out.height) == (64, 48)


# --- filename, attachment, min sizes -----------------------------------------------------

async def test_filename_and_attachment_headers(make_client, images):
    (images / "cat.jpg").write_bytes(jpeg(64, 48))
    client = await make_client()

    async def disposition(options: str) -> str:
        response = await client.get(signed(f"{options}/plain/local:///cat.jpg"))
        assert response.status == 200
        return response.headers["Content-Disposition"]

    assert await disposition("/rs:fit:10:10") == 'inline; filename="cat.jpg"'
    assert await disposition("/fn:my_pic") == 'inline; filename="my_pic.jpg"'
    assert await disposition("/att:1/f:png") == 'attachment; filename="cat.png"'
    encoded = base64.urlsafe_b64encode('ça "va"'.encode()).decode().rstrip("=")
    assert await disposition(f"/fn:{encoded}:1") == (  # ASCII fallback + RFC 8187 name
        "inline; filename=\"?a %22va%22.jpg\"; filename*=UTF-8''%C3%A7a%20%22va%22.jpg")
    await client.close()
    client = await make_client(IMGPROXY_RETURN_ATTACHMENT="true")
    assert (await disposition("/q:50")).startswith("attachment;")
    assert (await disposition("/att:0")).startswith("inline;")


@pytest.mark.parametrize(("options", "size"), [
    ("rs:fit:100:100/mw:200", (100, 100)),  # min width wins, then cropped to the width
    ("h:50/mw:200", (200, 50)),
    ("w:50/mh:100", (50, 100)),
    ("rs:fit:100:100", (100, 50)),
])
def test_min_width_and_min_height(options, size):
    _, out = run(png(photo(800, 400)), options)
    assert (out.width, out.height) == size

"""The memory model and the limits around it (issue 24): what the header says a job
will hold, the job memory limit (negotiated formats fall back, named ones are
refused), the result area, the longest source side, SVG guards, JPEG scans."""

from __future__ import annotations

import pytest
import pyvips

from conftest import ClientFactory, effective, signed
from hostilegen import jpeg_with_scans, svg_embedding, svg_with_text
from imagegen import animated, photo
from vipsgate.errors import ImageTooLarge, UnprocessableImage
from vipsgate.processing import codecs, prepare, svg_guard


def header_of(data: bytes, fmt: str) -> prepare.Header:
    return prepare.inspect(codecs.Input(data), fmt, effective())


def test_decoders_that_hold_more_than_strips_are_known_from_the_header():
    image = photo(640, 480)
    assert header_of(image.pngsave_buffer(interlace=True), "png").whole
    assert not header_of(image.pngsave_buffer(), "png").whole
    progressive = header_of(image.jpegsave_buffer(interlace=True, subsample_mode="on"), "jpeg")
    assert progressive.held == 640 * 480 * 3  # 4:2:0 coefficients, 2 bytes each
    assert header_of(image.jpegsave_buffer(), "jpeg").held == 0


async def test_a_negotiated_format_falls_back_when_it_would_not_fit(make_client: ClientFactory,
                                                                   images) -> None:
    (images / "logo.png").write_bytes(photo(200, 200).pngsave_buffer())
    client = await make_client(VIPSGATE_MAX_JOB_MEMORY="160MiB", IMGPROXY_AUTO_AVIF="1",
                               IMGPROXY_AUTO_WEBP="1")
    path = "/rs:fit:3000:3000:1/plain/local:///logo.png"
    modern = {"Accept": "image/avif,image/webp,*/*"}
    response = await client.get(signed(path), headers=modern)
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/webp"  # AVIF would need ~180 MiB
    small = await client.get(signed("/rs:fit:300:300/plain/local:///logo.png"), headers=modern)
    assert small.headers["Content-Type"] == "image/avif"
    named = await client.get(signed(path + "@avif"))
    assert named.status == 422


async def test_the_result_area_is_bounded(make_client: ClientFactory, images) -> None:
    (images / "a.png").write_bytes(photo(100, 100).pngsave_buffer())
    (images / "a.gif").write_bytes(animated("gif", frames=10, width=400, height=400))
    client = await make_client(VIPSGATE_MAX_RESULT_RESOLUTION="1")
    assert (await client.get(signed("/rs:fit:1100:1100:1/plain/local:///a.png"))).status == 422
    assert (await client.get(signed("/rs:fit:900:900:1/plain/local:///a.png"))).status == 200
    frames = await client.get(signed("/plain/local:///a.gif"))  # 10 x 0.16 MP
    assert frames.status == 422
    assert (await client.get(signed("/plain/local:///a.gif@png"))).status == 200  # one frame


async def test_the_longest_source_side_is_bounded(make_client: ClientFactory, images) -> None:
    (images / "long.png").write_bytes(photo(1001, 10).pngsave_buffer())
    (images / "ok.png").write_bytes(photo(1000, 10).pngsave_buffer())
    client = await make_client(VIPSGATE_MAX_SRC_DIMENSION="1000")
    refused = await client.get(signed("/rs:fit:100:100/plain/local:///long.png"))
    assert refused.status == 422
    assert (await client.get(signed("/rs:fit:100:100/plain/local:///ok.png"))).status == 200


def test_jpeg_scans_are_counted_across_chunks():
    counter = codecs.ScanCounter()
    for _ in range(codecs.MAX_JPEG_SCANS):
        counter.feed(b"data\xff")
        counter.feed(b"\xdamore")
    assert counter.scans == codecs.MAX_JPEG_SCANS
    with pytest.raises(UnprocessableImage):
        counter.feed(b"\xff\xda")
    with pytest.raises(UnprocessableImage):
        codecs.Input(jpeg_with_scans(64, codecs.MAX_JPEG_SCANS)).limit_scans()
    codecs.Input(photo(64, 64).jpegsave_buffer(interlace=True)).limit_scans()  # ~10 scans


def grey_png(side: int) -> bytes:
    data: bytes = pyvips.Image.black(side, side).cast("uchar").pngsave_buffer()
    return data


def test_svg_guards():
    limit = 1_000_000  # pixels
    assert svg_guard.check(svg_embedding(grey_png(500)), limit) == 500 * 500 * 8
    with pytest.raises(ImageTooLarge, match="embeds"):
        svg_guard.check(svg_embedding(grey_png(1001)), limit)
    with pytest.raises(ImageTooLarge, match="embeds"):  # the sum counts
        svg_guard.check(svg_embedding(grey_png(800)).replace(
            b"</svg>", svg_embedding(grey_png(800))[svg_embedding(b"").index(b"<image"):]),
            limit)
    nested = svg_embedding(svg_embedding(grey_png(1001)), mime="image/svg+xml")
    with pytest.raises(ImageTooLarge, match="embeds"):
        svg_guard.check(nested, limit)
    deep = svg_embedding(svg_embedding(svg_embedding(svg_embedding(grey_png(8)),
                                                     "image/svg+xml"), "image/svg+xml"),
                         "image/svg+xml")
    with pytest.raises(ImageTooLarge, match="nested"):
        svg_guard.check(deep, limit)
    percent = (b'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/svg+xml,'
               + bytes(f"%3Csvg%3E{'%3Ctext%3Ex%3C/text%3E' * 20_000}%3C/svg%3E", "ascii")
               + b'"/></svg>')
    with pytest.raises(ImageTooLarge, match=r"elements|text"):
        svg_guard.check(percent, limit)
    with pytest.raises(ImageTooLarge, match="text"):
        svg_guard.check(svg_with_text(svg_guard.MAX_TEXT + 1), limit)
    assert svg_guard.check(svg_with_text(svg_guard.MAX_TEXT), limit) == 0
    filters = b"".join(b'<feGaussianBlur stdDeviation="2"/>'
                       for _ in range(svg_guard.MAX_FILTER_PRIMITIVES + 1))
    with pytest.raises(ImageTooLarge, match="filter"):
        svg_guard.check(b"<svg><filter>" + filters + b"</filter></svg>", limit)
    elements = b"<g/>" * (svg_guard.MAX_ELEMENTS + 1)
    with pytest.raises(ImageTooLarge, match="elements"):
        svg_guard.check(b"<svg>" + elements + b"</svg>", limit)

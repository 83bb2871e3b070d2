"""Animated GIF and WebP: every frame resized, delays and loop kept, frame limits."""

from __future__ import annotations

import pytest
import pyvips

from conftest import process_url, signed
from imagegen import load, solid

DELAYS = [100, 50, 200, 70, 120]


def animation(fmt: str, delays: list[int] = DELAYS, loop: int = 3, width: int = 120,
              height: int = 80) -> bytes:
    """Frame ``i`` is white with a red dot whose x grows with ``i``."""
    frames = len(delays)
    pages = [solid(width, height, (250, 250, 250)).draw_circle(
        [220, 20, 20], 12 + i * (width - 24) // (frames - 1), height // 2, 8, fill=True)
        for i in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", delays)
    strip.set_type(pyvips.GValue.gint_type, "loop", loop)
    return strip.write_to_buffer(f".{fmt}")


def run(data: bytes, options: str, fmt: str | None, watermark: bytes | None = None,
        **env: str):  # type: ignore[no-untyped-def]
    result = process_url(data, options, fmt, watermark, **env)
    animated = result.format in ("gif", "webp")
    return result, load(result.data, n=-1) if animated else load(result.data)


def frames_of(image: pyvips.Image) -> list[pyvips.Image]:
    height = image.get("page-height") if image.get_typeof("page-height") else image.height
    return [image.crop(0, i * height, image.width, height) for i in range(image.height // height)]


def _dot(frame: pyvips.Image) -> float:
    """Mean x of the red dot's pixels (0 when the frame shows none)."""
    dark = (frame[1] < 128).ifthenelse(1, 0)
    columns, _ = dark.project()
    weights = [columns(x, 0)[0] for x in range(frame.width)]
    return sum(x * w for x, w in enumerate(weights)) / max(1, sum(weights))


@pytest.mark.parametrize(("src", "out"), [("gif", "gif"), ("webp", "webp"), ("gif", "webp")])
def test_animation_is_kept_with_delays_and_loop(src, out):
    result, image = run(animation(src), "rs:fit:60:60", out)
    assert result.format == out and (result.width, result.height) == (60, 40)
    assert image.get("n-pages") == 5 and image.get("page-height") == 40
    assert list(image.get("delay")) == DELAYS
    assert image.get("loop") == 3
    xs = [_dot(f) for f in frames_of(image)]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 30  # the frames are still different


def test_every_frame_gets_every_step():
    mark = solid(8, 8, (0, 0, 255)).pngsave_buffer()
    _, image = run(animation("gif"), "rs:fill:50:50/g:sm/pd:5/bg:00ff00/wm:1:nowe", "gif",
                   mark)
    assert image.get("n-pages") == 5 and (image.width, image.get("page-height")) == (60, 60)
    for frame in frames_of(image):
        assert [round(v) for v in frame(59, 59)][:3] == [0, 255, 0]  # padding
        assert [round(v) for v in frame(2, 2)][:3] == [0, 0, 255]  # watermark, after padding


def test_smart_gravity_crops_every_frame_the_same_way():
    _, image = run(animation("webp"), "rs:fill:40:80/g:sm", "webp")
    xs = [_dot(f) for f in frames_of(image)]
    # centre crop of 120x80 at 40x80: only the middle frames show the dot, at a fixed window
    assert image.get("n-pages") == 5 and image.width == 40
    assert xs[0] == 0 and xs[-1] == 0 and 0 < xs[2] < 40


@pytest.mark.parametrize("fmt", ["jpeg", "png", "avif"])
def test_animated_source_as_a_still_format_gives_the_first_frame(fmt):
    result, image = run(animation("gif"), "rs:fit:60:60", fmt)
    assert result.format == fmt and (image.width, image.height) == (60, 40)
    assert not image.get_typeof("n-pages") or image.get("n-pages") == 1
    assert _dot(image) < 15  # frame 0's dot is on the left


def test_max_animation_frames_limits_the_frames():
    _, image = run(animation("gif"), "rs:fit:60:60", "gif", IMGPROXY_MAX_ANIMATION_FRAMES="3")
    assert image.get("n-pages") == 3 and list(image.get("delay")) == DELAYS[:3]
    _, image = run(animation("gif"), "rs:fit:60:60", "gif", IMGPROXY_MAX_ANIMATION_FRAMES="1")
    assert image.height == 40 and (not image.get_typeof("n-pages") or image.get("n-pages") == 1)


def test_trim_is_ignored_for_animations():
    _, image = run(animation("gif"), "t:10", "gif")
    assert image.get("n-pages") == 5 and (image.width, image.get("page-height")) == (120, 80)
    _, still = run(animation("gif"), "t:10", "png")  # the first frame alone is trimmed
    assert still.width < 40


async def test_animation_over_http(make_client, images):
    (images / "anim.gif").write_bytes(animation("gif"))
    client = await make_client(IMGPROXY_MAX_ANIMATION_FRAMES="4")
    response = await client.get(signed("/rs:fit:30:30/plain/local:///anim.gif"))
    assert response.status == 200 and response.headers["Content-Type"] == "image/gif"
    image = load(await response.read(), n=-1)
    assert image.get("n-pages") == 4 and list(image.get("delay")) == DELAYS[:4]


@pytest.mark.corpus
@pytest.mark.parametrize(("name", "fmt"), [("gif-animated-30-frames.gif", "gif"),
                                           ("webp-animated.webp", "webp")])
def test_corpus_animations_keep_frames_and_delays(corpus, name, fmt):
    data = (corpus / name).read_bytes()
    source = load(data, n=-1)
    _, image = run(data, "rs:fit:40:40", fmt)
    assert image.get("page-height") <= 40 and image.width <= 40
    if fmt == "webp":
        assert image.get("n-pages") == source.get("n-pages")
        assert list(image.get("delay")) == list(source.get("delay"))
    else:  # libvips' gifsave merges identical consecutive frames, adding up their delays
        assert 1 < image.get("n-pages") <= source.get("n-pages")
        assert sum(image.get("delay")) == sum(source.get("delay"))

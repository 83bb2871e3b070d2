"""Grey stays grey: 8- and 16-bit grey (+ alpha) sources come out as 1-band 8-bit grey
(2 bands with alpha) where the format stores grey, through every step that could
bring colour in; a colour background or watermark turns the result sRGB, as in imgproxy.
"""

from __future__ import annotations

import pytest
import pyvips

from conftest import process_url
from imagegen import load, photo, solid


def grey(width: int = 64, height: int = 48, bits: int = 8, alpha: bool = False) -> bytes:
    """A grey PNG: a horizontal ramp, optionally with a half-transparent right half."""
    image = (pyvips.Image.xyz(width, height)[0] * (200 / width) + 20).cast("uchar")
    if alpha:
        image = image.bandjoin((pyvips.Image.xyz(width, height)[0] < width // 2)
                               .ifthenelse(255, 128).cast("uchar"))
    image = image.copy(interpretation="b-w")
    if bits == 16:
        image = (image.cast("ushort") * 257).copy(interpretation="grey16")
    return image.pngsave_buffer(bitdepth=bits)


def run(data: bytes, options: str = "", fmt: str = "png",
        watermark: bytes | None = None) -> pyvips.Image:
    result = process_url(data, options, fmt, watermark)
    assert result.format == fmt
    return load(result.data)


def neutral(image: pyvips.Image) -> bool:
    """Every pixel has R = G = B (within the codec's rounding)."""
    rgb = image.colourspace("srgb")[0:3]
    return (rgb[0] - rgb[1]).abs().max() <= 2 and (rgb[1] - rgb[2]).abs().max() <= 2


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_grey_in_grey_out(fmt, bits):
    out = run(grey(bits=bits), "rs:fit:32:32", fmt)
    assert (out.bands, out.format, out.interpretation) == (1, "uchar", "b-w")
    assert (out.width, out.height) == (32, 24)
    assert out.avg() == pytest.approx(load(grey()).avg(), abs=3)


def test_grey_webp_is_neutral_and_smaller_than_colour_noise():
    """WebP stores colour only: the grey result decodes with R = G = B."""
    out = run(grey(), "rs:fit:32:32", "webp")
    assert neutral(out)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_grey_with_alpha_keeps_its_alpha(fmt):
    out = run(grey(alpha=True), "", fmt)
    assert out.hasalpha()
    if fmt == "png":
        assert out.bands == 2 and out.interpretation == "b-w"
    assert out(60, 10)[-1] == 128 and out(2, 10)[-1] == 255


@pytest.mark.parametrize("options", [
    "bg:808080/ex:1/rs:fit:100:100",  # neutral background: stays grey
    "pd:5", "ex:1/rs:fit:100:100",  # transparent padding: grey + alpha
    "bl:2/sh:1/pix:4", "rot:90/fl:1:0", "rs:fill:20:40/g:sm",
    "t:10", "c:30:20:nowe",
])
def test_steps_keep_grey(options):
    out = run(grey(alpha="pd" in options or ("ex" in options and "bg" not in options)),
              options)
    assert out.interpretation == "b-w" and out.bands in (1, 2), options


@pytest.mark.parametrize("options", ["bg:ff0000/ex:1/rs:fit:100:100", "bg:00ff00/pd:4"])
def test_a_colour_background_turns_the_image_srgb(options):
    out = run(grey(), options)
    assert out.interpretation == "srgb" and out.bands == 3
    assert out(0, 0) == [255, 0, 0] or out(0, 0) == [0, 255, 0]
    assert neutral(out.crop(out.width // 2 - 2, out.height // 2 - 2, 4, 4))


def test_grey_with_alpha_flattens_onto_a_neutral_or_colour_background():
    out = run(grey(alpha=True), "", "jpeg")  # no alpha in JPEG: onto white, stays grey
    assert out.bands == 1 and out(62, 10)[0] > 228  # 216 half-transparent over white
    out = run(grey(alpha=True), "bg:0000ff", "jpeg")
    assert out.bands == 3 and out(63, 10)[2] > out(63, 10)[0] + 40


def test_watermark_grey_on_grey_stays_grey_colour_on_grey_turns_srgb():
    grey_mark = solid(16, 16, (255, 255, 255)).colourspace("b-w").pngsave_buffer()
    out = run(grey(), "wm:1:ce", watermark=grey_mark)
    assert out.interpretation == "b-w" and out(32, 24)[0] == 255
    colour_mark = solid(16, 16, (255, 0, 0)).pngsave_buffer()
    out = run(grey(), "wm:0.5:ce", watermark=colour_mark)
    assert out.bands == 3 and out(32, 24)[0] > out(32, 24)[1] + 40


def test_grey_watermark_on_a_colour_image():
    grey_mark = solid(16, 16, (0, 0, 0)).colourspace("b-w").pngsave_buffer()
    out = run(photo(64, 48).pngsave_buffer(), "wm:1:nowe", watermark=grey_mark)
    assert out.bands == 3 and out(4, 4) == [0, 0, 0]


@pytest.mark.parametrize("fmt", ["gif", "avif", "tiff", "bmp", "ico", "jxl"])
def test_every_output_format_takes_grey(fmt):
    result = process_url(grey(), "rs:fit:32:32", fmt)
    out = load(result.data) if fmt not in ("bmp", "ico", "jxl") else None
    assert result.data and (out is None or neutral(out))

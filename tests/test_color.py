"""Colour: CMYK, ICC-tagged and 16-bit sources come out as 8-bit sRGB, grey ones as
8-bit grey (``test_grey.py`` has the grey cases through every step).

The reference for "correct" is libvips itself: ``icc_transform("srgb")`` of
the same source, compared on the mean colour of each band.
"""

from __future__ import annotations

import pytest
import pyvips

from conftest import process_url
from imagegen import load, photo

ICC = "icc-profile-data"


def run(data: bytes, options: str = "", fmt: str = "png"):  # type: ignore[no-untyped-def]
    result = process_url(data, options, fmt)
    return load(result.data)


def band_means(image: pyvips.Image) -> list[float]:
    stats = image.stats()
    return [stats(4, b + 1)[0] for b in range(image.bands)]


def assert_matches_reference(out: pyvips.Image, reference: pyvips.Image, tol: float = 1.5):
    assert out.interpretation == "srgb" and out.format == "uchar"
    assert (out.width, out.height) == (reference.width, reference.height)
    got, want = band_means(out)[:3], band_means(reference)[:3]
    assert all(abs(g - w) <= tol for g, w in zip(got, want, strict=True)), (got, want)


def p3_jpeg() -> tuple[bytes, pyvips.Image]:
    """A Display P3 JPEG (pixels in P3, P3 profile embedded) and its source."""
    image = photo(96, 64).icc_transform("p3", input_profile="srgb")
    return image.jpegsave_buffer(Q=95, keep="icc"), image


def test_icc_tagged_source_is_converted_to_srgb():
    data, _ = p3_jpeg()
    source = load(data)
    assert source.get_typeof(ICC)
    out = run(data)
    assert_matches_reference(out, source.icc_transform("srgb", embedded=True))
    assert not out.get_typeof(ICC)  # strip_color_profile is on by default
    # and it really was converted: the raw P3 values are visibly different
    assert max(abs(a - b) for a, b in zip(band_means(out), band_means(source), strict=True)) > 2


def test_strip_color_profile_off_keeps_the_original_profile_and_pixels():
    data, _ = p3_jpeg()
    source = load(data)
    out = run(data, "scp:0")
    assert bytes(out.get(ICC)) == bytes(source.get(ICC))
    assert all(abs(a - b) <= 1 for a, b in zip(band_means(out), band_means(source), strict=True))
    jpeg_out = run(data, "scp:0", "jpeg")
    assert bytes(jpeg_out.get(ICC)) == bytes(source.get(ICC))


@pytest.mark.parametrize("with_profile", [False, True])
def test_cmyk_source_is_converted_to_srgb(with_profile):
    cmyk = photo(96, 64).icc_transform("cmyk", input_profile="srgb")
    data = cmyk.jpegsave_buffer(Q=95, keep="icc" if with_profile else "none")
    source = load(data)
    assert source.interpretation == "cmyk" and bool(source.get_typeof(ICC)) == with_profile
    for options in ("", "scp:0"):  # a CMYK profile is never kept on RGB output
        out = run(data, options)
        assert out.bands == 3 and not out.get_typeof(ICC)
        assert_matches_reference(out, source.icc_transform("srgb", embedded=True))


def test_16_bit_png_becomes_8_bit():
    source = photo(64, 48).copy_memory()  # one noise draw, for the reference too
    image = (source.cast("ushort") * 257).copy(interpretation="rgb16")
    data = image.pngsave_buffer(bitdepth=16)
    assert load(data).format == "ushort"
    out = run(data)
    assert out.format == "uchar" and out.interpretation == "srgb"
    assert all(abs(a - b) <= 0.6 for a, b in zip(band_means(out), band_means(source),
                                                 strict=True))


@pytest.mark.parametrize("bits", [8, 16])
def test_grey_with_alpha_stays_8_bit_grey_with_alpha(bits):
    grey = pyvips.Image.black(40, 30) + 90
    alpha = pyvips.Image.xyz(40, 30)[0] * 6
    image = grey.bandjoin(alpha).cast("uchar").copy(interpretation="b-w")
    if bits == 16:
        image = (image.cast("ushort") * 257).copy(interpretation="grey16")
    data = image.pngsave_buffer(bitdepth=bits)
    out = run(data)
    assert out.bands == 2 and out.format == "uchar" and out.interpretation == "b-w"
    assert [round(v) for v in out(20, 10)] == [90, 120]


def test_broken_profile_falls_back_to_plain_conversion():
    source = photo(32, 24).copy_memory()  # one noise draw: photo() adds fresh noise each call
    image = source.copy()
    image.set_type(pyvips.GValue.blob_type, ICC, b"\0" * 200)
    data = image.pngsave_buffer(keep="icc")
    out = run(data)
    assert not out.get_typeof(ICC)
    assert_matches_reference(out, source, tol=0.5)


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["jpeg-cmyk.jpg", "jpeg-icc-adobe-rgb.jpg",
                                  "png-icc-display-p3.png", "png-icc-prophoto.png",
                                  "tiff-cmyk-jpeg.tif"])
def test_corpus_sources_match_libvips_reference(corpus, name):
    source = pyvips.Image.new_from_file(str(corpus / name))
    reference = source.icc_transform("srgb", embedded=True)
    assert_matches_reference(run((corpus / name).read_bytes()), reference)


@pytest.mark.corpus
def test_grey_icc_source_becomes_sgrey(corpus):
    """A Gray Gamma 2.2 profile is applied (to sGrey) and dropped; the result stays grey."""
    data = (corpus / "jpeg-grayscale-icc-gray-gamma22.jpg").read_bytes()
    source = load(data)
    out = run(data)
    assert out.bands == 1 and out.interpretation == "b-w" and not out.get_typeof(ICC)
    reference = source.icc_transform("sgrey", embedded=True)
    assert abs(out.avg() - reference.avg()) <= 1.0


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["png-16bit-rgb.png", "png-16bit-rgba.png",
                                  "png-gray-alpha-16bit.png", "tiff-16bit-rgb.tiff"])
def test_corpus_16_bit_sources_become_8_bit(corpus, name):
    source = pyvips.Image.new_from_file(str(corpus / name))
    out = run((corpus / name).read_bytes())
    grey = source.interpretation == "grey16"
    assert out.format == "uchar" and out.interpretation == ("b-w" if grey else "srgb")
    reference = source.colourspace("srgb")
    assert_matches_reference(out.colourspace("srgb"), reference, tol=1.0)

"""HEIC, BMP, ICO and JPEG XL sources: decoded outside libvips, processed like the rest.

Every such file of ../shared/corpus answers 200 at the expected size or a clean 4xx
(bombs 422 from the header, before any pixel is decoded); generated files cover HEIC
orientation (``irot``), alpha, 10-bit samples and multi-image files, ICO's largest
entry, JPEG XL grey + alpha, and a header-declared bomb per format.
"""

from __future__ import annotations

import csv
import time

import pytest
from PIL import Image

from conftest import process_url, signed
from formatgen import (
    BLUE,
    RED,
    BitWriter,
    bmp_bomb,
    heic,
    heic_16bit,
    heic_bomb,
    heic_multi,
    ico_bomb,
    jxl,
    jxl_bomb,
    marked,
    photo_pil,
    pil,
    saved,
)
from imagegen import load, photo
from vipsgate.errors import ImageTooLarge, UnprocessableImage, UnsupportedFormat
from vipsgate.processing import foreign_headers

FORMATS = ("HEIF/HEIC", "BMP", "ICO", "JPEG XL")
#: JPEG XL rows have no size in MANIFEST.tsv (Pillow and libvips could not read them)
JXL_SIZES = {"jxl-container-exif-xmp.jxl": (1, 1), "jxl-hdr-pq.jxl": (1088, 64),
             "jxl-splines.jxl": (2048, 2048), "fuzz-jxl-clusterfuzz-5849986531721216.jxl":
             (512, 256)}
BOX = 100


def corpus_rows(corpus) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    with open(corpus / "MANIFEST.tsv", newline="") as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if r["format"] in FORMATS]


def fitted(width: int, height: int, box: int = BOX) -> tuple[int, int]:
    scale = min(1.0, box / width, box / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


@pytest.mark.corpus
async def test_every_corpus_heic_bmp_ico_jxl_file(make_client, corpus):
    rows = corpus_rows(corpus)
    assert len(rows) >= 15
    client = await make_client(IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(corpus),
                               IMGPROXY_TIMEOUT="20")
    problems, served = [], 0
    for row in rows:
        name = row["file"]
        response = await client.get(signed(f"/rs:fit:{BOX}:{BOX}/plain/local:///{name}"))
        body = await response.read()
        if name.startswith("bomb-"):
            if response.status != 422 or b"resolution" not in body:
                problems.append((name, response.status, body[:80]))
            continue
        if response.status != 200:  # hostile and fuzz files may be refused, cleanly
            clean = 400 <= response.status < 500 and response.content_type == "text/plain"
            if not clean or not name.startswith(("hostile-", "fuzz-", "jxl-animated")):
                problems.append((name, response.status, body[:80]))
            continue
        served += 1
        size = JXL_SIZES.get(name) or (int(row["width"]), int(row["height"]))
        out = load(body)
        out.avg()  # every pixel decodes
        if (out.width, out.height) != fitted(*size):
            problems.append((name, "size", (out.width, out.height), fitted(*size)))
    assert not problems
    assert served >= 11


@pytest.mark.corpus
def test_corpus_multi_image_heic_is_its_primary_image(corpus):
    data = (corpus / "heic-photo-2-images.heic").read_bytes()
    result = process_url(data, "", "png")
    assert (result.width, result.height) == (1280, 854)  # one image, not the 2-image strip


@pytest.mark.corpus
def test_corpus_bombs_are_refused_before_decoding(corpus):
    for name in ("bomb-bmp-3000000x2000000.bmp", "bomb-ico-declared-size.ico"):
        started = time.perf_counter()
        with pytest.raises(ImageTooLarge):
            process_url((corpus / name).read_bytes(), "rs:fit:10:10")
        assert time.perf_counter() - started < 1.0, name


def test_heic_orientation_is_applied_once():
    """pillow-heif writes EXIF orientation 6 as ``irot``: the pixels come rotated, and
    the EXIF tag (still 6) is not applied a second time."""
    result = process_url(heic(marked(60, 40), orientation=6), "", "png")
    out = load(result.data)
    assert (out.width, out.height) == (40, 60)
    assert out(35, 5)[0] > 200 and out(5, 5)[2] > 200  # the red corner is now top-right
    kept = load(process_url(heic(marked(60, 40), orientation=6), "sm:0", "jpeg").data)
    assert (kept.width, kept.height) == (40, 60)
    assert not kept.get_typeof("orientation") or kept.get("orientation") == 1


def test_heic_alpha_is_kept():
    im = Image.new("RGBA", (40, 30), (*RED, 255))
    im.paste((0, 0, 0, 0), (20, 0, 40, 30))
    result = process_url(heic(im), "")
    assert result.format == "png"  # no format asked, alpha: PNG
    out = load(result.data)
    assert out.hasalpha() and out(5, 5)[3] == 255 and out(35, 5)[3] == 0


def test_heic_icc_profile_is_applied():
    """A Display P3 HEIC is converted to sRGB with its embedded profile."""
    p3 = photo(96, 64).icc_transform("p3", input_profile="srgb")
    profile = bytes(load(p3.pngsave_buffer(keep="icc")).get("icc-profile-data"))
    im = pil(p3)
    im.info["icc_profile"] = profile
    out = load(process_url(heic(im, quality=95), "", "png").data)
    assert not out.get_typeof("icc-profile-data")
    want, raw = photo(96, 64).avg(), p3.avg()
    assert abs(out.avg() - want) < abs(out.avg() - raw) and abs(out.avg() - want) < 2.5


def test_heic_10_bit_becomes_8_bit():
    out = load(process_url(heic_16bit((65535, 32768, 0)), "", "png").data)
    assert out.format == "uchar" and out.bands == 3
    assert [round(v) for v in out(3, 3)] == pytest.approx([255, 128, 0], abs=3)


def test_multi_image_heic_gives_the_primary_image():
    data = heic_multi(Image.new("RGB", (40, 30), RED), Image.new("RGB", (20, 10), BLUE), 1)
    out = load(process_url(data, "", "png").data)
    assert (out.width, out.height) == (20, 10) and out(5, 5)[2] > 200


def test_heic_is_resized_and_converted():
    result = process_url(heic(photo_pil(300, 200)), "rs:fill:90:90", "webp")
    assert (result.format, result.width, result.height) == ("webp", 90, 90)
    assert (result.source_format, result.source_width, result.source_height) == \
        ("heic", 300, 200)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "1"])
def test_bmp_modes(mode):
    im = photo_pil(50, 30).convert(mode)
    result = process_url(saved(im, "BMP"), "", "png")
    out = load(result.data)
    assert (out.width, out.height) == (50, 30)
    # Pillow writes RGBA as a plain 32-bit BMP, whose fourth byte readers ignore
    assert out.bands == {"L": 1, "1": 1}.get(mode, 3)


def test_ico_uses_its_largest_entry():
    im = photo_pil(64, 64).convert("RGBA")
    data = saved(im, "ICO", sizes=[(16, 16), (64, 64), (32, 32)])
    result = process_url(data, "", "png")
    assert (result.width, result.height) == (64, 64) and load(result.data).hasalpha()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_jpeg_xl_modes(mode):
    im = photo_pil(48, 32).convert(mode)
    out = load(process_url(jxl(im, quality=95), "", "png").data)
    assert (out.width, out.height) == (48, 32)
    assert out.bands == {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    assert abs(out.avg() - load(process_url(saved(im, "PNG"), "", "png").data).avg()) < 3


@pytest.mark.parametrize("make", [bmp_bomb, ico_bomb, heic_bomb, jxl_bomb])
def test_header_declared_bombs_are_refused_before_any_pixel(make):
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        process_url(make(), "rs:fit:10:10")
    assert time.perf_counter() - started < 1.0


async def test_bombs_answer_422_over_http(make_client, images):
    for name, data in {"b.bmp": bmp_bomb(), "i.ico": ico_bomb(), "h.heic": heic_bomb(),
                       "j.jxl": jxl_bomb()}.items():
        (images / name).write_bytes(data)
    client = await make_client()
    for name in ("b.bmp", "i.ico", "h.heic", "j.jxl"):
        response = await client.get(signed(f"/rs:fit:10:10/plain/local:///{name}"))
        assert response.status == 422, name
        assert "resolution" in await response.text()


@pytest.mark.parametrize("data", [b"BM" + b"\x00" * 40, b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 8,
                                  b"\xff\x0a\x01", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20])
def test_truncated_headers_are_clean_errors(data):
    with pytest.raises(UnprocessableImage):
        process_url(data, "rs:fit:10:10")


def test_animated_jpeg_xl_is_refused():
    """Frames are not counted in a JPEG XL header, so no limit could apply to them."""
    w = BitWriter()
    w.write(1, 1)  # small size
    w.write(7, 5)  # height 64
    w.write(1, 3)  # ratio 1:1
    w.write(0, 1)  # not all default
    w.write(1, 1)  # extra fields
    w.write(0, 3)  # orientation 1
    w.write(0, 2)  # no intrinsic size, no preview
    w.write(1, 1)  # animation: ticks, loops (selectors 0), no timecodes
    w.write(0, 7)
    w.write(0, 6)  # 8-bit samples, modular_16bit_buffers, no extra channels
    data = b"\xff\x0a" + w.bytes() + b"\x00" * 8
    declared = foreign_headers.jxl(data)
    assert (declared.width, declared.height, declared.animated) == (64, 64, True)
    with pytest.raises(UnsupportedFormat):
        process_url(data, "rs:fit:10:10")


async def test_foreign_formats_in_worker_processes(make_client, images):
    (images / "a.heic").write_bytes(heic(photo_pil(80, 60)))
    (images / "b.jxl").write_bytes(jxl(photo_pil(80, 60)))
    (images / "c.bmp").write_bytes(saved(photo_pil(80, 60), "BMP"))
    client = await make_client(VIPSGATE_EXECUTOR="process", IMGPROXY_WORKERS="1")
    for name in ("a.heic", "b.jxl", "c.bmp"):
        response = await client.get(signed(f"/rs:fit:40:40/plain/local:///{name}"))
        assert response.status == 200, name
        assert response.content_type == "image/jpeg"
        assert load(await response.read()).width == 40

"""Pillow's codecs on the fast paths give libvips' exact output (processing/pillow_codecs.py):
the same pixels from a JPEG shrunk on load, the same bytes from the JPEG and WebP savers,
and the same result or the same error from ``process`` on every corpus JPEG; what they
cannot match goes to libvips, and a killed job still stops."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips

from conftest import CORPUS, ROOT, effective, process_url
from imagegen import animated, jpeg, photo, png_alpha
from vipsgate.errors import ProxyError, RequestTimeout
from vipsgate.negotiate import FormatPolicy
from vipsgate.processing import memory_model, pillow_codecs, process
from vipsgate.processing.cancel import KillSwitch

SOURCES = {
    "baseline 4:2:0": lambda: photo(1000, 700).jpegsave_buffer(Q=85, keep="none"),
    "4:4:4": lambda: photo(1000, 700).jpegsave_buffer(Q=95, keep="none"),
    "grey": lambda: photo(1000, 700).colourspace("b-w").jpegsave_buffer(Q=85, keep="none"),
    "odd size": lambda: photo(1001, 703).jpegsave_buffer(Q=85, keep="none"),
    "EXIF": lambda: jpeg(900, 600, orientation=6),
    "Display P3 profile": lambda: photo(1000, 700).icc_transform("p3", input_profile="srgb")
    .jpegsave_buffer(Q=90, keep="icc"),
}


@pytest.mark.parametrize("shrink", [2, 4, 8])
@pytest.mark.parametrize("name", list(SOURCES))
def test_decode_gives_libvips_pixels(name: str, shrink: int) -> None:
    data = SOURCES[name]()
    header = pyvips.Image.new_from_buffer(data, "")
    fast = pillow_codecs.decode_jpeg(data, header, shrink + 0.5, strip=False)
    assert fast is not None
    reference = pyvips.Image.jpegload_buffer(data, shrink=shrink)
    assert (fast.width, fast.height, fast.bands) == (reference.width, reference.height,
                                                     reference.bands)
    assert fast.interpretation == reference.interpretation
    assert fast.write_to_memory() == reference.write_to_memory()
    for field in ("orientation", "icc-profile-data"):
        assert bool(fast.get_typeof(field)) == bool(reference.get_typeof(field))
        assert not fast.get_typeof(field) or fast.get(field) == reference.get(field)
    loader_only = {"jpeg-multiscan", "jpeg-chroma-subsample", "interlaced", "vips-loader"}
    assert set(reference.get_fields()) - set(fast.get_fields()) <= loader_only


def test_decode_declines_what_it_cannot_match() -> None:
    data = photo(400, 300).jpegsave_buffer(Q=85, keep="none")
    header = pyvips.Image.new_from_buffer(data, "")
    assert pillow_codecs.decode_jpeg(data, header, 1.5, strip=True) is None  # no shrink
    cmyk = photo(400, 300).colourspace("cmyk").jpegsave_buffer(Q=85, keep="none")
    assert pillow_codecs.decode_jpeg(cmyk, pyvips.Image.new_from_buffer(cmyk, ""), 4,
                                     strip=True) is None
    truncated = data[:len(data) // 2]
    assert pillow_codecs.decode_jpeg(truncated, header, 4, strip=True) is None
    progressive = photo(400, 300).jpegsave_buffer(Q=85, interlace=True, keep="none")
    assert pillow_codecs.decode_jpeg(progressive, pyvips.Image.new_from_buffer(
        progressive, ""), 4, strip=True) is None  # its scans are counted by libvips' path
    twelve_bit = CORPUS / "jpeg-12bit.jpg"
    if twelve_bit.exists():  # Pillow cannot open it: libvips' path answers its error
        deep = twelve_bit.read_bytes()
        header = pyvips.Image.new_from_buffer(deep, "")
        assert pillow_codecs.decode_jpeg(deep, header, 4, strip=True) is None


def test_decode_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Pillow holds stays inside the memory model's fixed allowance, and its
    (uninterruptible) work is bounded by the source's size."""
    assert pillow_codecs.MAX_DECODE_PIXELS * 10 <= memory_model.FIXED // 2
    data = photo(800, 600).jpegsave_buffer(Q=85, keep="none")
    header = pyvips.Image.new_from_buffer(data, "")
    assert pillow_codecs.decode_jpeg(data, header, 2, strip=True) is not None
    monkeypatch.setattr(pillow_codecs, "MAX_DECODE_PIXELS", 400 * 300 - 1)
    assert pillow_codecs.decode_jpeg(data, header, 2, strip=True) is None
    assert pillow_codecs.decode_jpeg(data, header, 4, strip=True) is not None
    monkeypatch.setattr(pillow_codecs, "MAX_SOURCE_PIXELS", 800 * 600 - 1)
    assert pillow_codecs.decode_jpeg(data, header, 4, strip=True) is None


@pytest.mark.parametrize("quality", [40, 80, 89, 90, 95])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_save_gives_libvips_bytes(quality: int, progressive: bool, grey: bool) -> None:
    image = pyvips.Image.thumbnail_buffer(photo(900, 600).jpegsave_buffer(), 300)
    image = (image.colourspace("b-w") if grey else image).copy_memory()
    e = effective(fmt="jpeg", IMGPROXY_JPEG_PROGRESSIVE=str(progressive).lower())
    fast = pillow_codecs.save(image, "jpeg", quality, "none", e)
    assert fast == image.jpegsave_buffer(Q=quality, optimize_coding=True,
                                         interlace=progressive, keep="none")


@pytest.mark.parametrize("effort", [0, 4, 6])
@pytest.mark.parametrize("alpha", [False, True])
def test_webp_save_gives_libvips_bytes(effort: int, alpha: bool) -> None:
    source = png_alpha(600, 400) if alpha else photo(600, 400).jpegsave_buffer()
    image = pyvips.Image.thumbnail_buffer(source, 300).copy_memory()
    e = effective(fmt="webp", IMGPROXY_WEBP_EFFORT=str(effort))
    for quality in (50, 80, 100):
        assert pillow_codecs.save(image, "webp", quality, "none", e) == \
            image.webpsave_buffer(Q=quality, effort=effort, keep="none")


def test_save_leaves_metadata_animations_and_large_images_to_libvips() -> None:
    frames = pyvips.Image.new_from_buffer(animated("gif", frames=5), "", n=-1)
    assert frames.get("page-height") < frames.height
    assert pillow_codecs.save(frames.cast("uchar"), "webp", 80, "none",
                              effective(fmt="webp")) is None
    e = effective(fmt="jpeg")
    small = photo(64, 64)
    assert pillow_codecs.save(small, "jpeg", 80, "exif", e) is None
    assert pillow_codecs.save(small, "png", 0, "none", e) is None
    assert pillow_codecs.save(pyvips.Image.black(2000, 1001, bands=3), "jpeg", 80, "none",
                              e) is None
    preset = effective(fmt="webp", IMGPROXY_WEBP_PRESET="photo")
    assert pillow_codecs.save(small, "webp", 80, "none", preset) is None


def outcome(data: bytes, options: str, fmt: str, **env: str) -> bytes | str:
    try:
        return process_url(data, options, fmt, **env).data
    except ProxyError as exc:
        return type(exc).__name__


def without_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pillow_codecs, "decode_jpeg", lambda *args, **kwargs: None)
    monkeypatch.setattr(pillow_codecs, "save", lambda *args, **kwargs: None)


CASES = [("rs:fit:300:200", "jpeg", {}), ("rs:fill:200:200/q:92", "webp", {}),
         ("rs:fit:120:120", "jpeg", {"IMGPROXY_STRIP_METADATA": "false"}),
         ("rs:fit:500:500/sm:0", "jpeg", {}), ("rs:fit:150:150", "webp",
                                               {"IMGPROXY_STRIP_COLOR_PROFILE": "false"})]


def test_process_output_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    copyright_photo = photo(1200, 800).copy()
    copyright_photo.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Copyright", "vipsgate tests")
    copyright_photo.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Make", "a camera")
    truncated = SOURCES["baseline 4:2:0"]()
    sources = [animated("gif", frames=5), animated("webp", frames=3)] + \
        [SOURCES[name]() for name in SOURCES] + [copyright_photo.jpegsave_buffer(),
                                                 truncated[:len(truncated) * 2 // 3]]
    taken: list[str] = []

    def counting(name: str) -> Callable[..., object]:
        real = getattr(pillow_codecs, name)

        def counted(*args: object) -> object:
            result = real(*args)
            taken.extend([name] if result is not None else [])
            return result
        return counted

    for name in ("decode_jpeg", "save"):
        monkeypatch.setattr(pillow_codecs, name, counting(name))
    fast = [outcome(data, o, f, **env) for data in sources for o, f, env in CASES]
    assert taken.count("decode_jpeg") >= 25 and taken.count("save") >= 10  # the paths ran
    assert fast[-len(CASES):] == ["UnprocessableImage"] * len(CASES)  # the truncated one
    without_fast_paths(monkeypatch)
    assert fast == [outcome(data, o, f, **env) for data in sources for o, f, env in CASES]


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_a_killed_job_still_stops(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's decode cannot be interrupted, but what it returns is watched: a job killed
    before (or while) it decodes stops at the next libvips step."""
    decoded: list[object] = []
    real = pillow_codecs.decode_jpeg
    monkeypatch.setattr(pillow_codecs, "decode_jpeg",
                        lambda *args: decoded.append(real(*args)) or decoded[-1])
    data = SOURCES["baseline 4:2:0"]()
    switch = KillSwitch()
    switch.kill()
    with pytest.raises(RequestTimeout):
        process(data, effective("rs:fit:200:200", fmt), FormatPolicy(fmt), switch=switch)
    assert decoded and decoded[0] is not None  # Pillow decoded it


def test_corpus_jpegs_give_the_same_result_or_error(corpus: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(p for p in corpus.iterdir()
                   if p.suffix in (".jpg", ".jpeg") and p.stat().st_size < 8 << 20)
    assert files
    sources = [p.read_bytes() for p in files]
    options = [("rs:fit:300:300", "jpeg", {}), ("rs:fill:160:160", "webp", {}),
               ("rs:fit:200:200", "jpeg", {"IMGPROXY_STRIP_COLOR_PROFILE": "false"})]
    fast = [outcome(data, o, f, **env) for data in sources for o, f, env in options]
    without_fast_paths(monkeypatch)
    slow = [outcome(data, o, f, **env) for data in sources for o, f, env in options]
    differing = [files[i // len(options)].name for i, (a, b) in enumerate(zip(fast, slow,
                                                                           strict=True))
                 if a != b]
    assert not differing


def test_floor_chains_make_w1s_result_and_the_ratio_has_its_target() -> None:
    """loadtest/floor.py: both chains give a 300x169 JPEG; the summary prints the ratio
    with issue 23's target (what ``make bench`` shows)."""
    sys.path.insert(0, str(ROOT))
    from loadtest import floor
    data = photo(1920, 1080).jpegsave_buffer(Q=90, keep="none")
    for chain in floor.chains(data).values():
        out = pyvips.Image.new_from_buffer(chain(), "")
        assert (out.width, out.height, out.bands) == (*floor.SIZE, 3)
    report = floor.measure(data, lambda: process_url(data, "rs:fit:300:200/q:80", "jpeg"),
                           rounds=1, calls=1)
    assert report["floor"] in ("pillow", "vips-resize") and report["ratio"] > 0
    assert f"(≤ {floor.TARGET:.2f}: {report['verdict']})" in floor.summary(report)

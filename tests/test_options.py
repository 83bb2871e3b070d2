"""URL grammar: imgproxy's own parser tests (spec §9) and our error messages."""

from __future__ import annotations

import base64
import time
from dataclasses import fields
from urllib.parse import quote

import pytest

from vipsgate.errors import Forbidden, InvalidURL
from vipsgate.grammar import OPTIONS, option_segments
from vipsgate.options import Crop, Extend, Gravity, ProcessingOptions, Watermark
from vipsgate.paths import (
    ParserConfig,
    build_path,
    normalize_path,
    parse_path,
    parse_preset_definitions,
    split_signature,
)

URL = "http://images.dev/lorem/ipsum.jpg?param=value"


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def go_path_escape(text: str) -> str:
    """Go's ``url.PathEscape``: escapes ``/ ? ; ,`` and keeps ``: @ & = + $``."""
    return quote(text, safe=":@&=+$!*'()~-._")


def parse(path: str, **config):  # type: ignore[no-untyped-def]
    return parse_path(path, ParserConfig(**config))


def opts(path: str, **config) -> ProcessingOptions:  # type: ignore[no-untyped-def]
    return parse(path, **config).options


# --- sources and extensions (§9 items 1-9) ----------------------------------------------

def test_base64_source_keeps_its_query_and_extension():
    parsed = parse(f"/size:100:100/{b64(URL)}.png")
    assert (parsed.source, parsed.options.format) == (URL, "png")
    assert (parsed.options.width, parsed.options.height) == (100, 100)


def test_base64_without_extension_is_auto_format():
    assert parse(f"/size:100:100/{b64(URL)}").options.format is None


def test_base64_may_be_split_and_padded():
    encoded = b64(URL)
    split = "/".join(encoded[i:i + 16] for i in range(0, len(encoded), 16))
    assert parse(f"/rs:fit:10:10/{split}.webp").source == URL
    padded = base64.urlsafe_b64encode(b"local:///a.jpg").decode()
    assert padded.endswith("=")
    assert parse(f"/w:1/{padded}").source == "local:///a.jpg"


def test_base64_url_includes_filename_drops_the_last_segment():
    parsed = parse(f"/size:100:100/{b64(URL)}.png/puppy.jpg", base64_url_includes_filename=True)
    assert (parsed.source, parsed.options.format) == (URL, "png")


def test_base_url_is_prepended():
    parsed = parse(f"/size:100:100/{b64('lorem/ipsum.jpg?param=value')}.png",
                   base_url="http://images.dev/")
    assert (parsed.source, parsed.options.format) == (URL, "png")
    plain = parse(f"/size:100:100/plain/{go_path_escape('lorem/ipsum.jpg?param=value')}",
                  base_url="http://images.dev/")
    assert plain.source == URL
    # a source that already starts with the base URL is left alone
    assert parse("/w:1/plain/http://images.dev/x.jpg", base_url="http://images.dev/").source \
        == "http://images.dev/x.jpg"


def test_plain_source_with_and_without_extension():
    parsed = parse("/size:100:100/plain/http://images.dev/lorem/ipsum.jpg@png")
    assert (parsed.source, parsed.options.format) == ("http://images.dev/lorem/ipsum.jpg", "png")
    assert parse("/size:100:100/plain/http://images.dev/lorem/ipsum.jpg").options.format is None
    assert parse("/w:1/plain/local:///a.jpg@").options.format is None  # empty extension


def test_plain_source_is_unescaped_and_keeps_its_query():
    parsed = parse(f"/size:100:100/plain/{go_path_escape(URL)}@png")
    assert (parsed.source, parsed.options.format) == (URL, "png")
    assert parse("/w:1/plain/http://x.dev/a%40b.jpg@png").source == "http://x.dev/a@b.jpg"
    assert parse("/w:1/plain/http://x.dev/a+b.jpg").source == "http://x.dev/a+b.jpg"  # no space


def test_format_option_and_extension():
    assert opts("/format:webp/plain/http://images.dev/a.jpg").format == "webp"
    assert opts("/f:jpg/plain/http://images.dev/a.jpg").format == "jpeg"
    assert opts("/ext:avif/plain/http://images.dev/a.jpg").format == "avif"
    # the extension is applied last and wins over f:
    assert opts("/f:webp/plain/http://images.dev/a.jpg@png").format == "png"


# --- options (§9 items 10-26, 29-32) ----------------------------------------------------

def test_resize_and_its_parts():
    o = opts("/resize:fill:100:200:1/plain/http://images.dev/a.jpg")
    assert (o.resizing_type, o.width, o.height, o.enlarge) == ("fill", 100, 200, True)
    o = opts("/rs:fill:300:200:1/plain/http://images.dev/lorem/ipsum.jpg@png")
    assert (o.resizing_type, o.width, o.height, o.enlarge, o.format) == \
        ("fill", 300, 200, True, "png")
    assert opts("/resizing_type:fill/plain/x").resizing_type == "fill"
    o = opts("/size:100:200:1/plain/x")
    assert (o.width, o.height, o.enlarge) == (100, 200, True)
    assert opts("/width:100/plain/x").width == 100
    assert opts("/height:100/plain/x").height == 100
    assert opts("/enlarge:1/plain/x").enlarge is True


def test_resize_skips_empty_arguments_and_accepts_extend():
    o = opts("/rs::300/plain/x")
    assert (o.resizing_type, o.width, o.height) == ("fit", 300, 0)
    o = opts("/rs:fill:300:200:1:1:so:10:20/plain/x")
    assert o.extend == Extend(True, Gravity("so", 10, 20))
    o = opts("/s:10:20:0:1:nowe/plain/x")
    assert o.extend == Extend(True, Gravity("nowe"))


def test_short_and_long_names_mean_the_same():
    pairs = [("rt:force", "resizing_type:force"), ("w:5", "width:5"), ("h:6", "height:6"),
             ("mw:7", "min-width:7"), ("mw:7", "min_width:7"), ("mh:8", "min-height:8"),
             ("z:1.5", "zoom:1.5"), ("el:1", "enlarge:1"), ("ex:1", "extend:1"),
             ("exar:1", "extend_aspect_ratio:1"), ("exar:1", "extend_ar:1"), ("g:so", "gravity:so"),
             ("c:10:20", "crop:10:20"), ("q:50", "quality:50"),
             ("fq:webp:50", "format_quality:webp:50"), ("ar:0", "auto_rotate:0"),
             ("sm:0", "strip_metadata:0"), ("scp:0", "strip_color_profile:0"),
             ("bg:fff", "background:fff"), ("cb:1", "cachebuster:1"), ("f:png", "format:png"),
             ("s:1:2", "size:1:2"), ("rs:fit:1:2", "resize:fit:1:2")]
    for short, long in pairs:
        assert opts(f"/{short}/plain/x") == opts(f"/{long}/plain/x"), (short, long)


def test_extend():
    assert opts("/extend:1:so:10:20/plain/x").extend == Extend(True, Gravity("so", 10, 20))
    assert opts("/ex:1/plain/x").extend == Extend(True, Gravity("ce"))
    assert opts("/ex:0/plain/x").extend.enabled is False
    assert opts("/exar:1:fp:0.5:0.5/plain/x").extend_ar == Extend(True, Gravity("fp", 0.5, 0.5))
    for bad in ("/extend:1:sm/plain/x", "/extend:1:re/plain/x"):
        with pytest.raises(InvalidURL):
            parse(bad)


def test_gravity():
    assert opts("/gravity:soea/plain/x").gravity == Gravity("soea")
    assert opts("/gravity:fp:0.5:0.75/plain/x").gravity == Gravity("fp", 0.5, 0.75)
    assert opts("/g:sm/plain/x").gravity == Gravity("sm")
    assert opts("/g:nowe:10:0.25/plain/x").gravity == Gravity("nowe", 10, 0.25)
    for bad in ("/gravity:re/plain/x", "/g:fp:2:0/plain/x", "/g:fp:0.5/plain/x",
                "/g:sm:1:1/plain/x", "/g:ce:a:b/plain/x"):
        with pytest.raises(InvalidURL):
            parse(bad)


def test_crop():
    assert opts("/crop:100:200/plain/x").crop == Crop(100, 200, None)
    assert opts("/crop:100:200:nowe:10:20/plain/x").crop == Crop(100, 200, Gravity("nowe", 10, 20))
    assert opts("/c:0.5:0.5:sm/plain/x").crop == Crop(0.5, 0.5, Gravity("sm"))
    assert opts("/c:100/plain/x").crop == Crop(100, 0, None)
    with pytest.raises(InvalidURL):
        parse("/crop:100:200:re/plain/x")


def test_quality_background_and_filters():
    assert opts("/quality:55/plain/x").quality == 55
    assert opts("/background:128:129:130/plain/x").background == (128, 129, 130)
    assert opts("/background:ffddee/plain/x").background == (255, 221, 238)
    assert opts("/bg:fff/plain/x").background == (255, 255, 255)
    assert opts("/background:fff/background:/plain/x").background is None
    o = opts("/blur:0.2/sharpen:0.2/dpr:2/plain/x")
    assert (o.blur, o.sharpen, o.dpr) == (0.2, 0.2, 2.0)
    assert opts("/watermark:0.5:soea:10:20:0.6/plain/x").watermark == \
        Watermark(0.5, "soea", 10, 20, 0.6)
    assert opts("/fq:webp:50:jpg:70/plain/x").format_quality == (("jpeg", 70), ("webp", 50))


def test_zoom_and_min_sizes():
    assert opts("/z:2/plain/x").zoom == (2.0, 2.0)
    assert opts("/z:0.5:0.25/plain/x").zoom == (0.5, 0.25)
    o = opts("/mw:100/mh:50/plain/x")
    assert (o.min_width, o.min_height) == (100, 50)


def test_flags_use_go_parse_bool():
    for true in ("1", "t", "T", "TRUE", "true", "True"):
        assert opts(f"/el:{true}/plain/x").enlarge is True
    for false in ("0", "f", "false", "yes", "2"):  # anything else is false, not an error
        assert opts(f"/el:{false}/plain/x").enlarge is False
    o = opts("/ar:0/sm:0/scp:1/plain/x")
    assert (o.auto_rotate, o.strip_metadata, o.strip_color_profile) == (False, False, True)
    o = opts("/plain/x")  # unset: the server's defaults apply
    assert (o.auto_rotate, o.strip_metadata, o.strip_color_profile) == (None, None, None)


def test_cachebuster_strip_metadata_preserve_hdr():
    o = opts("/cachebuster:123/strip_metadata:true/ph:1/plain/x")
    assert (o.cachebuster, o.strip_metadata, o.preserve_hdr) == ("123", True, True)


def test_later_options_override_earlier_ones():
    o = opts("/w:100/rs:fill:200/w:300/plain/x")
    assert (o.resizing_type, o.width) == ("fill", 300)


def test_presets():
    presets = {"test1": ("resizing_type:fill",), "test2": ("blur:0.2", "quality:50")}
    parsed = parse("/preset:test1:test2/plain/x", presets=presets)
    o = parsed.options
    assert (o.resizing_type, o.blur, o.quality) == ("fill", 0.2, 50)
    assert parsed.used_presets == ("test1", "test2")
    assert parse("/pr:test2/plain/x", presets=presets).options.quality == 50
    with pytest.raises(InvalidURL, match="Unknown preset"):
        parse("/pr:nope/plain/x", presets=presets)


def test_default_preset_applies_first_and_url_wins():
    presets = {"default": ("resizing_type:fill", "blur:0.2", "quality:50")}
    parsed = parse("/quality:70/plain/x", presets=presets)
    assert (parsed.options.resizing_type, parsed.options.blur, parsed.options.quality) == \
        ("fill", 0.2, 70)
    assert parsed.used_presets == ("default",)


def test_looping_presets_do_not_fail():
    presets = {"test1": ("blur:0.2", "preset:test2"), "test2": ("quality:50", "preset:test1")}
    parsed = parse("/preset:test1/plain/x", presets=presets)
    assert parsed.used_presets == ("test1", "test2")
    assert (parsed.options.blur, parsed.options.quality) == (0.2, 50)


def test_only_presets_mode():
    presets = {"test1": ("blur:0.2",), "test2": ("quality:50",)}
    for path in ("/test1:test2/plain/http://images.dev/lorem/ipsum.jpg@png",
                 f"/test1:test2/{b64('http://images.dev/lorem/ipsum.jpg')}.png"):
        parsed = parse(path, presets=presets, only_presets=True)
        assert (parsed.options.blur, parsed.options.quality, parsed.options.format) == \
            (0.2, 50, "png")
        assert parsed.source == "http://images.dev/lorem/ipsum.jpg"


def test_allowed_processing_options():
    config = {"allowed_options": frozenset({"w", "h", "pr"}), "presets": {"test1": ("blur:0.2",)}}
    assert opts("/w:100/h:200/plain/x", **config).width == 100
    assert opts("/w:100/h:200/pr:test1/plain/x", **config).blur == 0.2  # preset content is trusted
    for bad in ("/w:100/h:200/blur:10/plain/x", "/w:100/h:200/pr:test1/blur:10/plain/x"):
        with pytest.raises(InvalidURL, match="Forbidden processing option blur"):
            parse(bad, **config)


def test_security_options_need_permission():
    with pytest.raises(Forbidden):
        parse("/mrd:100/plain/x")
    assert opts("/mrd:100/plain/x", allow_security_options=True).max_result_dimension == 100


def test_skip_processing_formats():
    assert opts("/skp:jpg:png/plain/x").skip_processing == ("jpeg", "png")
    with pytest.raises(InvalidURL, match="Invalid image format in skip_processing: bad_format"):
        parse("/skp:jpg:png:bad_format/plain/x")


def test_expires_is_parsed():
    assert opts("/exp:32503669200/plain/x").expires == 32503669200
    assert opts("/exp:1609448400/plain/x").expires < time.time()  # the server answers 404


# --- malformed URLs -> InvalidURL with a one-line reason --------------------------------

@pytest.mark.parametrize(("path", "reason"), [
    ("/foo:1/plain/x", "Unknown processing option foo"),
    ("/sa:10/plain/x", "Unknown processing option sa"),  # a Pro option
    ("/w:abc/plain/x", "Invalid width: abc"),
    ("/w:-1/plain/x", "Invalid width: -1"),
    ("/h:1.5/plain/x", "Invalid height: 1.5"),
    ("/q:101/plain/x", "Invalid quality: 101"),
    ("/rt:bad/plain/x", "Invalid resizing type: bad"),
    ("/dpr:0/plain/x", "Invalid dpr: 0"),
    ("/z:0/plain/x", "Invalid zoom: 0"),
    ("/z:1:2:3/plain/x", "Invalid zoom arguments"),
    ("/rs:fill:1:2:3:4:5:6:7:8/plain/x", "Invalid resize arguments"),
    ("/s:1:2:3:4:5:6:7:8/plain/x", "Invalid size arguments"),
    ("/bg:ggg/plain/x", "Invalid background"),
    ("/bg:1:2:300/plain/x", "Invalid background"),
    ("/fq:webp/plain/x", "Missing quality for format"),
    ("/plain/x@bad", "Invalid image format in extension: bad"),
    ("/f:tif/plain/x", "Invalid image format in format: tif"),
    ("/rs:fill:300:200/plain/x@png@webp", "Multiple formats are specified"),
    ("/rs:fill:300:200/aGVsbG8.png.jpg", "Multiple formats are specified"),
    ("/rs:fill:300:200/!!!", "Invalid url encoding"),
    ("/rs:fill:300:200/aGVsbG8*", "Invalid url encoding"),
    ("/rs:fill:300:200/plain/a%zzb", "Invalid escaping in source URL"),
    ("/rs:fill:300:200/plain/", "empty source URL"),
    ("/rs:fill:300:200", "no source URL"),
    ("/fill/300/200/plain/x", "deprecated basic URL format"),
])
def test_malformed_paths_raise_invalid_url(path, reason):
    with pytest.raises(InvalidURL) as info:
        parse(path)
    assert info.value.status == 404
    assert reason in info.value.reason
    assert "\n" not in info.value.reason
    assert not info.value.reason.startswith("Invalid URL")  # the body adds that prefix


# --- path splitting and normalisation (§9 item 33) --------------------------------------

def test_split_signature_drops_nothing_but_the_signature():
    sig, path = split_signature("/dummy_signature/rs:fill:300:200/plain/http://example.com/a.jpg")
    assert (sig, path) == ("dummy_signature", "/rs:fill:300:200/plain/http://example.com/a.jpg")
    sig, path = split_signature("/imgproxy/sig/rs:fill:300:200/plain/x", prefix="/imgproxy")
    assert (sig, path) == ("sig", "/rs:fill:300:200/plain/x")
    for bad in ("/invalid_path_without_slash", "/", "/signature_only", "/signature_only/", ""):
        with pytest.raises(InvalidURL):
            split_signature(bad)


def test_normalisation_restores_merged_slashes_and_encoded_colons():
    assert normalize_path("rs:fill:300:200/plain/https:/example.com/a.jpg") == \
        "rs:fill:300:200/plain/https://example.com/a.jpg"
    assert normalize_path("plain/local:/image.jpg") == "plain/local:///image.jpg"
    assert normalize_path("rs%3Afill%3A300%3A200/plain/http://e.com/a%3Ab.jpg") == \
        "rs:fill:300:200/plain/http://e.com/a%3Ab.jpg"  # only the options part
    assert normalize_path("rs%3Afill%3A300%3A200/aHR0cDovL2E") == "rs:fill:300:200/aHR0cDovL2E"
    # a fully escaped (Ruby-style) source is left for the unescape step
    assert normalize_path("w:1/plain/local%3A%2F%2F%2Fa.jpg@webp") == \
        "w:1/plain/local%3A%2F%2F%2Fa.jpg@webp"
    # "plain/" inside an option value is not the source marker
    assert normalize_path("cb%3Axplain/plain/https:/e.com/a.jpg") == \
        "cb:xplain/plain/https://e.com/a.jpg"


def test_ruby_style_escaped_plain_source():
    parsed = parse("/" + normalize_path("rs:fit:10:10/plain/local%3A%2F%2F%2Fa.jpg@webp"))
    assert (parsed.source, parsed.options.format) == ("local:///a.jpg", "webp")


# --- canonical form -------------------------------------------------------------------

ROUND_TRIP = [
    "/rs:fill:300:200/g:sm/q:80",
    "/rs:fit:100:0/el:1/ex:1:so:10:20/dpr:2/z:1.5:2/mw:10/mh:20",
    "/c:0.5:100:nowe:3:4/g:fp:0.25:0.75/bg:0a0b0c/ar:0/sm:0/scp:0",
    "/exar:1:ea/fq:avif:40:webp:60/cb:v2/exp:32503669200/f:webp",
]


@pytest.mark.parametrize("options", ROUND_TRIP)
@pytest.mark.parametrize("encoding", ["plain", "base64"])
def test_build_path_round_trips(options, encoding):
    source = "http://images.dev/a b/ipsum.jpg?x=1&y=@"
    first = parse(options + "/plain/" + quote(source, safe=""))
    path = build_path(first.options, source, encoding)
    again = parse(path)
    assert again.options == first.options
    assert again.source == source


def test_every_field_is_written_by_exactly_one_row():
    """The writer comes from the parser's own table: a field no row writes (or two
    rows write) would make URLs that do not round-trip."""
    owned = [name for row in OPTIONS if row.write is not None for name in row.owns]
    assert sorted(owned) == sorted(f.name for f in fields(ProcessingOptions))
    for row in OPTIONS:
        assert (row.write is None) == (not row.owns) and (not row.write or row.short)


def test_writer_uses_short_names_and_skips_defaults():
    assert option_segments(ProcessingOptions()) == []
    o = opts("/resize:fill:10:20/blur:2/sharpen:1.5/pixelate:4/format:webp/plain/x")
    assert option_segments(o) == ["rs:fill:10:20", "bl:2", "sh:1.5", "pix:4", "f:webp"]


def test_preset_definitions_are_validated():
    assert parse_preset_definitions(["thumb=rs:fill:100:100/q:70", "# comment", ""]) == \
        {"thumb": ("rs:fill:100:100", "q:70")}
    for bad in (["nothing"], ["x=w:abc"], ["x=unknown:1"], ["x=noseparator"]):
        with pytest.raises(ValueError):
            parse_preset_definitions(bad)

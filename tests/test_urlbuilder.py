"""``proxy.urlbuilder``: signatures, one grammar with the server, HTML output, real serving."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, TEST_KEY, TEST_SALT
from imagegen import jpeg, load
from vipsgate.formats import NAMES as FORMATS
from vipsgate.options import (
    GRAVITY_TYPES,
    RESIZING_TYPES,
    WATERMARK_POSITIONS,
    Crop,
    Extend,
    Gravity,
    ProcessingOptions,
    Trim,
    Watermark,
)
from vipsgate.paths import ParserConfig, build_path, parse_path, split_signature
from vipsgate.signing import Signer
from vipsgate.urlbuilder import UrlBuilder, expected_size, to_gravity

SIGNER = Signer.from_hex([TEST_KEY], [TEST_SALT])
SOURCE = "https://example.com/image.jpg"


# --- signatures: imgproxy's published vectors (spec §2.2, §11) -------------------------

@pytest.mark.parametrize(("key", "salt", "path", "size", "expected"), [
    ("736563726574", "68656C6C6F",
     "/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png",
     None, "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8"),
    (b"test-key", b"test-salt", "asd", None, "oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20"),
    (b"test-key", b"test-salt", "/asd", 8, "oWaL7QoW5Ts"),
    (b"test-key2", b"test-salt2", "/asd", None, "jYz1UZ7j1BCdSzH3pZhaYf0iuz0vusoOTdqJsUT6WXI"),
    (TEST_KEY, TEST_SALT, "/el:t/f:png/g:no/h:300/rt:fit/w:300/"
     "aHR0cHM6Ly9leGFtcGxlLmNvbS9pbWFnZS5qcGc", None,
     "zsdsCjFCqcAniKFCygMBToRh6l5jVZbL0bhrnnUGK58"),
    ("aa396160c50ea766910eab53", "b3fb8f215827bda5d0e7313d",
     "/g:ce/rs:auto:0:0:0/aHR0cHM6Ly9waWNzdW0ucGhvdG9zLzEwMDA", None,
     "Da25ef1zWhx4P9hhPWGdFRU8_dYcGvloGHvEZ1c3_0o"),
])
def test_signature_vectors(key, salt, path, size, expected):
    assert UrlBuilder("", key, salt, signature_size=size).sign(path) == expected


def test_imgproxy_node_vector_through_builder():
    """§11.1: the same options in imgproxy-node's form give its exact URL; ours mean the same."""
    images = UrlBuilder("https://imgproxy.example.com/", TEST_KEY, TEST_SALT)
    node_path = "/el:t/f:png/g:no/h:300/rt:fit/w:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9pbWFnZS5qcGc"
    assert images.url_for_path(node_path) == (
        "https://imgproxy.example.com/zsdsCjFCqcAniKFCygMBToRh6l5jVZbL0bhrnnUGK58" + node_path)
    ours = images.url(SOURCE, 300, 300, resizing_type="fit", gravity="no", enlarge=True,
                      format="png")
    assert ours.options == parse_path(node_path).options
    signature, path = split_signature(ours.url.removeprefix("https://imgproxy.example.com"))
    assert SIGNER.verify(signature, path)


def test_klen_vector_and_insecure_placeholder():
    klen = UrlBuilder("https://imgproxy.com", "aa396160c50ea766910eab53",
                      "b3fb8f215827bda5d0e7313d")
    assert klen.url_for_path("/g:ce/rs:auto:600:0:0/aHR0cHM6Ly9waWNzdW0ucGhvdG9zLzEwMDA") == (
        "https://imgproxy.com/qcKAFfBJwpiKZ6xt-NT6GXGOGizkeq4sgyfoQ4h-080"
        "/g:ce/rs:auto:600:0:0/aHR0cHM6Ly9waWNzdW0ucGhvdG9zLzEwMDA")
    assert UrlBuilder("https://i.example", insecure=True).url(SOURCE, 10).url.startswith(
        "https://i.example/insecure/rs:fit:10:0/")


@pytest.mark.parametrize(("source", "kwargs", "key", "salt", "expected"), [
    ("http://img.example.com/pretty/image.jpg", {"resizing_type": "fit"}, TEST_KEY, TEST_SALT,
     "/m3k5QADfcKPDj-SDI2AIogZbC3FlAXszuwhtWXYqavc/rs:fit:300:300/plain/"
     "http://img.example.com/pretty/image.jpg"),
    ("http://example.com/im@age.jpg", {"resizing_type": "fill", "format": "png"}, "45a3f8",
     "eafe30", "/JutKgv7jt6WvIDAEXjd8fSotCJWTgTA-a0A8tMNZAPM/rs:fill:300:400/plain/"
     "http://example.com/im%40age.jpg@png"),
])
def test_plain_vectors_through_url(source, kwargs, key, salt, expected):
    height = 400 if kwargs["resizing_type"] == "fill" else 300
    assert UrlBuilder("", key, salt, encode="plain").url(source, 300, height, **kwargs).url \
        == expected


def test_integration_vector_and_truncation():
    im = UrlBuilder("", b"test-key", b"test-salt", encode="plain").url(
        "local:///test1.png", 4, 4, crop=True)
    assert im.url == "/My9d3xq_PYpVHsPrCyww0Kh1w5KZeZhIlWhsa4az1TI/rs:fill:4:4/plain/local:///test1.png"
    short = UrlBuilder("", TEST_KEY, TEST_SALT, signature_size=8).url(SOURCE, 50)
    signature, path = split_signature(short.url)
    assert len(signature) == 11
    assert Signer.from_hex([TEST_KEY], [TEST_SALT], size=8).verify(signature, path)
    assert not SIGNER.verify(signature, path)


# --- one grammar: builder output parses back to the same options -----------------------

finite = {"allow_nan": False, "allow_infinity": False}
non_negative = st.floats(min_value=0, max_value=1e6, **finite)
positive = st.floats(min_value=0, max_value=1e6, exclude_min=True, **finite)
offset = st.floats(min_value=-1e4, max_value=1e4, **finite)
unit = st.floats(min_value=0, max_value=1, **finite)
size = st.integers(min_value=0, max_value=100_000)
rgb = st.tuples(*[st.integers(0, 255)] * 3)
tri = st.none() | st.booleans()
fmt = st.sampled_from(FORMATS)


def gravities(smart: bool = True) -> st.SearchStrategy[Gravity]:
    plain = st.builds(Gravity, st.sampled_from([g for g in GRAVITY_TYPES if g not in ("sm", "fp")]),
                      offset, offset)
    focus = st.builds(Gravity, st.just("fp"), unit, unit)
    return plain | focus | (st.just(Gravity("sm")) if smart else st.nothing())


extends = st.builds(Extend, st.booleans(), gravities(smart=False))
options_strategy = st.builds(
    ProcessingOptions,
    resizing_type=st.sampled_from(RESIZING_TYPES), width=size, height=size,
    min_width=size, min_height=size, zoom=st.tuples(positive, positive), dpr=positive,
    enlarge=st.booleans(), extend=extends, extend_ar=extends, gravity=gravities(),
    crop=st.none() | st.builds(Crop, non_negative, non_negative, st.none() | gravities()),
    trim=st.none() | st.builds(Trim, non_negative, st.none() | rgb, st.booleans(), st.booleans()),
    padding=st.tuples(*[size] * 4), rotate=st.sampled_from([0, 90, 180, 270]),
    flip=st.tuples(st.booleans(), st.booleans()), background=st.none() | rgb,
    blur=non_negative, sharpen=non_negative, pixelate=size,
    watermark=st.none() | st.builds(
        Watermark, st.floats(min_value=0, max_value=1, exclude_min=True, **finite),
        st.sampled_from(WATERMARK_POSITIONS), offset, offset, non_negative),
    quality=st.integers(0, 100),
    format_quality=st.dictionaries(fmt, st.integers(0, 100)).map(
        lambda d: tuple(sorted(d.items()))),
    max_bytes=size, format=st.none() | fmt, auto_rotate=tri, strip_metadata=tri,
    keep_copyright=tri, strip_color_profile=tri, enforce_thumbnail=tri,
    preserve_hdr=st.booleans(), skip_processing=st.lists(fmt, max_size=3).map(tuple),
    raw=st.booleans(),
    cachebuster=st.text("abcXYZ0129-._~", max_size=12),
    expires=st.integers(-(2**62), 2**62),
    filename=st.none() | st.text(st.characters(exclude_categories=("Cs",)), min_size=1),
    return_attachment=tri, max_src_resolution=st.none() | positive,
    max_src_file_size=st.none() | size, max_animation_frames=st.none() | st.integers(1, 10**6),
    max_animation_frame_resolution=st.none() | non_negative,
    max_result_dimension=st.none() | size,
)
ALLOW_ALL = ParserConfig(allow_security_options=True)
sources = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_strategy, source=sources, encoding=st.sampled_from(["base64", "plain"]))
def test_build_path_round_trips_through_the_parser(options, source, encoding):
    parsed = parse_path(build_path(options, source, encoding), ALLOW_ALL)
    assert parsed.options == options
    assert parsed.source == source
    built = UrlBuilder("https://i.example", TEST_KEY, TEST_SALT, encode=encoding).build(
        options, source)
    assert built.options == options
    signature, path = split_signature(built.url.removeprefix("https://i.example"))
    assert SIGNER.verify(signature, path)
    assert parse_path(path, ALLOW_ALL).options == options


@pytest.mark.parametrize("source", [
    "https://example.com/a b/c.jpg?w=1&h=2#frag",
    "https://example.com/100%25/50%.jpg",
    "https://example.com/user@host/img@2x.png",
    "s3://bucket/Ünïcödé 图片/фото.jpg",
    "local:///dir/name with spaces+plus;semi,comma=eq$dollar.jpg",
    "https://example.com/%3A%2F/%40",
])
@pytest.mark.parametrize("fmt_", [None, "webp"])
def test_special_characters_in_plain_sources_survive(source, fmt_):
    im = UrlBuilder("", TEST_KEY, TEST_SALT, encode="plain").url(source, 100, format=fmt_)
    raw = im.url
    assert raw.isascii() and not any(c in raw for c in " ?#")
    signature, path = split_signature(raw)  # what the server does with the raw path
    assert SIGNER.verify(signature, path)
    parsed = parse_path(path)
    assert parsed.source == source
    assert parsed.options.format == fmt_


# --- friendly values ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("center", Gravity("ce")), ("ce", Gravity("ce")), ("sm", Gravity("sm")),
    ("smart", Gravity("sm")), ("top-left", Gravity("nowe")), ("south_east", Gravity("soea")),
    ("bottom", Gravity("so")), (("fp", 0.5, 0.25), Gravity("fp", 0.5, 0.25)),
    ("fp:0.5:0.3", Gravity("fp", 0.5, 0.3)), (("no", 10, 5), Gravity("no", 10, 5)),
])
def test_gravity_values(value, expected):
    assert to_gravity(value) == expected
    assert UrlBuilder(insecure=True).url(SOURCE, 10, 10, gravity=value).options.gravity == expected


def test_friendly_options_map_to_the_model():
    b = UrlBuilder(insecure=True)
    assert b.url(SOURCE, 300, 200, crop="center").options == ProcessingOptions(
        resizing_type="fill", width=300, height=200)
    o = b.url(SOURCE, 300, 200, crop=("fp", 0.5, 0.3), resizing_type="fill-down").options
    assert (o.resizing_type, o.gravity) == ("fill-down", Gravity("fp", 0.5, 0.3))
    o = b.url(SOURCE, 300, crop=(100, 80, "no")).options
    assert (o.resizing_type, o.crop) == ("fit", Crop(100, 80, Gravity("no")))
    o = b.url(SOURCE, "300", "200", quality="80", enlarge="true", background="#fa0", padding=10,
              extend=True, zoom=1.5, format="JPG", flip="h", format_quality={"webp": 70},
              blur="1.5", strip_metadata="false", skip_processing="svg").options
    assert o == ProcessingOptions(
        width=300, height=200, quality=80, enlarge=True, background=(255, 170, 0),
        padding=(10, 10, 10, 10), extend=Extend(True), zoom=(1.5, 1.5), format="jpeg",
        flip=(True, False), format_quality=(("webp", 70),), blur=1.5, strip_metadata=False,
        skip_processing=("svg",))


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"quality": 150}, ValueError), ({"gravity": "upwards"}, ValueError),
    ({"rotate": 45}, ValueError), ({"format": "bmpx"}, ValueError),
    ({"cachebuster": "a/b"}, ValueError), ({"cachebuster": "x y"}, ValueError),
    ({"cachebuster": "a%3Ab"}, ValueError), ({"colour": "red"}, TypeError),
    ({"crop": "center", "gravity": "no"}, ValueError),
])
def test_invalid_values_are_refused(kwargs, error):
    with pytest.raises(error):
        UrlBuilder("", TEST_KEY, TEST_SALT).url(SOURCE, 100, 100, **kwargs)


# --- srcset and <picture> ---------------------------------------------------------------

class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_srcset_has_a_dpr_variant_per_density():
    b = UrlBuilder("https://i.example", TEST_KEY, TEST_SALT)
    srcset = b.srcset(SOURCE, 300, 200, densities=(1, 1.5, 2), crop="smart")
    candidates = [c.rsplit(" ", 1) for c in srcset.split(", ")]
    assert [d for _, d in candidates] == ["1x", "1.5x", "2x"]
    for (url, _), dpr in zip(candidates, (1, 1.5, 2), strict=True):
        signature, path = split_signature(url.removeprefix("https://i.example"))
        assert SIGNER.verify(signature, path)
        assert parse_path(path).options == ProcessingOptions(
            resizing_type="fill", width=300, height=200, gravity=Gravity("sm"), dpr=dpr)


def test_picture_markup_is_complete_and_escaped():
    b = UrlBuilder("https://i.example", TEST_KEY, TEST_SALT, encode="plain")
    source = "https://example.com/a&b\"<c>.jpg"
    html = b.picture(source, 300, 200, crop="center", alt='A "cat" & <dog>',
                     source_size=(1600, 1200), attrs={"class": "hero"})
    assert '"cat"' not in html and "<dog>" not in html
    parser = Tags()
    parser.feed(html)
    names = [t for t, _ in parser.tags]
    assert names == ["picture", "source", "source", "img"]
    assert [a["type"] for _, a in parser.tags[1:3]] == ["image/avif", "image/webp"]
    img = parser.tags[3][1]
    assert img["alt"] == 'A "cat" & <dog>'
    assert (img["width"], img["height"], img["loading"], img["decoding"], img["class"]) == (
        "300", "200", "lazy", "async", "hero")
    assert img["src"] == b.url(source, 300, 200, crop="center", format="jpeg").url
    for fmt_, (_, attrs) in zip(["avif", "webp", "jpeg"], parser.tags[1:], strict=True):
        first = attrs["srcset"].split(", ")[0].rsplit(" ", 1)[0]
        signature, path = split_signature(first.removeprefix("https://i.example"))
        assert SIGNER.verify(signature, path)
        parsed = parse_path(path)
        assert (parsed.source, parsed.options.format) == (source, fmt_)


def test_expected_size_without_source_size_is_unknown():
    im = UrlBuilder(insecure=True).url(SOURCE, 300, 200)
    assert (im.width, im.height) == (None, None)
    assert expected_size(im.options, 1000, 500) == (300, 150)


# --- import isolation and the real server -------------------------------------------------

def test_urlbuilder_imports_no_server_dependencies():
    code = ("import sys, vipsgate.urlbuilder, vipsgate.contrib; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyvips', 'aiohttp', 'cffi', 'cachetools', 'prometheus_client', 'aiobotocore', "
            "'django', 'jinja2') or m.startswith('vipsgate.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert eval(out) == ["vipsgate.arguments", "vipsgate.contrib", "vipsgate.errors",
                         "vipsgate.formats", "vipsgate.geometry", "vipsgate.grammar",
                         "vipsgate.options", "vipsgate.paths", "vipsgate.replacements",
                         "vipsgate.signing", "vipsgate.urlbuilder"]


CASES = [  # (kwargs for UrlBuilder.url, source w x h)
    ({"width": 300, "height": 300}, (800, 600)),
    ({"width": 300, "height": 200, "crop": "center"}, (800, 600)),
    ({"width": 300, "height": 200, "crop": "smart", "dpr": 2}, (800, 600)),
    ({"width": 1000, "height": 500, "resizing_type": "fill-down"}, (800, 600)),
    ({"width": 300, "height": 100, "resizing_type": "force"}, (600, 800)),
    ({"width": 250, "crop": (400, 300, "nowe")}, (800, 600)),
    ({"width": 200, "height": 200, "extend": True, "padding": (5, 10)}, (800, 600)),
    ({"width": 300, "height": 150, "extend_ar": True}, (600, 800)),
    ({"width": 400, "dpr": 3}, (800, 600)),
    ({"width": 1200, "enlarge": True, "zoom": 0.5}, (800, 600)),
    ({"width": 100, "height": 100, "min_width": 160}, (800, 600)),
    ({"width": 300, "height": 200, "resizing_type": "auto"}, (600, 800)),
    ({"width": 300, "height": 120, "rotate": 90}, (800, 600)),
    ({"width": 200, "height": 200, "crop": "center", "rotate": 270, "format": "png"},
     (800, 600)),
]


@pytest.mark.parametrize("encode", ["base64", "plain"])
async def test_built_urls_are_served_with_the_expected_size(make_client, images, encode):
    client = await make_client()
    builder = UrlBuilder("", TEST_KEY, TEST_SALT, encode=encode)
    for w, h in {size for _, size in CASES}:
        (images / f"photo-{w}x{h}.jpg").write_bytes(jpeg(w, h))
    (images / "über foto@2x 100%.jpg").write_bytes(jpeg(640, 480))
    cases = [*CASES, ({"width": 320}, (640, 480), "local:///%C3%BCber%20foto%402x%20100%25.jpg")]
    for kwargs, (w, h), *custom in cases:
        source = custom[0] if custom else f"local:///photo-{w}x{h}.jpg"
        kwargs = dict(kwargs)
        im = builder.url(source, kwargs.pop("width", 0), kwargs.pop("height", 0),
                         source_size=(w, h), **kwargs)
        response = await client.get(im.url)
        assert response.status == 200, (im.url, await response.text())
        out = load(await response.read())
        assert (out.width, out.height) == (im.width, im.height), (kwargs, im.url)

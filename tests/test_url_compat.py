"""imgproxy's URL settings: replacements, the arguments and presets separators, the
query separator of non-HTTP sources; plus the settings that spell imgproxy's names."""

from __future__ import annotations

import base64

import pytest

from conftest import make_settings, signed
from imagegen import jpeg, load
from vipsgate.config import from_env
from vipsgate.errors import ConfigError
from vipsgate.paths import parse_path
from vipsgate.sources.s3 import parse_s3_url
from vipsgate.urlbuilder import UrlBuilder
from vipsgate.verify import parser_config

REPLACEMENTS = "test://*/=test2://images.dev/${1}/dolor/;test2://=http://"


def parser(**env: str):  # type: ignore[no-untyped-def]
    return parser_config(make_settings(**env))


def test_url_replacements_base64_and_plain():
    """options/parser/processing_options_test.go TestParseBase64URLWithReplacement and
    TestParsePlainURLWithReplacement: rules apply in order, ``${1}`` is the wildcard."""
    config = parser(IMGPROXY_URL_REPLACEMENTS=REPLACEMENTS)
    encoded = base64.urlsafe_b64encode(b"test://lorem/ipsum.jpg?param=value").decode()
    parsed = parse_path(f"/size:100:100/{encoded.rstrip('=')}.png", config)
    assert parsed.source == "http://images.dev/lorem/dolor/ipsum.jpg?param=value"
    assert parsed.options.format == "png"
    parsed = parse_path("/size:100:100/plain/test://lorem/ipsum.jpg@png", config)
    assert parsed.source == "http://images.dev/lorem/dolor/ipsum.jpg"


def test_replacements_then_base_url_and_only_prefixes():
    config = parser(IMGPROXY_URL_REPLACEMENTS="img:/=local:///", IMGPROXY_BASE_URL="local:///")
    assert parse_path("/plain/img:/a.jpg", config).source == "local:///a.jpg"
    assert parse_path("/plain/b.jpg", config).source == "local:///b.jpg"
    assert parse_path("/plain/x/img:/a.jpg", config).source == "local:///x/img:/a.jpg"


async def test_replacements_over_http(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(40, 30))
    client = await make_client(IMGPROXY_URL_REPLACEMENTS="pics://=local:///")
    response = await client.get(signed("/rs:fit:20:20/plain/pics://a.jpg"))
    assert response.status == 200 and load(await response.read()).width == 20


def test_arguments_separator():
    """options/parser/processing_options_test.go TestParseWithArgumentsSeparator; presets
    are written with it too, and ``plain`` still starts the source."""
    config = parser(IMGPROXY_ARGUMENTS_SEPARATOR=",", IMGPROXY_PRESETS_SEPARATOR=";",
                    IMGPROXY_PRESETS="thumb=rs,fill,50,50/q,60")
    parsed = parse_path("/size,100,100,1/plain/http://images.dev/lorem/ipsum.jpg", config)
    o = parsed.options
    assert (o.width, o.height, o.enlarge) == (100, 100, True)
    o = parse_path("/pr,thumb/plain/http://x/a:b.jpg", config).options
    assert (o.resizing_type, o.width, o.quality) == ("fill", 50, 60)
    assert parse_path("/plain/http://x/a:b.jpg", config).source == "http://x/a:b.jpg"


def test_presets_separator():
    settings = make_settings(IMGPROXY_PRESETS="a=rs:fit:10:10;b=q:50",
                             IMGPROXY_PRESETS_SEPARATOR=";")
    assert settings.preset_map() == {"a": ("rs:fit:10:10",), "b": ("q:50",)}
    assert make_settings(IMGPROXY_PRESETS="a=q:1, b=q:2").preset_map() == {
        "a": ("q:1",), "b": ("q:2",)}


def test_only_presets_with_a_separator():
    config = parser(IMGPROXY_ONLY_PRESETS="1", IMGPROXY_ARGUMENTS_SEPARATOR="+",
                    IMGPROXY_PRESETS="a=w+10,b=h+20")
    o = parse_path("/a+b/plain/local:///x.jpg", config).options
    assert (o.width, o.height) == (10, 20)


def test_the_url_builder_still_speaks_the_default_grammar():
    builder = UrlBuilder(key=None, salt=None, base_url="", insecure=True)
    path = str(builder.url("local:///a.jpg", width=300, height=200,
                           resizing_type="fill")).split("/", 2)[2]
    o = parse_path("/" + path, parser()).options
    assert (o.resizing_type, o.width, o.height) == ("fill", 300, 200)


@pytest.mark.parametrize(("separator", "url", "expected"), [
    ("?", "s3://b/k.jpg?v1", ("b", "k.jpg", "v1")),
    ("|", "s3://b/k?x.jpg|versionId=v1", ("b", "k?x.jpg", "v1")),
    ("", "s3://b/k.jpg?v1", ("b", "k.jpg?v1", None)),
])
def test_source_url_query_separator_for_s3(separator, url, expected):
    """fetcher/transport/url.go GetBucketAndKey: what follows the separator is the
    version; without one, ``?`` belongs to the key."""
    assert parse_s3_url(url, separator) == expected


async def test_source_url_query_separator_for_local_files(make_client, images):
    (images / "what?.jpg").write_bytes(jpeg(40, 30))
    (images / "plain.jpg").write_bytes(jpeg(40, 30))
    client = await make_client(IMGPROXY_SOURCE_URL_QUERY_SEPARATOR="")
    assert (await client.get(signed("/plain/local:///what%3F.jpg"))).status == 200
    client = await make_client(IMGPROXY_SOURCE_URL_QUERY_SEPARATOR="|")
    assert (await client.get(signed("/plain/local:///plain.jpg%7Cv=1"))).status == 200
    default = await make_client()
    assert (await default.get(signed("/plain/local:///plain.jpg%3Fv=1"))).status == 200


async def test_health_check_path(make_client):
    client = await make_client(IMGPROXY_HEALTH_CHECK_PATH="/healthz")
    for path in ("/health", "/healthz"):
        response = await client.get(path)
        assert response.status == 200, path


def test_imgproxy_spellings_of_existing_settings():
    base = {"IMGPROXY_KEY": "aa", "IMGPROXY_SALT": "bb"}
    s = from_env({**base, "IMGPROXY_ENABLE_WEBP_DETECTION": "false",
                  "IMGPROXY_ENABLE_AVIF_DETECTION": "0", "IMGPROXY_LOG_LEVEL": "warn"})
    assert (s.auto_webp, s.auto_avif, s.log_level) == (False, False, "warning")
    s = from_env({**base, "IMGPROXY_AUTO_WEBP": "1", "IMGPROXY_ENABLE_WEBP_DETECTION": "0"})
    assert s.auto_webp  # the current name wins over the deprecated one


@pytest.mark.parametrize(("name", "value"), [
    ("IMGPROXY_ARGUMENTS_SEPARATOR", ""), ("IMGPROXY_PRESETS_SEPARATOR", ""),
    ("IMGPROXY_URL_REPLACEMENTS", "no-equals-sign"),
    ("IMGPROXY_LAST_MODIFIED_BUSTER", "yesterday"),
    ("IMGPROXY_LAST_MODIFIED_BUSTER", "2024-01-01T00:00:00"),  # no zone
    ("IMGPROXY_FALLBACK_IMAGE_HTTP_CODE", "42"), ("IMGPROXY_PREFERRED_FORMATS", "svg"),
    ("IMGPROXY_PNG_QUANTIZATION_COLORS", "1"), ("IMGPROXY_WEBP_PRESET", "cartoon"),
    ("IMGPROXY_HEALTH_CHECK_PATH", "healthz"), ("IMGPROXY_LOG_LEVEL", "loud"),
])
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        from_env({"IMGPROXY_KEY": "aa", "IMGPROXY_SALT": "bb", name: value})

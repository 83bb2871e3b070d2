"""The result-cache key: derived from the effective options, so no option can be left out.

Equivalent URLs share a key; any single change of a keyed field changes it (checked
for every field of ``Effective``, so a field added later is covered without a new
test); response-only fields never do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from conftest import effective, key_for, make_settings, signed
from imagegen import jpeg
from vipsgate.app import RESULTS, create_app
from vipsgate.negotiate import negotiate
from vipsgate.options import Crop, Extend, Gravity, Trim, Watermark
from vipsgate.paths import ParserConfig, build_path, parse_path
from vipsgate.resolve import Effective, resolve
from vipsgate.results import KEY_FIELDS, result_key

SOURCE = "http://example.com/images/cat.jpg"
SETTINGS = make_settings()


def key_of(path: str, accept: str = "", **parser: Any) -> tuple[str, str, str]:
    parsed = parse_path(path, ParserConfig(**parser))
    policy = negotiate(parsed.options.format, accept, auto_webp=True, auto_avif=False,
                       enforce_webp=False, enforce_avif=False)
    return result_key(resolve(parsed.options, SETTINGS), parsed.source, policy.key)


@pytest.mark.parametrize("path", [
    f"/rt:fill/w:300/h:200/plain/{SOURCE}",
    f"/w:300/h:200/rt:fill/plain/{SOURCE}",
    f"/resize:fill:300:200/plain/{SOURCE}",
    f"/s:300:200/resizing_type:fill/plain/{SOURCE}",
    f"/rs:fill:300:200:0/g:ce/dpr:1/plain/{SOURCE}",
    f"/rs:fill:300:200/sm:1/ar:1/plain/{SOURCE}",  # explicit server defaults
    f"/rs:fill:300:200/exp:4102444800/fn:cat/att:0/plain/{SOURCE}",  # header-only options
    "/rs:fill:300:200/aHR0cDovL2V4YW1wbGUuY29tL2ltYWdlcy9jYXQuanBn",  # base64 source
    "/rs:fill:300:200/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jYXQuanBn",  # split base64
    "/rs:fill:300:200/plain/http://example.com/images/c%61t.jpg",  # percent-encoded
])
def test_equivalent_urls_share_one_key(path):
    assert key_of(path) == key_of(f"/rs:fill:300:200/plain/{SOURCE}")


def test_base_url_and_builder_paths_share_one_key():
    built = build_path(parse_path(f"/rs:fill:300:200/plain/{SOURCE}").options, SOURCE)
    assert key_of(built) == key_of(f"/rs:fill:300:200/plain/{SOURCE}")
    assert key_of("/rs:fill:300:200/plain/images/cat.jpg", base_url="http://example.com/") == \
        key_of(f"/rs:fill:300:200/plain/{SOURCE}")


@pytest.mark.parametrize("other", [
    f"/rs:fill:300:201/plain/{SOURCE}",
    f"/rs:fit:300:200/plain/{SOURCE}",
    f"/rs:fill:300:200/sm:0/plain/{SOURCE}",  # not the server default
    f"/rs:fill:300:200/q:50/plain/{SOURCE}",
    f"/rs:fill:300:200/cb:2/plain/{SOURCE}",
    f"/rs:fill:300:200/bl:2/plain/{SOURCE}",
    f"/rs:fill:300:200/sh:2/plain/{SOURCE}",
    f"/rs:fill:300:200/pix:4/plain/{SOURCE}",
    f"/rs:fill:300:200/exar:1:no/plain/{SOURCE}",
    f"/rs:fill:300:200/plain/{SOURCE}@png",
    f"/rs:fill:300:200/plain/{SOURCE}2",
])
def test_different_results_get_different_keys(other):
    assert key_of(other) != key_of(f"/rs:fill:300:200/plain/{SOURCE}")


def test_format_class_is_part_of_the_key():
    path = f"/rs:fill:300:200/plain/{SOURCE}"
    webp = key_of(path, "image/avif,image/webp,*/*")
    assert webp != key_of(path, "image/jpeg,*/*")
    assert key_of(path, "image/webp") == webp  # same class, different Accept strings
    assert key_of(path, "*/*") == key_of(path, "text/html")  # raw Accept is not the key
    explicit = f"/rs:fill:300:200/plain/{SOURCE}@jpg"
    assert key_of(explicit, "image/webp") == key_of(explicit, "")  # no negotiation
    assert key_of(explicit) == key_of(f"/rs:fill:300:200/f:jpeg/plain/{SOURCE}")


def test_server_settings_that_change_the_output_change_the_key():
    base = effective("rs:fit:10:10")
    for env in ({"IMGPROXY_QUALITY": "50"}, {"IMGPROXY_STRIP_METADATA": "false"},
                {"IMGPROXY_WEBP_EFFORT": "6"}, {"IMGPROXY_MAX_RESULT_DIMENSION": "100"},
                {"IMGPROXY_WATERMARK_OPACITY": "0.5"}):
        other = effective("rs:fit:10:10/wm:1", **env)
        assert result_key(other, SOURCE, "jpeg") != result_key(base, SOURCE, "jpeg"), env


# --- generated: every field of Effective ----------------------------------------------

def _other(value: Any, annotation: str) -> Any:
    """A different valid value of the same type (fails for a type it does not know:
    then teach it the new field's type)."""
    if value is None:
        for name, instance in (("Crop", Crop(10, 10)), ("Trim", Trim(5.0)),
                               ("Watermark", Watermark(0.5)), ("RGB", (1, 2, 3)),
                               ("str", "name")):
            if name in annotation:
                return instance
        raise AssertionError(f"no alternative for None of {annotation}")
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, Gravity):
        return dataclasses.replace(value, type="no" if value.type != "no" else "so")
    if isinstance(value, Extend):
        return dataclasses.replace(value, gravity=_other(value.gravity, "Gravity"))
    if isinstance(value, Crop | Trim | Watermark):
        first = dataclasses.fields(value)[0]
        return dataclasses.replace(value, **{first.name: _other(getattr(value, first.name),
                                                                str(first.type))})
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):  # format quality
        (name, q), *rest = value
        return ((name, q - 1), *rest)
    if isinstance(value, tuple):
        return (value[0] + 1 if not isinstance(value[0], bool) else not value[0], *value[1:]) \
            if value else ("jpeg",)
    raise AssertionError(f"no alternative for {value!r} ({annotation})")


BASE = effective("rs:fit:300:200/wm:0.5/c:100:100/t:10/bg:ffffff")
FIELDS = {f.name: f for f in dataclasses.fields(Effective)}


@pytest.mark.parametrize("name", list(FIELDS))
def test_changing_any_one_field_changes_the_key_unless_it_only_shapes_headers(name):
    changed = dataclasses.replace(BASE, **{name: _other(getattr(BASE, name),
                                                        str(FIELDS[name].type))})
    before, after = result_key(BASE, SOURCE, "auto"), result_key(changed, SOURCE, "auto")
    if name in KEY_FIELDS:
        assert before != after and before.digest() != after.digest()
    else:  # expires, filename, return_attachment
        assert FIELDS[name].metadata.get("key") is False
        assert before == after


def test_only_header_fields_are_left_out():
    assert set(FIELDS) - set(KEY_FIELDS) == {"expires", "filename", "return_attachment"}


async def test_urls_differing_only_in_a_filter_get_their_own_images(aiohttp_client, images):
    """End to end: blur, sharpen and pixelate each make a new result, never a hit."""
    (images / "cat.jpg").write_bytes(jpeg(64, 48))
    app = create_app(make_settings(images, VIPSGATE_DEBUG_HEADERS="1"))
    client = await aiohttp_client(app)
    bodies = []
    for option in ("rs:fit:32:32", "rs:fit:32:32/bl:2", "rs:fit:32:32/sh:2",
                   "rs:fit:32:32/pix:4"):
        response = await client.get(signed(f"/{option}/plain/local:///cat.jpg@png"))
        assert response.headers["X-Cache"] == "miss", option
        bodies.append(await response.read())
    assert len(set(bodies)) == 4 and len(app[RESULTS]) == 4
    key = key_for(app, "/rs:fit:32:32/bl:2/plain/local:///cat.jpg@png")
    assert app[RESULTS].get(key) is not None

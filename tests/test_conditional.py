"""Conditional requests forwarded to the origin, and the validators' busters, against a
real HTTP origin that answers 304 itself.

Ported from imgproxy's ``integration_test/processing_handler_test.go`` (TestETag*,
TestLastModified*, TestModifiedSince*, EtagBusterTest). One documented difference:
vipsgate's ETag is its own (it differs per format and options) with the origin's
inside it, so the client sends back our tag and the origin sees its own.
"""

from __future__ import annotations

import base64
from email.utils import parsedate_to_datetime

import pytest
from aiohttp import web

from conftest import LOOPBACK, Origin, signed
from imagegen import solid
from vipsgate.app import METRICS

IMAGE = solid(64, 48, (200, 30, 30)).pngsave_buffer()
ORIGIN_ETAG = '"loremipsumdolor"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
NO_CACHES = {"VIPSGATE_RESULT_CACHE_BYTES": "0", "VIPSGATE_SOURCE_CACHE_BYTES": "0"}


def validating(origin: Origin, path: str, etag: str | None = ORIGIN_ETAG,
               last_modified: str | None = LAST_MODIFIED) -> str:
    """An origin that evaluates validators as HTTP says (304 when they match)."""
    async def serve(request: web.Request) -> web.Response:
        headers = {k: v for k, v in (("ETag", etag), ("Last-Modified", last_modified)) if v}
        tags = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        if tags is not None:
            if etag and etag in [t.strip() for t in tags.split(",")]:
                return web.Response(status=304, headers=headers)
        elif since and last_modified and \
                parsedate_to_datetime(since) >= parsedate_to_datetime(last_modified):
            return web.Response(status=304, headers=headers)
        return web.Response(body=IMAGE, content_type="image/png", headers=headers)
    return origin.route(path, serve)


def processed(client) -> float:  # type: ignore[no-untyped-def]
    registry = client.server.app[METRICS].registry
    return registry.get_sample_value("vipsgate_stage_duration_seconds_count",
                                     {"stage": "process"}) or 0.0


def received(origin: Origin, name: str) -> list[str | None]:
    return [request.headers.get(name) for request in origin.requests]


@pytest.fixture
def proxy(make_client):  # type: ignore[no-untyped-def]
    def factory(**env: str):  # type: ignore[no-untyped-def]
        return make_client(**LOOPBACK, **NO_CACHES, **env)
    return factory


async def test_our_etag_is_forwarded_as_the_origins_and_its_304_is_ours(proxy, origin):
    """TestETagDataMatch: the origin answers 304, so do we, without processing."""
    url = validating(origin, "/a.png")
    client = await proxy()
    path = signed(f"/rs:fit:32:32/plain/{url}")
    first = await client.get(path)
    etag = first.headers["ETag"]
    assert first.status == 200 and etag != ORIGIN_ETAG
    carried = base64.urlsafe_b64encode(ORIGIN_ETAG.encode()).decode().rstrip("=")
    assert etag.endswith(f'.{carried}"')  # the origin's tag rides in ours
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert received(origin, "If-None-Match") == [None, ORIGIN_ETAG]
    assert processed(client) == 1


async def test_a_changed_origin_answers_200_with_a_new_etag(proxy, origin):
    url = validating(origin, "/a.png")
    client = await proxy()
    path = signed(f"/rs:fit:32:32/plain/{url}")
    etag = (await client.get(path)).headers["ETag"]
    validating(origin, "/a.png", etag='"v2"')
    response = await client.get(path, headers={"If-None-Match": etag})
    assert response.status == 200 and len(await response.read()) > 0
    assert response.headers["ETag"] not in (etag, '"v2"')
    assert received(origin, "If-None-Match")[-1] == ORIGIN_ETAG


async def test_tags_we_did_not_make_for_this_result_are_not_forwarded(proxy, origin):
    """Differs from imgproxy, which forwards any If-None-Match: a tag of the origin's own
    names its bytes, not our rendition, and another URL's tag is not this one's."""
    url = validating(origin, "/a.png")
    client = await proxy()
    other = (await client.get(signed(f"/rs:fit:16:16/plain/{url}"))).headers["ETag"]
    path = signed(f"/rs:fit:32:32/plain/{url}")
    for tag in (ORIGIN_ETAG, other, '"nope.bG9yZW0"'):
        response = await client.get(path, headers={"If-None-Match": tag})
        assert response.status == 200, tag
    assert received(origin, "If-None-Match") == [None] * 4
    assert received(origin, "If-Modified-Since") == [None] * 4


async def test_if_modified_since_is_forwarded_as_is(proxy, origin):
    """TestModifiedSinceReqExactMatchLastModifiedEnabled, ...CompareMoreRecent...,
    ...CompareTooOld...Enabled."""
    url = validating(origin, "/a.png", etag=None)
    client = await proxy()
    path = signed(f"/plain/{url}")
    for since, status in ((LAST_MODIFIED, 304), ("Thu, 25 Feb 2021 01:45:00 GMT", 304),
                          ("Tue, 01 Oct 2013 17:31:00 GMT", 200)):
        response = await client.get(path, headers={"If-Modified-Since": since})
        assert response.status == status, since
        assert received(origin, "If-Modified-Since")[-1] == since
        assert response.headers["Last-Modified"] == LAST_MODIFIED


async def test_without_last_modified_nothing_is_forwarded_nor_sent(proxy, origin):
    """TestLastModifiedDisabled, TestModifiedSinceReq...LastModifiedDisabled."""
    url = validating(origin, "/a.png", etag=None)
    client = await proxy(IMGPROXY_USE_LAST_MODIFIED="false")
    response = await client.get(signed(f"/plain/{url}"),
                                headers={"If-Modified-Since": LAST_MODIFIED})
    assert response.status == 200 and "Last-Modified" not in response.headers
    assert received(origin, "If-Modified-Since") == [None]


async def test_without_etags_none_is_sent_nor_forwarded(proxy, origin):
    """TestETagDisabled."""
    url = validating(origin, "/a.png")
    client = await proxy(IMGPROXY_USE_ETAG="false")
    response = await client.get(signed(f"/plain/{url}"), headers={"If-None-Match": "*"})
    assert response.status == 200 and "ETag" not in response.headers
    assert received(origin, "If-None-Match") == [None]


async def test_last_modified_buster(proxy, origin):
    """TestLastModifiedBuster: older Last-Modified values are sent as the buster, and an
    If-Modified-Since at or before it is not forwarded."""
    url = validating(origin, "/a.png", etag=None)
    client = await proxy(IMGPROXY_LAST_MODIFIED_BUSTER="2020-01-01T00:00:00Z")
    response = await client.get(signed(f"/plain/{url}"))
    assert response.headers["Last-Modified"] == "Wed, 01 Jan 2020 00:00:00 GMT"
    response = await client.get(signed(f"/plain/{url}"),
                                headers={"If-Modified-Since": LAST_MODIFIED})
    assert response.status == 200 and received(origin, "If-Modified-Since")[-1] is None
    fresh = "Thu, 25 Feb 2021 01:45:00 GMT"
    response = await client.get(signed(f"/plain/{url}"), headers={"If-Modified-Since": fresh})
    assert response.status == 304 and received(origin, "If-Modified-Since")[-1] == fresh


async def test_etag_buster_changes_every_etag_and_refuses_old_ones(proxy, origin):
    """EtagBusterTest: the buster changes the ETag (imgproxy: ``"buster/<b64>"``; ours
    hashes it in), and tags made without it are not forwarded."""
    url = validating(origin, "/a.png")
    path = signed(f"/plain/{url}")
    plain = await proxy()
    old = (await plain.get(path)).headers["ETag"]
    busted = await proxy(IMGPROXY_ETAG_BUSTER="buster")
    response = await busted.get(path)
    new = response.headers["ETag"]
    assert new != old and new.endswith(old[old.index("."):])  # the origin's tag still rides
    assert (await busted.get(path, headers={"If-None-Match": old})).status == 200
    assert received(origin, "If-None-Match")[-1] is None
    assert (await busted.get(path, headers={"If-None-Match": new})).status == 304


async def test_an_unconditional_304_is_still_an_origin_failure(proxy, origin):
    async def always_304(request: web.Request) -> web.Response:
        return web.Response(status=304)
    url = origin.route("/odd.png", always_304)
    client = await proxy()
    assert (await client.get(signed(f"/plain/{url}"))).status == 502

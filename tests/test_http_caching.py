"""Caching end to end against a real HTTP origin on 127.0.0.1: hits, coalescing,
ETag/304, Vary, Cache-Control, HEAD, errors. Plus the pure header rules."""

from __future__ import annotations

import asyncio
import base64
import gc
import time
import weakref
from collections import Counter
from email.utils import formatdate
from types import SimpleNamespace

import pytest

from conftest import LOOPBACK, key_for, make_settings, signed, wait_until
from imagegen import jpeg
from vipsgate.app import FETCHER, METRICS, ORIGINALS, RESULTS, create_app
from vipsgate.config import Settings
from vipsgate.http_cache import add_vary, cache_control, conditional_match, entity_tags
from vipsgate.sources import SourceMeta

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.fixture
def proxy(make_client):  # type: ignore[no-untyped-def]
    """``await proxy(**env)``: the app, allowed to fetch from 127.0.0.1, debug headers on."""
    def factory(**env: str):  # type: ignore[no-untyped-def]
        return make_client(VIPSGATE_DEBUG_HEADERS="1", **LOOPBACK, **env)
    return factory


def sample(client, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    value = client.server.app[METRICS].registry.get_sample_value(name, labels)
    return value or 0.0


def processed(client) -> float:  # type: ignore[no-untyped-def]
    """How many times an image was processed (the pipeline's own stage timer)."""
    return sample(client, "vipsgate_stage_duration_seconds_count", stage="process")


# --- result and source caches -----------------------------------------------------------

async def test_repeated_url_is_served_from_the_cache(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480), ETag='"v1"')
    client = await proxy()
    first = await client.get(signed(f"/rs:fill:300:200/plain/{url}"))
    body = await first.read()
    assert first.status == 200 and first.headers["X-Cache"] == "miss"
    # the same result spelt differently: other option names and order, base64 source
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    for path in (f"/rs:fill:300:200/plain/{url}", f"/h:200/w:300/rt:fill/{encoded}",
                 f"/rt:fill/s:300:200/sm:1/plain/{url}"):
        again = await client.get(signed(path))
        assert again.status == 200 and again.headers["X-Cache"] == "hit", path
        assert await again.read() == body
        assert again.headers["ETag"] == first.headers["ETag"]
    assert origin.hits["/cat.jpg"] == 1
    assert processed(client) == 1
    assert sample(client, "vipsgate_cache_requests_total", cache="result", outcome="hit") == 3


async def test_concurrent_cold_requests_fetch_and_process_once(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(800, 600))
    origin.hold()
    client = await proxy()
    path = f"/rs:fit:200:200/plain/{url}"
    app = client.server.app
    key = key_for(app, path)

    async def get() -> tuple[int, bytes, str]:
        response = await client.get(signed(path))
        return response.status, await response.read(), response.headers.get("X-Cache", "")

    tasks = [asyncio.create_task(get()) for _ in range(50)]
    await origin.arrived()
    await wait_until(lambda: app[RESULTS].waiters(key) == 50)  # all 50 joined one job
    origin.release()
    results = await asyncio.gather(*tasks)
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, body, _ in results}) == 1
    assert Counter(cache for _, _, cache in results) == {"miss": 1, "coalesced": 49}
    assert origin.hits["/cat.jpg"] == 1
    assert processed(client) == 1
    assert len(app[RESULTS]) == 1 and app[RESULTS].in_flight == 0


async def test_two_sizes_of_one_source_fetch_it_once(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480))
    client = await proxy()
    for size in (100, 200, 300):
        response = await client.get(signed(f"/rs:fit:{size}:{size}/plain/{url}"))
        assert response.status == 200 and response.headers["X-Cache"] == "miss"
        assert response.headers["X-Result-Width"] == str(size)
    assert origin.hits["/cat.jpg"] == 1
    assert processed(client) == 3
    assert len(client.server.app[RESULTS]) == 3 and len(client.server.app[ORIGINALS]) == 1


async def test_concurrent_sizes_of_a_cold_source_share_one_download(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480))
    origin.hold()
    client = await proxy()
    tasks = [asyncio.create_task(client.get(signed(f"/rs:fit:{s}:{s}/plain/{url}")))
             for s in (100, 150, 200)]
    downloads = client.server.app[FETCHER].downloads
    await wait_until(lambda: sum(d.users for d in downloads.values()) == 3)
    assert len(downloads) == 1  # one download, three jobs reading it
    origin.release()
    responses = await asyncio.gather(*tasks)
    assert [r.headers["X-Result-Width"] for r in responses] == ["100", "150", "200"]
    assert origin.hits["/cat.jpg"] == 1 and processed(client) == 3


async def test_errors_are_not_cached(proxy, origin, images):
    url = origin.add("/cat.jpg", jpeg(320, 240))
    origin.fail("/cat.jpg")
    client = await proxy()
    path = signed(f"/rs:fit:100:100/plain/{url}")
    failed = await client.get(path)
    assert failed.status == 502 and "Cache-Control" not in failed.headers
    assert "ETag" not in failed.headers and "Vary" not in failed.headers
    retried = await client.get(path)
    assert retried.status == 200 and origin.hits["/cat.jpg"] == 2
    # a local file that appears after a 404
    local = signed("/rs:fit:100:100/plain/local:///late.jpg")
    assert (await client.get(local)).status == 404
    (images / "late.jpg").write_bytes(jpeg(200, 100))
    assert (await client.get(local)).status == 200


async def test_error_ttl_sets_a_short_cache_control(proxy):
    client = await proxy(VIPSGATE_ERROR_TTL="30")
    response = await client.get(signed("/rs:fit:100:100/plain/local:///missing.jpg"))
    assert response.status == 404
    assert response.headers["Cache-Control"] == "public, max-age=30"


async def test_client_that_leaves_does_not_cancel_the_job_for_others(aiohttp_client, images,
                                                                     origin):
    url = origin.add("/cat.jpg", jpeg(640, 480))
    origin.hold()
    app = create_app(make_settings(images, **LOOPBACK))
    # cancel handlers when their client disconnects, so the waiter really goes away
    client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
    path = f"/rs:fit:100:100/plain/{url}"
    results = app[RESULTS]
    key = key_for(app, path)
    leaving = asyncio.create_task(client.get(signed(path)))
    await origin.arrived()
    staying = asyncio.create_task(client.get(signed(path)))
    await wait_until(lambda: results.waiters(key) == 2)
    leaving.cancel()
    await wait_until(lambda: results.waiters(key) == 1)  # its handler was cancelled
    origin.release()
    response = await staying
    assert response.status == 200 and len(await response.read()) > 0
    assert origin.hits["/cat.jpg"] == 1 and len(results) == 1


async def test_timed_out_last_waiter_cancels_the_job(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(320, 240))
    origin.hold()
    client = await proxy(IMGPROXY_TIMEOUT="0.3")
    path = signed(f"/rs:fit:100:100/plain/{url}")
    response = await client.get(path)
    assert response.status == 503
    app = client.server.app
    assert app[RESULTS].in_flight == 0
    await wait_until(lambda: not app[FETCHER].downloads)  # the job let go of its download
    origin.release()
    response = await client.get(path)
    assert response.status == 200 and origin.hits["/cat.jpg"] == 2


# --- validators and 304 -------------------------------------------------------------------

async def test_304_on_matching_validators_with_the_same_headers(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480), ETag='"v1"', **{"Last-Modified": LAST_MODIFIED})
    client = await proxy()
    path = signed(f"/rs:fit:200:200/plain/{url}")
    full = await client.get(path, headers={"Accept": "image/webp"})
    assert full.status == 200 and full.headers["Content-Type"] == "image/webp"
    etag = full.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert full.headers["Last-Modified"] == LAST_MODIFIED
    assert full.headers["Vary"] == "Accept"
    conditionals = [
        {"If-None-Match": etag},
        {"If-None-Match": f"W/{etag}"},  # weak comparison
        {"If-None-Match": f'"nope", {etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": LAST_MODIFIED},
        {"If-Modified-Since": formatdate(time.time(), usegmt=True)},
    ]
    for headers in conditionals:
        response = await client.get(path, headers={"Accept": "image/webp", **headers})
        assert response.status == 304, headers
        assert await response.read() == b""
        assert "Content-Type" not in response.headers
        for name in ("ETag", "Cache-Control", "Vary", "Last-Modified"):
            assert response.headers[name] == full.headers[name], (name, headers)
    head = await client.head(path, headers={"Accept": "image/webp", "If-None-Match": etag})
    assert head.status == 304
    assert origin.hits["/cat.jpg"] == 1 and processed(client) == 1


async def test_non_matching_validators_get_the_image(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480), ETag='"v1"', **{"Last-Modified": LAST_MODIFIED})
    client = await proxy()
    path = signed(f"/rs:fit:200:200/plain/{url}")
    etag = (await client.get(path)).headers["ETag"]
    for headers in (
        {"If-None-Match": '"v1"'},  # the source's ETag is not the result's
        {"If-None-Match": '"other"', "If-Modified-Since": LAST_MODIFIED},  # INM decides
        {"If-Modified-Since": "Tue, 20 Oct 2015 07:28:00 GMT"},  # older than the source
        {"If-Modified-Since": "not a date"},
        {"If-None-Match": etag.strip('"')},  # not an entity-tag
    ):
        response = await client.get(path, headers=headers)
        assert response.status == 200, headers
        assert len(await response.read()) > 0


async def test_304_without_processing_when_only_the_source_is_cached(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480), ETag='"v1"')
    client = await proxy(VIPSGATE_RESULT_CACHE_BYTES="0")
    path = signed(f"/rs:fit:200:200/plain/{url}")
    etag = (await client.get(path)).headers["ETag"]
    response = await client.get(path, headers={"If-None-Match": etag})
    assert response.status == 304 and response.headers["ETag"] == etag
    assert origin.hits["/cat.jpg"] == 1 and processed(client) == 1


async def test_304_without_processing_when_nothing_is_cached(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480))  # no validators: the ETag hashes the bytes
    client = await proxy(VIPSGATE_RESULT_CACHE_BYTES="0", VIPSGATE_SOURCE_CACHE_BYTES="0")
    path = signed(f"/rs:fit:200:200/plain/{url}")
    etag = (await client.get(path)).headers["ETag"]
    assert (await client.get(path)).headers["ETag"] == etag  # stable across recomputation
    assert processed(client) == 2
    response = await client.get(path, headers={"If-None-Match": etag})
    assert response.status == 304
    assert origin.hits["/cat.jpg"] == 3 and processed(client) == 2
    # a stale validator: the fetched source is reused for processing, not fetched again
    response = await client.get(path, headers={"If-None-Match": '"stale"'})
    assert response.status == 200 and response.headers["ETag"] == etag
    assert origin.hits["/cat.jpg"] == 4 and processed(client) == 3


async def test_one_clients_304_is_not_shared_with_a_coalesced_client(proxy, origin):
    # no origin validators: nothing to forward, the conditional request's download is
    # shared (with an origin ETag it asks the origin on its own: test_conditional.py)
    url = origin.add("/cat.jpg", jpeg(640, 480))
    client = await proxy(VIPSGATE_RESULT_CACHE_BYTES="0", VIPSGATE_SOURCE_CACHE_BYTES="0")
    path = signed(f"/rs:fit:200:200/plain/{url}")
    etag = (await client.get(path)).headers["ETag"]
    origin.hold()
    conditional = asyncio.create_task(client.get(path, headers={"If-None-Match": etag}))
    await origin.arrived(2)  # the first request's fetch, then this one's
    plain = asyncio.create_task(client.get(path))
    downloads = client.server.app[FETCHER].downloads
    await wait_until(lambda: sum(d.users for d in downloads.values()) == 2)
    assert len(downloads) == 1  # one fetch for both
    origin.release()
    assert (await conditional).status == 304
    response = await plain
    assert response.status == 200 and len(await response.read()) > 0
    assert origin.hits["/cat.jpg"] == 2


async def test_etag_and_vary_per_negotiated_format(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480), ETag='"v1"')
    client = await proxy()
    path = signed(f"/rs:fit:200:200/plain/{url}")
    webp = await client.get(path, headers={"Accept": "image/webp,*/*"})
    plain = await client.get(path, headers={"Accept": "image/jpeg,*/*"})
    assert webp.headers["Content-Type"] == "image/webp"
    assert plain.headers["Content-Type"] == "image/jpeg"
    assert webp.headers["ETag"] != plain.headers["ETag"]
    assert webp.headers["Vary"] == plain.headers["Vary"] == "Accept"
    # the WebP validator does not revalidate the JPEG variant
    cross = await client.get(path, headers={"Accept": "image/jpeg",
                                            "If-None-Match": webp.headers["ETag"]})
    assert cross.status == 200 and cross.headers["Content-Type"] == "image/jpeg"
    # an explicit format does not depend on Accept: no Vary
    explicit = await client.get(signed(f"/rs:fit:200:200/plain/{url}@png"),
                                headers={"Accept": "image/webp"})
    assert explicit.headers["Content-Type"] == "image/png" and "Vary" not in explicit.headers
    assert origin.hits["/cat.jpg"] == 1


async def test_etag_and_last_modified_can_be_turned_off(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(64, 48), ETag='"v1"', **{"Last-Modified": LAST_MODIFIED})
    client = await proxy(IMGPROXY_USE_ETAG="0", IMGPROXY_USE_LAST_MODIFIED="0")
    path = signed(f"/rs:fit:20:20/plain/{url}")
    response = await client.get(path)
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    again = await client.get(path, headers={"If-None-Match": "*",
                                            "If-Modified-Since": LAST_MODIFIED})
    assert again.status == 200


async def test_head_is_get_without_a_body(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(640, 480), ETag='"v1"')
    client = await proxy()
    path = signed(f"/rs:fit:200:200/plain/{url}")
    head = await client.head(path)
    get = await client.get(path)
    body = await get.read()
    assert head.status == get.status == 200
    assert await head.read() == b""
    for name in ("Content-Type", "ETag", "Cache-Control", "Vary", "Content-Disposition"):
        assert head.headers[name] == get.headers[name], name
    assert int(head.headers["Content-Length"]) == len(body)
    assert head.headers["X-Cache"] == "miss" and get.headers["X-Cache"] == "hit"


async def test_debug_headers_only_in_debug_mode(make_client, images):
    (images / "cat.jpg").write_bytes(jpeg(64, 48))
    client = await make_client()
    response = await client.get(signed("/rs:fit:20:20/plain/local:///cat.jpg"))
    assert response.status == 200 and "X-Cache" not in response.headers


# --- Cache-Control ---------------------------------------------------------------------

async def test_cache_control_passthrough(proxy, origin):
    cc = origin.add("/cc.jpg", jpeg(64, 48), **{"Cache-Control": "max-age=1234, public"})
    expires = origin.add("/exp.jpg", jpeg(64, 48),
                         Expires=formatdate(time.time() + 1239, usegmt=True))
    bare = origin.add("/bare.jpg", jpeg(64, 48))
    client = await proxy(IMGPROXY_CACHE_CONTROL_PASSTHROUGH="1")
    response = await client.get(signed(f"/rs:fit:20:20/plain/{cc}"))
    assert response.headers["Cache-Control"] == "max-age=1234, public"
    response = await client.get(signed(f"/rs:fit:20:20/plain/{expires}"))
    max_age = int(response.headers["Cache-Control"].split(",")[0].removeprefix("max-age="))
    assert 1230 <= max_age <= 1239 and response.headers["Cache-Control"].endswith(", public")
    assert "Expires" not in response.headers
    response = await client.get(signed(f"/rs:fit:20:20/plain/{bare}"))
    assert response.headers["Cache-Control"] == "max-age=31536000, public"
    off = await proxy()
    response = await off.get(signed(f"/rs:fit:20:20/plain/{cc}"))
    assert response.headers["Cache-Control"] == "max-age=31536000, public"


async def test_immutable_and_stale_while_revalidate(proxy, origin):
    url = origin.add("/cat.jpg", jpeg(64, 48))
    client = await proxy(IMGPROXY_TTL="86400", VIPSGATE_CACHE_CONTROL_IMMUTABLE="1",
                         VIPSGATE_STALE_WHILE_REVALIDATE="600")
    response = await client.get(signed(f"/rs:fit:20:20/plain/{url}"))
    assert response.headers["Cache-Control"] == \
        "max-age=86400, public, immutable, stale-while-revalidate=600"
    revalidated = await client.get(signed(f"/rs:fit:20:20/plain/{url}"),
                                   headers={"If-None-Match": response.headers["ETag"]})
    assert revalidated.status == 304
    assert revalidated.headers["Cache-Control"] == response.headers["Cache-Control"]


def test_cache_control_rules():
    s, meta = Settings(), SourceMeta(cache_control="no-store")
    assert cache_control(s, 0, meta) == "max-age=31536000, public"
    passthrough = Settings(cache_control_passthrough=True)
    assert cache_control(passthrough, 0, meta) == "no-store"
    soon = int(time.time()) + 100
    assert cache_control(passthrough, soon, meta) in ("max-age=100, public",
                                                      "max-age=99, public")  # exp wins
    assert cache_control(Settings(ttl=0), 0, meta) == "no-cache"
    assert cache_control(Settings(ttl=50), soon, meta) == "max-age=50, public"
    bad = SourceMeta(expires="0")  # an invalid Expires falls back to the TTL
    assert cache_control(passthrough, 0, bad) == "max-age=31536000, public"


# --- conditional and Vary rules -----------------------------------------------------------

def test_if_none_match_takes_precedence_and_compares_weakly():
    s, etag = Settings(), '"abc"'
    assert conditional_match('"abc"', None, etag, None, s)
    assert conditional_match('W/"abc"', None, etag, None, s)
    assert conditional_match('"x", W/"abc" , "y"', None, etag, None, s)
    assert conditional_match("*", None, etag, None, s)
    assert not conditional_match('"abcd"', None, etag, None, s)
    assert not conditional_match('"x"', LAST_MODIFIED, etag, LAST_MODIFIED, s)
    assert conditional_match(None, LAST_MODIFIED, etag, LAST_MODIFIED, s)
    assert not conditional_match(None, "Tue, 20 Oct 2015 07:28:00 GMT", etag, LAST_MODIFIED, s)
    assert not conditional_match(None, LAST_MODIFIED, etag, None, s)  # no Last-Modified
    assert not conditional_match(None, "yesterday", etag, LAST_MODIFIED, s)
    assert entity_tags('"a,b", W/"c"') == {'"a,b"', '"c"'}


def test_vary_is_merged_not_overwritten():
    headers = {"Vary": "Origin"}
    add_vary(headers, "Accept")
    assert headers["Vary"] == "Origin, Accept"
    add_vary(headers, "accept", "Origin")
    assert headers["Vary"] == "Origin, Accept"
    star = {"Vary": "*"}
    add_vary(star, "Accept")
    assert star["Vary"] == "*"
    empty: dict[str, str] = {}
    add_vary(empty)
    assert "Vary" not in empty


async def test_hits_repeat_the_miss_headers_and_recount_exp(make_client, images, monkeypatch):
    """A hit reuses the headers made for its cached result (no debug headers here), but
    a TTL that counts down (``exp``) is computed again on every hit."""
    (images / "cat.jpg").write_bytes(jpeg(64, 48))
    client = await make_client()
    url = signed("/rs:fit:20:20/plain/local:///cat.jpg")
    miss, hit = [await client.get(url) for _ in range(2)]
    names = ("ETag", "Cache-Control", "Vary", "Content-Type", "Content-Disposition",
             "Content-Security-Policy", "Content-Length")
    assert [miss.headers.get(n) for n in names] == [hit.headers.get(n) for n in names]
    assert miss.headers["X-Request-ID"] != hit.headers["X-Request-ID"]
    assert await hit.read() == await miss.read()

    clock = [time.time()]
    monkeypatch.setattr("vipsgate.http_cache.time", SimpleNamespace(time=lambda: clock[0]))
    expiring = signed(f"/exp:{int(clock[0]) + 1000}/rs:fit:20:20/plain/local:///cat.jpg")
    ages = []
    for _ in range(3):
        response = await client.get(expiring)
        assert response.status == 200
        ages.append(int(response.headers["Cache-Control"].split(",")[0].split("=")[1]))
        clock[0] += 100
    assert ages[0] - ages[1] == ages[1] - ages[2] == 100


async def test_header_memo_does_not_keep_evicted_results_alive(make_client, images):
    """The per-URL header memo holds its result weakly: once the byte-bounded result
    cache drops an image, nothing else keeps it in memory."""
    (images / "cat.jpg").write_bytes(jpeg(64, 48))
    client = await make_client(VIPSGATE_RESULT_CACHE_BYTES="20000")
    app = client.server.app
    first = "/rs:fit:20:20/plain/local:///cat.jpg"
    for _ in range(2):  # a miss, then a hit that uses the memoised headers
        assert (await client.get(signed(first))).status == 200
    entry = app[RESULTS].get(key_for(app, first))
    assert entry is not None
    alive = weakref.ref(entry)
    del entry
    for n in range(21, 80):  # other results push the first one out
        assert (await client.get(signed(f"/rs:fit:{n}:{n}/plain/local:///cat.jpg"))).status \
            == 200
    assert app[RESULTS].get(key_for(app, first)) is None
    gc.collect()
    assert alive() is None

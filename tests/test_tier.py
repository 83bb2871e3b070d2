"""The shared result tier end to end, in process: pods (apps) that share a real tier
(a directory, moto's S3 server, a Redis server) in front of a real HTTP origin on
127.0.0.1 that counts its hits. Failures of the tier answer 200 by computing."""

from __future__ import annotations

import asyncio
import base64
import time

from s3_fixtures import s3  # noqa: F401 - the session's S3 server, for tier_env
from tierkit import (
    ANY,
    SAME_HEADERS,
    WEBP,
    get,
    lookups,
    processed,
    rotated,
    rotated_pod_env,
    tier_of,
    writes,
)

from conftest import key_for, signed
from imagegen import jpeg, solid
from vipsgate.metrics import JobReport
from vipsgate.tier.base import encode

pytest_plugins = ("tier_fixtures",)

# --- sharing --------------------------------------------------------------------------

async def test_another_pod_serves_the_result_without_fetching_or_processing(
        pod, origin, tier_env):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(400, 300), ETag='"v1"',
                     **{"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    path = f"/rs:fill:120:80/plain/{url}"
    a = await pod(**tier_env)
    answers = {accept: await get(a, signed(path), accept) for accept in (WEBP, ANY)}
    assert {h["Content-Type"] for _, h, _ in answers.values()} == {"image/webp", "image/jpeg"}
    await tier_of(a).flush()
    assert writes(a, "stored") == 2

    b = await pod(**tier_env, **rotated_pod_env())  # another pod, on a rotated key
    for accept, (status, headers, body) in answers.items():
        again = await get(b, rotated(path), accept)
        assert again[0] == status == 200
        assert again[2] == body
        assert [again[1].get(h) for h in SAME_HEADERS] == [headers[h] for h in SAME_HEADERS]
    assert origin.hits["/cat.jpg"] == 1
    assert processed(b) == 0 and lookups(b, "hit") == 2

    # a third pod answers a revalidation from the tier's ETag: no fetch, no processing
    c = await pod(**tier_env)
    etag = answers[WEBP][1]["ETag"]
    status, headers, body = await get(c, signed(path), WEBP, **{"If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    assert origin.hits["/cat.jpg"] == 1 and processed(c) == 0


async def test_concurrent_requests_make_one_tier_lookup(pod, origin, fs_env):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**fs_env)
    assert (await get(a, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
    await tier_of(a).flush()
    b = await pod(**fs_env)
    answers = await asyncio.gather(*(get(b, signed(f"/rs:fit:100:100/plain/{url}"))
                                     for _ in range(20)))
    assert {status for status, _, _ in answers} == {200}
    assert lookups(b, "hit") == 1 and processed(b) == 0


async def test_errors_and_oversized_results_are_not_stored(pod, origin, fs_env, tmp_path):  # type: ignore[no-untyped-def]
    broken = origin.add("/broken.jpg", b"<html>not an image</html>")
    big = origin.add("/big.jpg", jpeg(400, 300))
    a = await pod(**fs_env, VIPSGATE_CACHE_MAX_OBJECT_SIZE="2000")
    assert (await get(a, signed(f"/plain/{origin.base}/missing.jpg")))[0] == 404
    assert (await get(a, signed(f"/plain/{broken}")))[0] == 422
    assert (await get(a, signed(f"/rs:fit:300:300/plain/{big}")))[0] == 200
    await tier_of(a).flush()
    assert writes(a, "too_large") == 1 and writes(a, "stored") == 0
    assert not [p for p in (tmp_path / "tier").rglob("*") if p.is_file()]


async def test_raw_is_relayed_never_shared(pod, origin, fs_env):  # type: ignore[no-untyped-def]
    """``raw`` relays the origin's response (as imgproxy's stream handler): no tier."""
    original = jpeg(200, 100)
    url = origin.add("/raw.jpg", original)
    a = await pod(**fs_env)
    assert (await get(a, signed(f"/raw:1/plain/{url}")))[2] == original
    await tier_of(a).flush()
    b = await pod(**fs_env)
    status, headers, body = await get(b, signed(f"/raw:1/plain/{url}"))
    assert (status, body, headers["Content-Type"]) == (200, original, "image/jpeg")
    assert origin.hits["/raw.jpg"] == 2 and lookups(b, "hit") == lookups(b, "miss") == 0


async def test_cachebusters_and_the_watermark_are_part_of_the_key(pod, origin, fs_env):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**fs_env)
    await get(a, signed(f"/rs:fit:100:100/plain/{url}"))
    await tier_of(a).flush()
    b = await pod(**fs_env)
    assert (await get(b, signed(f"/rs:fit:100:100/cb:2/plain/{url}")))[0] == 200
    assert lookups(b, "miss") == 1 and processed(b) == 1
    mark = base64.b64encode(solid(8, 8).pngsave_buffer()).decode()
    watermarked = await pod(**fs_env, IMGPROXY_WATERMARK_DATA=mark)  # renders other bytes
    assert (await get(watermarked, signed(f"/rs:fit:100:100/plain/{url}")))[0] == 200
    assert lookups(watermarked, "miss") == 1 and processed(watermarked) == 1


async def test_expires_still_caps_max_age_on_a_tier_hit(pod, origin, fs_env):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(300, 200))
    a = await pod(**fs_env)
    await get(a, signed(f"/rs:fit:100:100/plain/{url}"))
    await tier_of(a).flush()
    b = await pod(**fs_env)
    status, headers, _ = await get(b, signed(f"/rs:fit:100:100/exp:{int(time.time()) + 600}"
                                             f"/plain/{url}"))
    assert status == 200 and lookups(b, "hit") == 1
    assert 0 < int(headers["Cache-Control"].split("max-age=")[1].split(",")[0]) <= 600


async def test_entries_older_than_the_ttl_are_computed_again(pod, origin, fs_env):  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(300, 200))
    path = f"/rs:fit:100:100/plain/{url}"
    a = await pod(**fs_env, VIPSGATE_CACHE_TTL="60")
    await get(a, signed(path))
    await tier_of(a).flush()
    tier = tier_of(a)
    name = tier.key(key_for(a.server.app, path), {})
    stored = await tier.get(name, JobReport())
    assert stored is not None
    await tier.store.put(name, encode(name, stored, time.time() - 61), 0)  # stored long ago
    b = await pod(**fs_env, VIPSGATE_CACHE_TTL="60")
    assert (await get(b, signed(path)))[0] == 200
    assert lookups(b, "expired") == 1 and processed(b) == 1

"""What the shared tier stores, and under which key: an entry round-trips whole, any
damage to it is detected, and the key never depends on the signature."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from conftest import effective, make_settings
from vipsgate.metrics import JobReport
from vipsgate.processing import Result
from vipsgate.results import CachedResult, result_key
from vipsgate.sources import SourceMeta
from vipsgate.tier import NoTier, SharedCache, open_tier
from vipsgate.tier.base import CorruptEntry, decode, encode
from vipsgate.tier.fs import FsStore
from vipsgate.tier.metrics import TierMetrics

KEY = "pre/ab/cd/abcd"
ENTRY = CachedResult(
    Result(b"\xff\xd8 image bytes \xff\xd9" * 50, "webp", 120, 80, "jpeg", 400, 300),
    SourceMeta(etag='"v1"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
               content_type="image/jpeg", cache_control="max-age=60",
               expires="Thu, 22 Oct 2015 07:28:00 GMT", size=1234),
    '"0123456789abcdef"')


def test_an_entry_round_trips_with_its_headers() -> None:
    blob = encode(KEY, ENTRY, 1700000000.5)
    entry, stored = decode(KEY, blob, JobReport(stages={"tier": 0.001}))
    assert entry == ENTRY  # result bytes and facts, source validators, ETag
    assert stored == 1700000000
    assert entry.report.stages == {"tier": 0.001}
    assert b'"content_type":"image/webp"' in blob


def _flip(blob: bytes, at: int) -> bytes:
    damaged = bytearray(blob)
    damaged[at] ^= 0x40
    return bytes(damaged)


BLOB = encode(KEY, ENTRY, 1700000000)
DAMAGED = {
    "empty": b"",
    "not an entry": b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
    "truncated": BLOB[:-1],
    "half": BLOB[:len(BLOB) // 2],
    "padded": BLOB + b"\0",
    "a bit in the header": _flip(BLOB, 20),
    "a bit in the image": _flip(BLOB, len(BLOB) - 40),
    "a bit in the checksum": _flip(BLOB, len(BLOB) - 1),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damage_is_detected(name: str) -> None:
    with pytest.raises(CorruptEntry):
        decode(KEY, DAMAGED[name])


def test_an_entry_copied_under_another_key_is_refused() -> None:
    with pytest.raises(CorruptEntry, match="another key"):
        decode("pre/ab/cd/other", BLOB)


def _tier(**env: str) -> SharedCache:
    settings = make_settings(IMGPROXY_CACHE_USE="fs", IMGPROXY_CACHE_FS_ROOT="/nonexistent",
                             **env)
    tier = open_tier(settings, CollectorRegistry(), lambda: "fingerprint")
    assert isinstance(tier, SharedCache) and isinstance(tier.store, FsStore)
    return tier


def test_the_key_is_the_result_key_plus_the_server_fingerprint() -> None:
    tier = _tier(IMGPROXY_CACHE_PATH_PREFIX="/results/")
    key = result_key(effective("rs:fill:300:200"), "s3://bucket/cat.jpg", "webp")
    name = tier.key(key, {})
    prefix, a, b, digest = name.split("/")
    assert prefix == "results" and len(digest) == 64 and digest.startswith(a + b)
    # the same options written otherwise: the same key (no signature in it at all)
    same = result_key(effective("h:200/w:300/rt:fill"), "s3://bucket/cat.jpg", "webp")
    assert tier.key(same, {"Authorization": "x"}) == name
    assert tier.key(key._replace(format="jpeg"), {}) != name
    tier.fingerprint = lambda: "another libvips or watermark"
    assert tier.key(key, {}) != name


def test_key_headers_partition_the_tier() -> None:
    tier = _tier(IMGPROXY_CACHE_KEY_HEADERS="X-Tenant")
    key = result_key(effective(), "s3://bucket/cat.jpg", "jpeg")
    assert tier.key(key, {"X-Tenant": "a"}) != tier.key(key, {"X-Tenant": "b"})
    assert tier.key(key, {"X-Tenant": "a", "X-Other": "1"}) == tier.key(key, {"X-Tenant": "a"})


def test_no_tier_is_configured_by_default() -> None:
    tier = open_tier(make_settings(), CollectorRegistry(), lambda: "")
    assert isinstance(tier, NoTier)


def test_metrics_name_each_adapter() -> None:
    registry = CollectorRegistry()
    metrics = TierMetrics("redis", registry)
    metrics.lookup["hit"].inc()
    metrics.write["dropped"].inc()
    assert registry.get_sample_value("vipsgate_tier_lookups_total",
                                     {"tier": "redis", "outcome": "hit"}) == 1
    assert registry.get_sample_value("vipsgate_tier_writes_total",
                                     {"tier": "redis", "outcome": "dropped"}) == 1


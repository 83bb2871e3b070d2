"""IMGPROXY_ALLOWED_SOURCES matching, as pure functions (no network)."""

from __future__ import annotations

import pytest

from vipsgate.errors import InvalidSource
from vipsgate.sources.allowlist import AllowList, canonical

CASES = [
    # (pattern, url, allowed)
    ("http://*.example.com/", "http://a-1.b-2.example.com/x.jpg", True),
    ("http://*.example.com/", "HTTP://A.Example.COM/x.jpg", True),
    ("HTTPS://CDN.Example.com/Img/", "https://cdn.example.com/Img/a.jpg", True),
    ("https://cdn.example.com/Img/", "https://cdn.example.com/img/a.jpg", False),
    ("http://*.example.com/", "http://other.dev/.example.com/x.jpg", False),
    ("http://*.example.com/", "http://127.0.0.1:80?.example.com/", False),
    ("http://*.example.com/", "http://127.0.0.1#.example.com/", False),
    ("http://*.example.com/", "http://a.example.com@127.0.0.1/", False),
    ("http://*.example.com/", "http://x.example.com:pw@127.0.0.1/", False),
    ("http://*.example.com/", "http://u@a.example.com/x.jpg", True),  # userinfo dropped
    ("http://a.example.com", "http://a.example.com/x.jpg", True),
    ("http://a.example.com", "http://a.example.com:8080/x.jpg", True),
    ("http://a.example.com", "http://a.example.com.evil.net/x.jpg", False),
    ("http://a.example.com", "http://a.example.com@evil.net/x.jpg", False),
    ("http://a.example.com", "http://a.example.comx/", False),
    ("http://a.example.com/img/", "http://a.example.com/img/../secret.jpg", False),
    ("http://a.example.com/img/", "http://a.example.com/img/a%20b.jpg", True),
    ("https://", "https://anything.net/x", True),
    ("https://", "http://anything.net/x", False),
    ("http://*", "http://a.b/x", True),
    ("local:///public/", "local:///public/a.jpg", True),
    ("local:///public/", "local:///public/../secret.jpg", False),
    ("local:///public/", "local:///public/..%2Fsecret.jpg", False),
    ("local:///public/", "local:///public/%2E%2E/secret.jpg", False),
    ("s3://bucket/", "s3://bucket/key.jpg", True),
    ("s3://bucket/", "s3://bucket2/key.jpg", False),
]


@pytest.mark.parametrize(("pattern", "url", "allowed"), CASES)
def test_allow_list(pattern: str, url: str, allowed: bool) -> None:
    allow = AllowList.from_patterns((pattern,))
    assert allow is not None
    assert allow.allows(url) is allowed


def test_several_patterns_and_none() -> None:
    allow = AllowList.from_patterns(("http://a.net/", "s3://b/"))
    assert allow is not None
    assert allow.allows("http://a.net/x") and allow.allows("s3://b/k")
    assert not allow.allows("http://b.net/x")
    assert AllowList.from_patterns(()) is None


@pytest.mark.parametrize("url", [
    "http://[::1/", "http://[zz]/", "https://xn--/x", "http://" + "a" * 300 + ".com/",
    "http://a\\.b/", "http://h:99999/", "http:///x"])
def test_malformed_http_urls_are_invalid_sources(url: str) -> None:
    allow = AllowList.from_patterns(("http://",))
    assert allow is not None
    with pytest.raises(InvalidSource):
        allow.allows(url)


def test_canonical_form() -> None:
    assert canonical("http://u:p@Bücher.Example:80/a/./b?q#f") == (
        "http://xn--bcher-kva.example/a/b?q#f")
    assert canonical("local:///a/%2E%2E/b.jpg") == "local:///b.jpg"
    assert canonical("local:///") == "local:///"
    assert canonical("s3://b/k?v") == "s3://b/k?v"


def test_scheme_of_never_raises() -> None:
    from vipsgate.sources import scheme_of
    assert [scheme_of(u) for u in ("HTTP://[::1/", "s3://b/k", "local:///x", "/x", "")] == [
        "http", "s3", "local", "", ""]

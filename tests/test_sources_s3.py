"""``s3://`` sources through aiobotocore against a real S3 API (moto server) on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest
from botocore.exceptions import ClientError
from s3_fixtures import BUCKET, OTHER, VERSIONED, S3World, s3  # noqa: F401

from conftest import assert_revalidates, fetch_source, make_settings, signed
from imagegen import jpeg, load
from vipsgate.app import SOURCES
from vipsgate.errors import InvalidSource, SourceNotFound, SourceTooLarge, SourceUnreachable
from vipsgate.paths import encode_source
from vipsgate.sources import Sources
from vipsgate.sources.s3 import client_error, parse_s3_url

DEBUG = {"IMGPROXY_ENABLE_DEBUG_HEADERS": "1"}


def path_for(source: str, encoding: str = "base64") -> str:
    return signed("/rs:fit:20:20/" + encode_source(source, encoding))


async def origin_size(client, source: str, encoding: str = "base64") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    response = await client.get(path_for(source, encoding))
    assert response.status == 200, await response.text()
    return int(response.headers["X-Origin-Width"]), int(response.headers["X-Origin-Height"])


async def test_object_is_served_through_the_app(make_client, s3: S3World) -> None:  # noqa: F811
    client = await make_client(**s3.env())
    response = await client.get(path_for(f"s3://{BUCKET}/photos/cat.jpg"))
    assert response.status == 200
    out = load(await response.read())
    assert (out.width, out.height) == (20, 15)
    plain = await client.get(path_for(f"s3://{BUCKET}/dir with space/cat+1.jpg", "plain"))
    assert plain.status == 200


async def test_missing_object_or_bucket_is_404(make_client, s3: S3World) -> None:  # noqa: F811
    client = await make_client(**s3.env())
    for source in (f"s3://{BUCKET}/photos/nope.jpg", "s3://vg-no-such-bucket/cat.jpg",
                   f"s3://{VERSIONED}/cat.jpg?versionId=nonexistent"):
        response = await client.get(path_for(source))
        assert response.status == 404, source
        assert (await response.text()).strip() == "Source not found"


async def test_access_denied_is_404_and_logged(make_client, s3: S3World,  # noqa: F811
                                               caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client(**s3.env())
    with caplog.at_level(logging.WARNING, logger="vipsgate.sources"):
        response = await client.get(path_for(f"s3://{BUCKET}/denied/cat.jpg"))
    assert response.status == 404
    assert (await response.text()).strip() == "Source not found"
    assert any("denied" in r.getMessage() and "denied/cat.jpg" in r.getMessage()
               for r in caplog.records)


def test_error_mapping_on_real_client_errors(s3: S3World,  # noqa: F811
                                             caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ClientError) as denied:
        s3.client.get_object(Bucket=BUCKET, Key="denied/cat.jpg")
    with caplog.at_level(logging.WARNING, logger="vipsgate.sources"):
        assert isinstance(client_error(denied.value, "s3://x/denied"), SourceNotFound)
    assert "denied" in caplog.text
    with pytest.raises(ClientError) as missing:
        s3.client.get_object(Bucket=BUCKET, Key="missing.jpg")
    assert isinstance(client_error(missing.value, "s3://x/missing"), SourceNotFound)
    throttled = ClientError({"Error": {"Code": "SlowDown"},
                             "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    error = client_error(throttled, "s3://x/y")
    assert isinstance(error, SourceUnreachable) and error.status == 502


async def test_version_id_selects_the_version(make_client, s3: S3World) -> None:  # noqa: F811
    client = await make_client(**s3.env(**DEBUG))
    first, second = s3.versions
    source = f"s3://{VERSIONED}/cat.jpg"
    assert await origin_size(client, source) == (40, 40)
    assert await origin_size(client, f"{source}?versionId={first}") == (80, 60)
    assert await origin_size(client, f"{source}?versionId={first}", "plain") == (80, 60)
    assert await origin_size(client, f"{source}?{first}") == (80, 60)  # imgproxy's bare form
    assert await origin_size(client, f"{source}?versionId={second}") == (40, 40)


async def test_one_client_serves_every_request(make_client, s3: S3World) -> None:  # noqa: F811
    client = await make_client(**s3.env(VIPSGATE_SOURCE_CACHE_BYTES="0",
                                         VIPSGATE_RESULT_CACHE_BYTES="0"))
    source = client.app[SOURCES].by_scheme["s3"]
    s3_client = source.client
    sent: list[object] = []
    s3_client.meta.events.register("before-send.s3.GetObject",
                                   lambda **kwargs: sent.append(s3_client))
    for width in range(10, 16):
        response = await client.get(signed(f"/rs:fit:{width}:{width}/"
                                           + encode_source(f"s3://{BUCKET}/photos/cat.jpg")))
        assert response.status == 200
    assert source.client is s3_client
    assert len(sent) == 6 and all(c is s3_client for c in sent)
    # as many as the queue admits (IMGPROXY_WORKERS=2 + 64 places), plus 16
    assert s3_client.meta.config.max_pool_connections == 2 + 64 + 16


async def test_client_is_closed_with_the_app(s3: S3World) -> None:  # noqa: F811
    async with Sources(make_settings(**s3.env())) as sources:
        source = sources.by_scheme["s3"]
        assert (await fetch_source(sources, f"s3://{BUCKET}/photos/cat.jpg")).data
        # aiobotocore's aiohttp sessions (internal; one per pool configuration)
        opened = list(source.client._endpoint.http_session._sessions.values())
        assert opened and not any(session.closed for session in opened)
    assert source.client is None
    assert all(session.closed for session in opened)


async def test_meta_is_passed_through(s3: S3World) -> None:  # noqa: F811
    async with Sources(make_settings(**s3.env())) as sources:
        fetched = await fetch_source(sources, f"s3://{BUCKET}/photos/cat.jpg")
    head = s3.client.head_object(Bucket=BUCKET, Key="photos/cat.jpg")
    meta = fetched.meta
    assert meta.etag == head["ETag"] and meta.etag.startswith('"')
    assert meta.content_type == "image/jpeg"
    assert meta.cache_control == "public, max-age=600"
    assert meta.expires == "Wed, 21 Oct 2037 07:28:00 GMT"
    assert meta.last_modified and meta.last_modified.endswith(" GMT")
    assert meta.size == len(fetched.data) == head["ContentLength"]


async def test_size_limit_and_allowed_buckets(make_client, s3: S3World) -> None:  # noqa: F811
    settings = make_settings(**s3.env(IMGPROXY_S3_ALLOWED_BUCKETS=BUCKET))
    async with Sources(settings) as sources:
        with pytest.raises(SourceTooLarge):
            await fetch_source(sources, f"s3://{BUCKET}/photos/cat.jpg", 100)
        with pytest.raises(InvalidSource):
            await fetch_source(sources, f"s3://{OTHER}/cat.jpg")
    client = await make_client(**s3.env(IMGPROXY_MAX_SRC_FILE_SIZE="100"))
    assert (await client.get(path_for(f"s3://{BUCKET}/photos/cat.jpg"))).status == 422


async def test_s3_is_off_unless_enabled(make_client, s3: S3World) -> None:  # noqa: F811
    client = await make_client(IMGPROXY_S3_ENDPOINT=s3.endpoint)
    assert (await client.get(path_for(f"s3://{BUCKET}/photos/cat.jpg"))).status == 404


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://b/k.jpg", ("b", "k.jpg", None)),
    ("s3://b/a/b%20c.jpg", ("b", "a/b%20c.jpg", None)),  # the key is raw, as imgproxy
    ("s3://b/k.jpg?versionId=abc", ("b", "k.jpg", "abc")),
    ("s3://b/k.jpg?abc", ("b", "k.jpg", "abc")),
    ("s3://b/k.jpg?", ("b", "k.jpg", None)),
])
def test_parse_s3_url(url: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3://bucket", "s3://bucket/", "s3:///key"])
def test_parse_s3_url_rejects_incomplete(url: str) -> None:
    with pytest.raises(InvalidSource):
        parse_s3_url(url)


async def test_validators_are_forwarded_and_a_304_downloads_nothing(s3: S3World) -> None:  # noqa: F811
    """GetObject with ``IfNoneMatch``/``IfModifiedSince`` (as imgproxy): S3's 304 is
    ``Unchanged`` with the validators it carried; a changed object is downloaded."""
    from vipsgate.sources.base import Unchanged

    key = "conditional/cat.jpg"
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=jpeg(80, 60), ContentType="image/jpeg")
    head = s3.client.head_object(Bucket=BUCKET, Key=key)
    url = f"s3://{BUCKET}/{key}"
    async with Sources(make_settings(**s3.env())) as sources:
        ref = sources.check(url)
        by_tag = await sources.fetch_if_changed(ref, 0, {"If-None-Match": head["ETag"]})
        since = (await fetch_source(sources, url)).meta.last_modified
        assert since is not None
        by_date = await sources.fetch_if_changed(ref, 0, {"If-Modified-Since": since})
        other = await sources.fetch_if_changed(ref, 0, {"If-None-Match": '"another"'})
    assert isinstance(by_tag, Unchanged) and by_tag.meta.etag == head["ETag"]
    assert isinstance(by_date, Unchanged)
    assert not isinstance(other, Unchanged) and other.data == s3.client.get_object(
        Bucket=BUCKET, Key=key)["Body"].read()


async def test_a_client_revalidation_is_304_until_the_object_changes(make_client,  # type: ignore[no-untyped-def]
                                                                      s3: S3World) -> None:  # noqa: F811
    key = "conditional/revalidated.jpg"
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=jpeg(80, 60), ContentType="image/jpeg")
    client = await make_client(**s3.env(VIPSGATE_RESULT_CACHE_BYTES="0",
                                        VIPSGATE_SOURCE_CACHE_BYTES="0"))
    await assert_revalidates(client, path_for(f"s3://{BUCKET}/{key}"), lambda: s3.client.put_object(
        Bucket=BUCKET, Key=key, Body=jpeg(40, 40), ContentType="image/jpeg"))


@pytest.mark.parametrize(("tag", "forwarded"), [
    ('"abc"', True), ('W/"abc"', True), ('"a", "b"', False), ('"a\r\nX-Injected: 1"', False),
    ("abc", False), ("", False)])
async def test_only_one_well_formed_tag_is_forwarded(s3: S3World, tag: str,  # noqa: F811
                                                     forwarded: bool) -> None:
    """Tags come from clients (inside ours): S3 gets a single well-formed one or none, and
    without one the object is fetched (and compared by the handler)."""
    from vipsgate.sources.base import Unchanged

    key = "conditional/tags.jpg"
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=jpeg(8, 8), ContentType="image/jpeg")
    sent: list[dict] = []
    async with Sources(make_settings(**s3.env())) as sources:
        source = sources.by_scheme["s3"]
        client = source.client
        original = client.get_object

        async def spy(**params):  # type: ignore[no-untyped-def]
            sent.append(params)
            return await original(**params)

        client.get_object = spy
        outcome = await sources.fetch_if_changed(sources.check(f"s3://{BUCKET}/{key}"), 0,
                                                 {"If-None-Match": tag})
    assert ("IfNoneMatch" in sent[0]) is forwarded
    assert not isinstance(outcome, Unchanged)  # none of these is the object's tag

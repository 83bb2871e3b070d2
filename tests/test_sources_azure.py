"""``abs://`` sources against a real Azure Blob Storage emulator (Azurite) on 127.0.0.1,
with Shared Key authentication (Azurite's development account). A slow or failing
store is a real HTTP server on 127.0.0.1 standing in for the blob endpoint."""

from __future__ import annotations

import logging
import uuid

import pytest
from aiohttp import web
from cloud_fixtures import AZURITE_KEY, BUCKET, OTHER, AzureWorld, azurite  # noqa: F401

from conftest import fetch_source, free_port, make_settings, signed
from imagegen import jpeg, load
from vipsgate.errors import ConfigError, InvalidSource, SourceTooLarge
from vipsgate.paths import encode_source
from vipsgate.sources import Sources, SourceStream, pump

DEBUG = {"IMGPROXY_ENABLE_DEBUG_HEADERS": "1"}
NO_CACHES = {"VIPSGATE_RESULT_CACHE_BYTES": "0", "VIPSGATE_SOURCE_CACHE_BYTES": "0"}


def path_for(source: str, encoding: str = "base64") -> str:
    return signed("/rs:fit:20:20/" + encode_source(source, encoding))


async def size_of(client, source: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    response = await client.get(path_for(source))
    assert response.status == 200, await response.text()
    return int(response.headers["X-Origin-Width"]), int(response.headers["X-Origin-Height"])


def fresh(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}.jpg"


async def test_blob_is_fetched_and_resized(make_client, azurite: AzureWorld) -> None:  # noqa: F811
    client = await make_client(**azurite.env())
    response = await client.get(path_for(f"abs://{BUCKET}/photos/cat.jpg"))
    assert response.status == 200, await response.text()
    out = load(await response.read())
    assert (out.width, out.height) == (20, 15)
    plain = await client.get(path_for(f"abs://{BUCKET}/dir with space/cat+1.jpg", "plain"))
    assert plain.status == 200


async def test_missing_blob_or_container_is_404(make_client, azurite: AzureWorld) -> None:  # noqa: F811
    client = await make_client(**azurite.env())
    for source in (f"abs://{BUCKET}/photos/nope.jpg", "abs://no-such-container/cat.jpg"):
        response = await client.get(path_for(source))
        assert (response.status, (await response.text()).strip()) == \
            (404, "Source not found"), source


async def test_a_refused_key_is_404_and_logged(make_client, azurite: AzureWorld,  # noqa: F811
                                               caplog: pytest.LogCaptureFixture) -> None:
    wrong = "AAAA" + AZURITE_KEY[4:]
    client = await make_client(**azurite.env(IMGPROXY_ABS_KEY=wrong))
    with caplog.at_level(logging.WARNING, logger="vipsgate.sources"):
        response = await client.get(path_for(f"abs://{BUCKET}/photos/cat.jpg"))
    assert (response.status, (await response.text()).strip()) == (404, "Source not found")
    assert any("denied" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)


async def test_allowed_and_denied_containers(make_client, azurite: AzureWorld) -> None:  # noqa: F811
    azurite.put(OTHER, "cat.jpg", jpeg(80, 60))
    client = await make_client(**azurite.env(IMGPROXY_ABS_ALLOWED_BUCKETS=BUCKET))
    assert (await client.get(path_for(f"abs://{BUCKET}/photos/cat.jpg"))).status == 200
    refused = await client.get(path_for(f"abs://{OTHER}/cat.jpg"))
    assert (refused.status, (await refused.text()).strip()) == (404, "Invalid source URL")
    client = await make_client(**azurite.env(IMGPROXY_ABS_DENIED_BUCKETS=OTHER))
    assert (await client.get(path_for(f"abs://{OTHER}/cat.jpg"))).status == 404
    assert (await client.get(path_for(f"abs://{BUCKET}/photos/cat.jpg"))).status == 200


async def test_a_snapshot_pins_the_blob(make_client, azurite: AzureWorld) -> None:  # noqa: F811
    name = fresh("pinned")
    azurite.put(BUCKET, name, jpeg(80, 60))
    snapshot = azurite.snapshot(BUCKET, name)
    azurite.put(BUCKET, name, jpeg(40, 40))
    client = await make_client(**azurite.env(**DEBUG))
    assert await size_of(client, f"abs://{BUCKET}/{name}") == (40, 40)
    assert await size_of(client, f"abs://{BUCKET}/{name}?snapshot={snapshot}") == (80, 60)
    gone = await client.get(path_for(f"abs://{BUCKET}/{name}?snapshot=2001-01-01T00:00:00.0000000Z"))
    assert (gone.status, (await gone.text()).strip()) == (404, "Source not found")


async def test_validators_answer_304_until_the_blob_changes(make_client,
                                                            azurite: AzureWorld) -> None:  # noqa: F811
    name = fresh("validators")
    azurite.put(BUCKET, name, jpeg(80, 60))
    props = azurite.properties(BUCKET, name)
    client = await make_client(**azurite.env(**NO_CACHES))
    path = path_for(f"abs://{BUCKET}/{name}")
    first = await client.get(path)
    assert first.status == 200
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert modified == props.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
    by_tag = await client.get(path, headers={"If-None-Match": etag})
    by_date = await client.get(path, headers={"If-Modified-Since": modified})
    assert (by_tag.status, by_date.status) == (304, 304)
    azurite.put(BUCKET, name, jpeg(40, 40))
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


async def test_meta_is_the_blobs(azurite: AzureWorld) -> None:  # noqa: F811
    async with Sources(make_settings(**azurite.env())) as sources:
        fetched = await fetch_source(sources, f"abs://{BUCKET}/photos/cat.jpg")
    props = azurite.properties(BUCKET, "photos/cat.jpg")
    meta = fetched.meta
    assert meta.etag == props.etag and meta.etag.startswith('"')
    assert (meta.content_type, meta.cache_control) == ("image/jpeg", "public, max-age=600")
    assert meta.size == len(fetched.data) == props.size


async def test_a_declared_size_over_the_limit_is_refused(make_client,
                                                         azurite: AzureWorld) -> None:  # noqa: F811
    client = await make_client(**azurite.env(IMGPROXY_MAX_SRC_FILE_SIZE="100"))
    assert (await client.get(path_for(f"abs://{BUCKET}/photos/cat.jpg"))).status == 422


async def test_the_size_limit_stops_the_ranges_midway(azurite: AzureWorld) -> None:  # noqa: F811
    data = bytes(range(256)) * 1600  # 400 KiB, in 16 KiB ranges
    name = fresh("big")
    azurite.put(BUCKET, name, data, "application/octet-stream")
    limit, chunk = 100_000, 16 * 1024
    settings = make_settings(**azurite.env(VIPSGATE_ABS_CHUNK_SIZE=str(chunk)))
    async with Sources(settings) as sources:
        url = f"abs://{BUCKET}/{name}"
        body = await sources.open(sources.check(url), 0)  # no limit declared: stream it
        assert body.meta.size == len(data)
        sizes: list[int] = []
        chunks = body.chunks

        async def counted():  # type: ignore[no-untyped-def]
            async for piece in chunks():
                sizes.append(len(piece))
                yield piece

        body.chunks = counted  # type: ignore[method-assign]
        stream = SourceStream(body.meta)
        await pump(body, stream, limit, url)
    assert isinstance(stream.error, SourceTooLarge)
    assert set(sizes) == {chunk}  # range by range
    assert limit < sum(sizes) <= limit + chunk  # the other ranges were never requested


async def test_one_client_is_opened_and_closed_with_the_sources(azurite: AzureWorld) -> None:  # noqa: F811
    async with Sources(make_settings(**azurite.env())) as sources:
        client = sources.by_scheme["abs"].client  # type: ignore[attr-defined]
        service = client.service
        for _ in range(3):
            assert (await fetch_source(sources, f"abs://{BUCKET}/photos/cat.jpg")).data
        assert client.service is service
    assert client.service is None


async def test_abs_is_off_unless_enabled(make_client, azurite: AzureWorld) -> None:  # noqa: F811
    client = await make_client(IMGPROXY_ABS_ENDPOINT=azurite.endpoint)
    response = await client.get(path_for(f"abs://{BUCKET}/photos/cat.jpg"))
    assert (response.status, (await response.text()).strip()) == (404, "Invalid source URL")


async def test_a_failing_unreachable_or_slow_store(make_client, origin) -> None:  # type: ignore[no-untyped-def]
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503, text="ServerBusy")

    origin.route("/acct/broken/*", failing)
    origin.add("/acct/slow/cat.jpg", jpeg(80, 60), hold=True)
    env = {"IMGPROXY_USE_ABS": "1", "IMGPROXY_ABS_NAME": "acct", "IMGPROXY_ABS_KEY": AZURITE_KEY,
           "IMGPROXY_ABS_ENDPOINT": origin.url("/acct")}
    client = await make_client(**env)
    assert (await client.get(path_for("abs://broken/cat.jpg"))).status == 502
    assert origin.hits["/acct/broken/cat.jpg"] == 2  # one retry
    down = await make_client(**{**env, "IMGPROXY_ABS_ENDPOINT":
                                f"http://127.0.0.1:{free_port()}/acct"})
    assert (await down.get(path_for("abs://broken/cat.jpg"))).status == 502
    impatient = await make_client(**env, IMGPROXY_DOWNLOAD_TIMEOUT="0.5")
    slow = await impatient.get(path_for("abs://slow/cat.jpg"))  # held: never answered
    assert (slow.status, (await slow.text()).strip()) == (504, "Source timed out")
    origin.release()


def test_an_account_name_is_needed() -> None:
    with pytest.raises(ConfigError, match="IMGPROXY_ABS_NAME"):
        make_settings(IMGPROXY_USE_ABS="1")


@pytest.mark.parametrize(("url", "expected"), [
    ("abs://c-1/k.jpg", ("c-1", "k.jpg", None, None)),
    ("abs://box/a/b%20c.jpg", ("box", "a/b%20c.jpg", None, None)),  # raw, as imgproxy
    ("abs://box/k.jpg?snapshot=2024-01-01T00:00:00.0000000Z",
     ("box", "k.jpg", None, "2024-01-01T00:00:00.0000000Z")),
    ("abs://box/k.jpg?versionId=v1", ("box", "k.jpg", "v1", None)),
    ("abs://box/k.jpg?anything", ("box", "k.jpg", None, None)),  # ignored, as imgproxy
    ("abs://$web/index.jpg", ("$web", "index.jpg", None, None)),
])
def test_parse_abs_url(url: str, expected: tuple[str, str, str | None, str | None]) -> None:
    from vipsgate.cloud.names import parse_abs_url
    assert parse_abs_url(url) == expected


@pytest.mark.parametrize("url", ["abs://", "abs://box", "abs://box/", "abs://Box/k",
                                 "abs://ab/k", "abs://a--b/k", "abs://-ab/k", "abs://b%2F/k"])
def test_parse_abs_url_rejects_bad_names(url: str) -> None:
    from vipsgate.cloud.names import parse_abs_url
    with pytest.raises(InvalidSource):
        parse_abs_url(url)


async def test_one_forwarded_tag_and_a_304_downloads_nothing(azurite: AzureWorld) -> None:  # noqa: F811
    """The client's entity tag goes with the download: Azure's 304 is ``Unchanged`` with
    that tag. A date alone is compared here (Azure's 304 may carry no validators)."""
    from vipsgate.sources.base import Unchanged

    name, body = fresh("conditional"), jpeg(80, 60)
    azurite.put(BUCKET, name, body)
    props = azurite.properties(BUCKET, name)
    url = f"abs://{BUCKET}/{name}"
    async with Sources(make_settings(**azurite.env())) as sources:
        ref = sources.check(url)
        by_tag = await sources.fetch_if_changed(ref, 0, {"If-None-Match": props.etag})
        since = (await fetch_source(sources, url)).meta.last_modified
        assert since is not None
        by_date = await sources.fetch_if_changed(ref, 0, {"If-Modified-Since": since})
        other = await sources.fetch_if_changed(ref, 0, {"If-None-Match": '"another"'})
    assert isinstance(by_tag, Unchanged) and by_tag.meta.etag == props.etag
    for fetched in (by_date, other):
        assert not isinstance(fetched, Unchanged) and fetched.data == body

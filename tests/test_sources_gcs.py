"""``gs://`` sources against a real GCS emulator (gcp-storage-emulator) on 127.0.0.1.

The emulator keeps one generation per object and sends neither ``Last-Modified`` nor
``X-Goog-Generation``, and it checks no credentials; what it cannot show (a pinned
older generation, a refusal, Google's headers, a slow store, a key exchanged for a
token) is checked against a real HTTP server on 127.0.0.1 that answers the JSON API's
requests the way Google documents them (``FakeGcs``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cloud_fixtures import BUCKET, OTHER, GcsWorld, gcs  # noqa: F401

from conftest import assert_revalidates, fetch_source, free_port, make_settings, signed
from imagegen import jpeg, load
from vipsgate.errors import ConfigError, InvalidSource, SourceTooLarge
from vipsgate.paths import encode_source
from vipsgate.sources import Sources, SourceStream, pump
from vipsgate.sources.base import CHUNK

DEBUG = {"IMGPROXY_ENABLE_DEBUG_HEADERS": "1"}
NO_CACHES = {"VIPSGATE_RESULT_CACHE_BYTES": "0", "VIPSGATE_SOURCE_CACHE_BYTES": "0"}
MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def path_for(source: str, encoding: str = "base64") -> str:
    return signed("/rs:fit:20:20/" + encode_source(source, encoding))


async def size_of(client, source: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    response = await client.get(path_for(source))
    assert response.status == 200, await response.text()
    return int(response.headers["X-Origin-Width"]), int(response.headers["X-Origin-Height"])


# --- against the emulator ---------------------------------------------------------------

async def test_object_is_fetched_and_resized(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    client = await make_client(**gcs.env())
    response = await client.get(path_for(f"gs://{BUCKET}/photos/cat.jpg"))
    assert response.status == 200, await response.text()
    out = load(await response.read())
    assert (out.width, out.height) == (20, 15)
    plain = await client.get(path_for(f"gs://{BUCKET}/dir with space/cat+1.jpg", "plain"))
    assert plain.status == 200


async def test_missing_object_or_bucket_is_404(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    client = await make_client(**gcs.env())
    for source in (f"gs://{BUCKET}/photos/nope.jpg", "gs://vg-no-such-bucket/cat.jpg"):
        response = await client.get(path_for(source))
        assert (response.status, (await response.text()).strip()) == \
            (404, "Source not found"), source


async def test_allowed_and_denied_buckets(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    gcs.put(OTHER, "cat.jpg", jpeg(80, 60))
    client = await make_client(**gcs.env(IMGPROXY_GCS_ALLOWED_BUCKETS=BUCKET))
    assert (await client.get(path_for(f"gs://{BUCKET}/photos/cat.jpg"))).status == 200
    refused = await client.get(path_for(f"gs://{OTHER}/cat.jpg"))
    assert (refused.status, (await refused.text()).strip()) == (404, "Invalid source URL")
    client = await make_client(**gcs.env(IMGPROXY_GCS_DENIED_BUCKETS=OTHER))
    assert (await client.get(path_for(f"gs://{OTHER}/cat.jpg"))).status == 404
    assert (await client.get(path_for(f"gs://{BUCKET}/photos/cat.jpg"))).status == 200


async def test_the_live_generation_can_be_pinned(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    name = f"pinned/{uuid.uuid4().hex}.jpg"
    generation = gcs.put(BUCKET, name, jpeg(80, 60))["generation"]
    client = await make_client(**gcs.env(**DEBUG))
    for source in (f"gs://{BUCKET}/{name}?{generation}",
                   f"gs://{BUCKET}/{name}?generation={generation}",
                   f"gs://{BUCKET}/{name}?not-a-generation"):  # ignored, as imgproxy does
        assert await size_of(client, source) == (80, 60), source


async def test_validators_answer_304_until_the_object_changes(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    name = f"validators/{uuid.uuid4().hex}.jpg"
    gcs.put(BUCKET, name, jpeg(80, 60))
    client = await make_client(**gcs.env(**NO_CACHES))
    await assert_revalidates(client, path_for(f"gs://{BUCKET}/{name}"),
                             lambda: gcs.put(BUCKET, name, jpeg(40, 40)))


async def test_a_declared_size_over_the_limit_is_refused(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    client = await make_client(**gcs.env(IMGPROXY_MAX_SRC_FILE_SIZE="100"))
    response = await client.get(path_for(f"gs://{BUCKET}/photos/cat.jpg"))
    assert response.status == 422


async def test_the_size_limit_stops_the_stream_midway(gcs: GcsWorld) -> None:  # noqa: F811
    data = bytes(range(256)) * 1600  # 400 KiB
    name = f"big/{uuid.uuid4().hex}.bin"
    gcs.put(BUCKET, name, data, "application/octet-stream")
    limit = 100_000
    async with Sources(make_settings(**gcs.env())) as sources:
        url = f"gs://{BUCKET}/{name}"
        body = await sources.open(sources.check(url), 0)  # no limit declared: stream it
        assert body.meta.size == len(data)
        seen = 0
        chunks = body.chunks

        async def counted():  # type: ignore[no-untyped-def]
            nonlocal seen
            async for chunk in chunks():
                seen += len(chunk)
                yield chunk

        body.chunks = counted  # type: ignore[method-assign]
        stream = SourceStream(body.meta)
        await pump(body, stream, limit, url)
    assert isinstance(stream.error, SourceTooLarge)
    assert limit < seen <= limit + CHUNK < len(data)  # the rest was never read


async def test_one_client_is_opened_and_closed_with_the_sources(gcs: GcsWorld) -> None:  # noqa: F811
    async with Sources(make_settings(**gcs.env())) as sources:
        session = sources.by_scheme["gs"].client.session  # type: ignore[attr-defined]
        for _ in range(3):
            fetched = await fetch_source(sources, f"gs://{BUCKET}/photos/cat.jpg")
            assert fetched.meta.etag and fetched.meta.etag.startswith('"')
            assert fetched.meta.size == len(fetched.data)
        assert sources.by_scheme["gs"].client.session is session and not session.closed  # type: ignore[attr-defined]
    assert session.closed


async def test_gcs_is_off_unless_enabled(make_client, gcs: GcsWorld) -> None:  # noqa: F811
    client = await make_client(IMGPROXY_GCS_ENDPOINT=gcs.endpoint)
    response = await client.get(path_for(f"gs://{BUCKET}/photos/cat.jpg"))
    assert (response.status, (await response.text()).strip()) == (404, "Invalid source URL")


# --- against a GCS-shaped server: what the emulator cannot show -------------------------

class FakeGcs:
    """The JSON API's media download, as Google documents it, on the ``origin``
    server: object generations, Google's headers, refusals and a token endpoint."""

    def __init__(self, origin: Any) -> None:
        self.origin = origin
        self.generations = {"1": jpeg(80, 60), "2": jpeg(40, 40)}  # "2" is live
        self.tokens: list[dict[str, Any]] = []  # verified JWT claims
        self.public_key: Any = None
        origin.route("/storage/v1/b/fake/*", self.media)
        origin.route("/storage/v1/b/private/*", self.refused)
        origin.route("/storage/v1/b/broken/*", self.failing)
        origin.route("/token", self.token)
        self.endpoint = origin.base

    async def media(self, request: web.Request) -> web.Response:
        assert request.query["alt"] == "media"
        generation = request.query.get("generation", "2")
        body = self.generations.get(generation)
        if body is None:
            return web.json_response({"error": {"code": 404, "message": "No such object"}},
                                     status=404)
        return web.Response(body=body, content_type="image/jpeg", headers={
            "X-Goog-Generation": generation, "ETag": f'"etag-{generation}"',
            "Last-Modified": MODIFIED, "Cache-Control": "public, max-age=600"})

    async def refused(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": 403, "message": "vg@x does not have "
                                            "storage.objects.get access"}}, status=403)

    async def failing(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": 503, "message": "Backend Error"}},
                                 status=503)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        try:
            claims = jwt.decode(str(form["assertion"]), self.public_key, algorithms=["RS256"],
                                audience=self.origin.url("/token"))
        except jwt.InvalidTokenError:
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.tokens.append(claims)
        return web.json_response({"access_token": f"token-{len(self.tokens)}",
                                  "expires_in": 3600, "token_type": "Bearer"})

    def env(self, **extra: str) -> dict[str, str]:
        return {"IMGPROXY_USE_GCS": "1", "IMGPROXY_GCS_ENDPOINT": self.endpoint,
                "VIPSGATE_GCS_NO_AUTH": "1", **extra}

    def service_account(self) -> str:
        """A JSON key whose private key is new and whose token endpoint is ours."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = private.public_key()
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return json.dumps({"type": "service_account", "project_id": "vg",
                           "client_email": "vipsgate@vg.iam.gserviceaccount.com",
                           "private_key": pem, "token_uri": self.origin.url("/token")})


@pytest.fixture
def fake_gcs(origin) -> FakeGcs:  # type: ignore[no-untyped-def]
    return FakeGcs(origin)


async def test_a_generation_selects_that_generation(make_client, fake_gcs: FakeGcs) -> None:
    client = await make_client(**fake_gcs.env(**DEBUG))
    assert await size_of(client, "gs://fake/cat.jpg") == (40, 40)
    assert await size_of(client, "gs://fake/cat.jpg?1") == (80, 60)
    assert await size_of(client, "gs://fake/cat.jpg?generation=1") == (80, 60)
    gone = await client.get(path_for("gs://fake/cat.jpg?3"))
    assert (gone.status, (await gone.text()).strip()) == (404, "Source not found")
    assert [r.query.get("generation") for r in fake_gcs.origin.requests] == \
        [None, "1", "1", "3"]


async def test_googles_headers_become_the_validators(make_client, fake_gcs: FakeGcs) -> None:
    client = await make_client(**fake_gcs.env(**NO_CACHES))
    path = path_for("gs://fake/cat.jpg")
    first = await client.get(path)
    assert first.status == 200 and first.headers["Last-Modified"] == MODIFIED
    by_date = await client.get(path, headers={"If-Modified-Since": MODIFIED})
    by_tag = await client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert (by_date.status, by_tag.status) == (304, 304)
    async with Sources(make_settings(**fake_gcs.env())) as sources:
        meta = (await fetch_source(sources, "gs://fake/cat.jpg")).meta
    assert (meta.etag, meta.last_modified, meta.cache_control) == \
        ('"etag-2"', MODIFIED, "public, max-age=600")


async def test_a_refused_object_is_404_and_logged(make_client, fake_gcs: FakeGcs,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client(**fake_gcs.env())
    with caplog.at_level(logging.WARNING, logger="vipsgate.sources"):
        response = await client.get(path_for("gs://private/secret.jpg"))
    assert (response.status, (await response.text()).strip()) == (404, "Source not found")
    assert any("denied" in r.getMessage() and "gs://private/secret.jpg" in r.getMessage()
               for r in caplog.records)


async def test_a_failing_unreachable_or_slow_store(make_client, fake_gcs: FakeGcs) -> None:
    client = await make_client(**fake_gcs.env())
    assert (await client.get(path_for("gs://broken/cat.jpg"))).status == 502
    down = await make_client(**fake_gcs.env(
        IMGPROXY_GCS_ENDPOINT=f"http://127.0.0.1:{free_port()}"))
    assert (await down.get(path_for("gs://fake/cat.jpg"))).status == 502
    impatient = await make_client(**fake_gcs.env(IMGPROXY_DOWNLOAD_TIMEOUT="0.3"))
    fake_gcs.origin.hold()  # the store never answers: any timeout is crossed
    slow = await impatient.get(path_for("gs://fake/cat.jpg"))
    assert (slow.status, (await slow.text()).strip()) == (504, "Source timed out")
    fake_gcs.origin.release()


@pytest.mark.parametrize("encoding", ["raw", "base64"])
async def test_a_json_key_is_exchanged_for_a_token(make_client, fake_gcs: FakeGcs,
                                                   encoding: str) -> None:
    key = fake_gcs.service_account()
    if encoding == "base64":
        key = base64.b64encode(key.encode()).decode()
    client = await make_client(**fake_gcs.env(VIPSGATE_GCS_NO_AUTH="0", IMGPROXY_GCS_KEY=key,
                                              **NO_CACHES))
    for width in (20, 21):
        response = await client.get(signed(f"/rs:fit:{width}:{width}/"
                                           + encode_source("gs://fake/cat.jpg")))
        assert response.status == 200
    media = [r for r in fake_gcs.origin.requests if r.path.startswith("/storage/")]
    assert [r.headers.get("Authorization") for r in media] == ["Bearer token-1"] * 2
    assert len(fake_gcs.tokens) == 1  # cached
    claims = fake_gcs.tokens[0]
    assert claims["iss"] == "vipsgate@vg.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/devstorage.read_only"


async def test_a_refused_key_is_a_logged_502(make_client, fake_gcs: FakeGcs,
                                             caplog: pytest.LogCaptureFixture) -> None:
    key = json.loads(fake_gcs.service_account())
    fake_gcs.service_account()  # the token endpoint now expects another key
    client = await make_client(**fake_gcs.env(VIPSGATE_GCS_NO_AUTH="0",
                                              IMGPROXY_GCS_KEY=json.dumps(key)))
    with caplog.at_level(logging.WARNING, logger="vipsgate.sources"):
        response = await asyncio.wait_for(client.get(path_for("gs://fake/cat.jpg")), 10)
    assert response.status == 502
    assert any("no GCS access token" in r.getMessage() for r in caplog.records)


async def test_workload_identity_takes_tokens_from_the_metadata_server(
        serve, fake_gcs: FakeGcs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No key: Application Default Credentials end at the metadata server, as on GKE
    with workload identity (``GCE_METADATA_HOST`` points Google's libraries at ours)."""
    origin = fake_gcs.origin
    flavours: list[str | None] = []

    async def metadata(request: web.Request) -> web.Response:
        flavours.append(request.headers.get("Metadata-Flavor"))
        return web.json_response({"access_token": "gke-token", "expires_in": 3599,
                                  "token_type": "Bearer"})

    origin.route("/computeMetadata/v1/instance/service-accounts/default/token", metadata)
    server = serve(**fake_gcs.env(VIPSGATE_GCS_NO_AUTH="0", **NO_CACHES),
                   GCE_METADATA_HOST=f"127.0.0.1:{origin.port}", CLOUDSDK_CONFIG=str(tmp_path),
                   GOOGLE_APPLICATION_CREDENTIALS="", HOME=str(tmp_path))
    async with aiohttp.ClientSession() as session:
        for width in (20, 21):
            path = signed(f"/rs:fit:{width}:{width}/" + encode_source("gs://fake/cat.jpg"))
            async with session.get(server.url(path)) as response:
                assert response.status == 200, await response.text()
    media = [r for r in origin.requests if r.path.startswith("/storage/")]
    assert [r.headers.get("Authorization") for r in media] == ["Bearer gke-token"] * 2
    assert flavours == ["Google"]  # one token, cached


# --- settings ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["not json", "e30=", '{"no": "type"}'])
def test_a_bad_key_stops_start_up_without_printing_it(key: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_settings(IMGPROXY_USE_GCS="1", IMGPROXY_GCS_KEY=key)
    assert "IMGPROXY_GCS_KEY" in str(error.value) and key not in str(error.value)


@pytest.mark.parametrize(("url", "expected"), [
    ("gs://b-1/k.jpg", ("b-1", "k.jpg", None)),
    ("gs://bucket/a/b%20c.jpg", ("bucket", "a/b%20c.jpg", None)),  # raw, as imgproxy
    ("gs://bucket/k.jpg?123", ("bucket", "k.jpg", 123)),
    ("gs://bucket/k.jpg?generation=7", ("bucket", "k.jpg", 7)),
    ("gs://bucket/k.jpg?0", ("bucket", "k.jpg", None)),
    ("gs://bucket/k.jpg?x", ("bucket", "k.jpg", None)),
])
def test_parse_gs_url(url: str, expected: tuple[str, str, int | None]) -> None:
    from vipsgate.cloud.names import parse_gs_url
    assert parse_gs_url(url) == expected


def test_the_query_separator_applies() -> None:
    """``IMGPROXY_SOURCE_URL_QUERY_SEPARATOR``: imgproxy's ``?generation=`` form, or none."""
    from vipsgate.cloud.names import parse_gs_url
    assert parse_gs_url("gs://b-1/a?b.jpg?generation=7", "?generation=") == \
        ("b-1", "a?b.jpg", 7)
    assert parse_gs_url("gs://b-1/a?7", "") == ("b-1", "a?7", None)


async def test_a_key_with_a_question_mark_needs_no_separator(make_client,
                                                            gcs: GcsWorld) -> None:  # noqa: F811
    name = f"odd/{uuid.uuid4().hex}?.jpg"
    gcs.put(BUCKET, name, jpeg(80, 60))
    client = await make_client(**gcs.env(IMGPROXY_SOURCE_URL_QUERY_SEPARATOR=""))
    assert (await client.get(path_for(f"gs://{BUCKET}/{name}"))).status == 200


@pytest.mark.parametrize("url", ["gs://", "gs://bucket", "gs://bucket/", "gs://B/k",
                                 "gs://a/k", "gs://-b/k",
                                 "gs://b%2Fx/k", "gs://b?x/k"])
def test_parse_gs_url_rejects_bad_names(url: str) -> None:
    from vipsgate.cloud.names import parse_gs_url
    with pytest.raises(InvalidSource):
        parse_gs_url(url)

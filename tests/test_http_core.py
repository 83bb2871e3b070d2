"""The running app over HTTP: statuses, bodies, headers, and URLs made by client libraries."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

import pytest
from yarl import URL

from conftest import TEST_KEY, TEST_SALT, signed
from imagegen import jpeg, load, png_alpha
from vipsgate.signing import sign

KLEN_KEY, KLEN_SALT = "aa396160c50ea766910eab53", "b3fb8f215827bda5d0e7313d"


async def raw(client, path: str, method: str = "GET"):  # type: ignore[no-untyped-def]
    """Send ``path`` byte for byte: the test client's URL class would re-quote it
    (``%40`` -> ``@``, ``%3A`` -> ``:``, ``..`` resolved), as many HTTP libraries do."""
    url = URL(str(client.make_url("/")).rstrip("/") + path, encoded=True)
    return await client.session.request(method, url)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def directives(cache_control: str) -> set[str]:
    return {part.strip() for part in cache_control.split(",")}


@pytest.fixture
def pictures(images):  # type: ignore[no-untyped-def]
    (images / "a.jpg").write_bytes(jpeg(200, 100))
    (images / "big.jpg").write_bytes(jpeg(800, 400))
    (images / "alpha.png").write_bytes(png_alpha(120, 80))
    (images / "im@age.jpg").write_bytes(jpeg(40, 20))
    (images / "sp ace.jpg").write_bytes(jpeg(40, 20))
    (images / "not-an-image.jpg").write_bytes(b"<html><body>hello</body></html>")
    (images / "empty.jpg").write_bytes(b"")
    (images / "truncated.jpg").write_bytes(jpeg(400, 300)[:2000])
    return images


# --- success responses ------------------------------------------------------------------

async def test_success_headers(make_client, pictures):
    client = await make_client()
    response = await client.get(signed("/rs:fit:100:100/plain/local:///a.jpg"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert directives(response.headers["Cache-Control"]) == {"public", "max-age=31536000"}
    assert response.headers["Content-Disposition"] == 'inline; filename="a.jpg"'
    assert "Expires" not in response.headers
    body = await response.read()
    assert int(response.headers["Content-Length"]) == len(body)
    assert (load(body).width, load(body).height) == (100, 50)


async def test_ttl_setting_and_expiring_urls(make_client, pictures):
    client = await make_client(IMGPROXY_TTL="60")
    response = await client.get(signed("/plain/local:///a.jpg"))
    assert directives(response.headers["Cache-Control"]) == {"public", "max-age=60"}
    client = await make_client()
    soon = int(time.time()) + 30
    response = await client.get(signed(f"/exp:{soon}/plain/local:///a.jpg"))
    assert response.status == 200
    max_age = next(int(d[8:]) for d in directives(response.headers["Cache-Control"])
                   if d.startswith("max-age="))
    assert 0 < max_age <= 30
    response = await client.get(signed("/exp:1609448400/plain/local:///a.jpg"))
    assert response.status == 404
    assert "Expired URL" in await response.text()


async def test_content_disposition(make_client, pictures):
    client = await make_client()
    for path, expected in (
        ("/plain/local:///a.jpg@png", 'inline; filename="a.png"'),
        ("/fn:holiday/plain/local:///a.jpg@webp", 'inline; filename="holiday.webp"'),
        (f"/fn:{b64('été')}:1/plain/local:///a.jpg",  # RFC 6266 + 8187 for non-ASCII
         "inline; filename=\"?t?.jpg\"; filename*=UTF-8''%C3%A9t%C3%A9.jpg"),
        ("/att:1/plain/local:///a.jpg", 'attachment; filename="a.jpg"'),
        (f"/{b64('local:///a.jpg')}.png", 'inline; filename="a.png"'),
    ):
        response = await client.get(signed(path))
        assert response.status == 200, path
        assert response.headers["Content-Disposition"] == expected, path
    client = await make_client(IMGPROXY_RETURN_ATTACHMENT="true")
    response = await client.get(signed("/plain/local:///a.jpg"))
    assert response.headers["Content-Disposition"] == 'attachment; filename="a.jpg"'


async def test_head_answers_like_get_without_a_body(make_client, pictures):
    client = await make_client()
    url = signed("/rs:fit:50:50/plain/local:///a.jpg@png")
    get = await client.get(url)
    get_body = await get.read()
    head = await client.head(url)
    assert head.status == 200
    assert await head.read() == b""
    for name in ("Content-Type", "Content-Length", "Cache-Control", "ETag",
                 "Content-Disposition"):
        assert head.headers.get(name) == get.headers.get(name), name
    assert int(head.headers["Content-Length"]) == len(get_body)
    bad = await client.head("/nope/rs:fit:50:50/plain/local:///a.jpg")
    assert bad.status == 403


async def test_health(make_client):
    client = await make_client()
    response = await client.get("/health")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "running" in await response.text()


async def test_request_query_string_is_not_signed(make_client, pictures):
    client = await make_client()
    response = await client.get(signed("/rs:fit:10:10/plain/local:///a.jpg") + "?utm=1&x=%3F")
    assert response.status == 200


async def test_source_query_survives_plain_and_base64(make_client, pictures):
    client = await make_client()
    for path in ("/rs:fit:10:10/plain/local:///a.jpg%3Fv%3D2",
                 f"/rs:fit:10:10/{b64('local:///a.jpg?v=2')}"):
        response = await raw(client, signed(path))
        assert response.status == 200, path


async def test_escaped_file_names(make_client, pictures):
    client = await make_client()
    for path in ("/plain/local:///im%40age.jpg", "/plain/local:///sp%20ace.jpg@png",
                 f"/{b64('local:///im@age.jpg')}"):
        response = await raw(client, signed(path))
        assert response.status == 200, path


# --- errors ---------------------------------------------------------------------------

async def _error(client, path: str, status: int) -> str:  # type: ignore[no-untyped-def]
    response = await raw(client, path)
    assert response.status == status, (path, await response.text())
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "Cache-Control" not in response.headers
    return await response.text()


async def test_bad_signatures_are_403(make_client, pictures):
    client = await make_client()
    good = signed("/rs:fit:10:10/plain/local:///a.jpg")
    sig, rest = good[1:].split("/", 1)
    for path in (f"/insecure/{rest}", f"/bad-signature/{rest}", f"/{sig}=/{rest}",
                 f"/{sig}/rs:fit:10:11/plain/local:///a.jpg", f"/{sig[:11]}/{rest}"):
        assert "Forbidden" in await _error(client, path, 403)


async def test_invalid_urls_are_404_with_a_reason(make_client, pictures):
    client = await make_client()
    cases = {
        "/foo:1/plain/local:///a.jpg": "Unknown processing option foo",
        "/w:abc/plain/local:///a.jpg": "Invalid width: abc",
        "/plain/local:///a.jpg@bmpx": "Invalid image format in extension: bmpx",
        "/rs:fit:10:10/%%%": "Invalid url encoding",
        "/fill/300/200/plain/local:///a.jpg": "deprecated basic URL format",
    }
    for path, reason in cases.items():
        body = await _error(client, signed(path), 404)
        assert body.strip() == f"Invalid URL: {reason}", path
        assert body.count("\n") == 1
    assert (await _error(client, "/onlyasignature", 404)).startswith("Invalid URL")


async def test_security_option_without_permission_is_403(make_client, pictures):
    client = await make_client()
    await _error(client, signed("/mrd:10/plain/local:///a.jpg"), 403)


async def test_missing_local_file_is_404(make_client, pictures):
    client = await make_client()
    await _error(client, signed("/plain/local:///missing.jpg"), 404)
    await _error(client, signed("/plain/local:///../../etc/passwd"), 404)
    await _error(client, signed("/plain/local:///"), 404)


async def test_undecodable_sources_are_422(make_client, pictures):
    client = await make_client()
    for name in ("not-an-image.jpg", "empty.jpg", "truncated.jpg"):
        await _error(client, signed(f"/rs:fit:50:50/plain/local:///{name}"), 422)


async def test_bad_input_never_answers_500(make_client, pictures):
    client = await make_client()
    paths = ["/x", "/a/b", "/a/:", "/a/plain", "/a/plain/", "/a/w:1", "/a/w:/plain/x",
             "/a/rs:::::::::/plain/x", "/a/%ZZ/plain/x", "/a/plain/%ZZ", "/a/g:fp:nan:nan/x",
             "/a/dpr:inf/plain/x", "/a/z:-1/plain/x", "/a/c:-5/plain/x", "/a/bg:zzzzzz/plain/x",
             "/a/....", "/a/plain/local:///a.jpg@@", "/a/AAAA.", "/a/%2F%2F"]
    for path in paths:
        response = await raw(client, path)
        assert response.status in (403, 404), (path, response.status)
    for path in [signed(p[2:]) for p in paths if p.startswith("/a/")]:
        response = await raw(client, path)
        assert response.status in (403, 404, 422), (path, response.status)


async def test_insecure_mode_accepts_any_placeholder(make_client, pictures):
    client = await make_client(IMGPROXY_KEY="", IMGPROXY_SALT="", VIPSGATE_INSECURE="1")
    for placeholder in ("insecure", "unsafe", "_"):
        response = await client.get(f"/{placeholder}/rs:fit:20:20/plain/local:///a.jpg")
        assert response.status == 200
    # a forgotten signature segment is caught instead of parsed as a signature
    response = await client.get("/rs:fit:20:20/plain/local:///a.jpg")
    assert response.status == 403


# --- URLs made by imgproxy client libraries (spec §11) ---------------------------------

def _sign_with(key: str, salt: str, path: str, size: int = 32) -> str:
    return f"/{sign(bytes.fromhex(key), bytes.fromhex(salt), path, size)}{path}"


async def _image(client, url: str, mime: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    response = await raw(client, url)
    assert response.status == 200, (url, await response.text())
    assert response.headers["Content-Type"] == mime
    out = load(await response.read())
    assert (out.width, out.height) == size


async def test_imgproxy_node_style_urls(make_client, pictures):
    """Sorted option names, booleans as t/f, format as an option, unsplit base64."""
    client = await make_client()
    source = b64("local:///a.jpg")
    await _image(client, signed(f"/el:t/f:png/g:no/h:300/rt:fit/w:300/{source}"),
                 "image/png", (300, 150))
    await _image(client, signed(f"/ar:t/cb:clear/ex:t/f:webp/g:noea:10:10/w:300/{source}"),
                 "image/webp", (300, 100))
    insecure = await make_client(IMGPROXY_KEY="", IMGPROXY_SALT="", VIPSGATE_INSECURE="1")
    await _image(insecure, f"/insecure/rs:fill:50:50:t/{source}", "image/jpeg", (50, 50))


async def test_klen_python_style_urls(make_client, pictures):
    """klen/imgproxy always sends g:<gravity>/rs:<type>:<w>:<h>:<0|1> and its own key."""
    client = await make_client(IMGPROXY_KEY=KLEN_KEY, IMGPROXY_SALT=KLEN_SALT)
    source = b64("local:///big.jpg")
    await _image(client, _sign_with(KLEN_KEY, KLEN_SALT, f"/g:ce/rs:auto:600:0:0/{source}"),
                 "image/jpeg", (600, 300))
    await _image(client, _sign_with(KLEN_KEY, KLEN_SALT,
                                    f"/q:80/g:sm/rs:fill:300:200:1/{source}.webp"),
                 "image/webp", (300, 200))
    await _image(client, _sign_with(KLEN_KEY, KLEN_SALT, f"/g:ce/rs:auto:0:0:True/{source}"),
                 "image/jpeg", (800, 400))


async def test_ruby_style_urls(make_client, pictures):
    """imgproxy.rb: short names, plain source fully escaped when needed, @ext, truncation."""
    client = await make_client()
    escaped = quote("local:///im@age.jpg", safe="")  # ERB::Util.url_encode
    assert escaped == "local%3A%2F%2F%2Fim%40age.jpg"
    await _image(client, signed(f"/rs:fill:30:10/plain/{escaped}@webp"), "image/webp", (30, 10))
    await _image(client, signed("/w:20/plain/local:///a.jpg@png"), "image/png", (20, 10))
    short = await make_client(IMGPROXY_SIGNATURE_SIZE="8")
    path = "/rs:fit:50:50/plain/local:///a.jpg"
    await _image(short, _sign_with(TEST_KEY, TEST_SALT, path, 8), "image/jpeg", (50, 25))


async def test_php_style_urls(make_client, pictures):
    """onliner/imgproxy-php: base64 split every 16 characters, or plain with only @ escaped."""
    client = await make_client()
    encoded = b64("local:///big.jpg")
    split = "/".join(encoded[i:i + 16] for i in range(0, len(encoded), 16))
    assert "/" in split
    await _image(client, signed(f"/rs:fill:300:400/{split}.webp"), "image/webp", (300, 400))
    await _image(client, signed("/rs:fill:20:20/plain/local:///im%40age.jpg@png"),
                 "image/png", (20, 20))


async def test_cdn_rewritten_paths(make_client, pictures):
    """%3A in options and a merged // in the source are undone before the signature check."""
    client = await make_client()
    url = signed("/rs:fill:40:20/plain/local:///a.jpg")
    sig = url.split("/")[1]
    await _image(client, f"/{sig}/rs%3Afill%3A40%3A20/plain/local:///a.jpg", "image/jpeg",
                 (40, 20))
    await _image(client, f"/{sig}/rs:fill:40:20/plain/local:/a.jpg", "image/jpeg", (40, 20))
    url = signed(f"/rs:fill:40:20/{b64('local:///a.jpg')}")
    sig, rest = url[1:].split("/", 1)
    await _image(client, f"/{sig}/{rest.replace(':', '%3A')}", "image/jpeg", (40, 20))


async def test_path_prefix(make_client, pictures):
    client = await make_client(IMGPROXY_PATH_PREFIX="/img")
    await _image(client, "/img" + signed("/rs:fit:10:10/plain/local:///a.jpg"), "image/jpeg",
                 (10, 5))
    assert (await client.get("/img/health")).status == 200


async def test_alpha_png_stays_png_with_transparency(make_client, pictures):
    client = await make_client()
    response = await client.get(signed("/rs:fit:60:60/plain/local:///alpha.png"))
    assert response.headers["Content-Type"] == "image/png"
    out = load(await response.read())
    assert out.hasalpha()
    assert out.getpoint(0, 0)[3] == 0

"""Origin protection: the shared secret (only the CDN knows it) and client CIDRs."""

from __future__ import annotations

import pytest

from conftest import signed
from imagegen import jpeg

SECRET = "cdn-only-5f1d0c"
URL = "/rs:fit:40:40/plain/local:///cat.jpg"


@pytest.fixture(autouse=True)
def cat(images):  # type: ignore[no-untyped-def]
    (images / "cat.jpg").write_bytes(jpeg(120, 90))


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", f"Bearer {SECRET[:-1]}", f"Bearer {SECRET}x", f"bearer {SECRET}",
    SECRET, f"Basic {SECRET}", f"Bearer  {SECRET}",
])
async def test_a_wrong_or_missing_secret_is_403(make_client, authorization):
    client = await make_client(IMGPROXY_SECRET=SECRET)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(signed(URL), headers=headers)
    assert response.status == 403
    assert "image" not in response.headers.get("Content-Type", "")


async def test_the_secret_lets_the_cdn_in(make_client):
    client = await make_client(IMGPROXY_SECRET=SECRET)
    response = await client.get(signed(URL), headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"


async def test_the_secret_is_checked_before_the_signature(make_client):
    """Without the secret, a valid and an invalid signature get the same answer."""
    client = await make_client(IMGPROXY_SECRET=SECRET)
    good = await client.get(signed(URL))
    bad = await client.get("/badsignature" + URL)
    assert (good.status, await good.text()) == (bad.status, await bad.text())
    assert good.status == 403


async def test_probes_do_not_need_the_secret(make_client):
    client = await make_client(IMGPROXY_SECRET=SECRET)
    assert (await client.get("/health")).status == 200
    assert (await client.get("/ready")).status == 200


async def test_a_client_outside_the_allowed_networks_is_403(make_client):
    client = await make_client(VIPSGATE_ALLOWED_CLIENT_CIDRS="10.0.0.0/8, 192.168.0.0/16")
    assert (await client.get(signed(URL))).status == 403
    # a forwarded-for header is not the client's address: it cannot open the door
    spoofed = await client.get(signed(URL), headers={"X-Forwarded-For": "10.1.2.3",
                                                    "Forwarded": "for=10.1.2.3",
                                                    "X-Real-IP": "10.1.2.3"})
    assert spoofed.status == 403


async def test_a_client_inside_the_allowed_networks_is_served(make_client):
    client = await make_client(VIPSGATE_ALLOWED_CLIENT_CIDRS="10.0.0.0/8,127.0.0.0/8")
    assert (await client.get(signed(URL))).status == 200


async def test_secret_and_networks_both_apply(make_client):
    client = await make_client(IMGPROXY_SECRET=SECRET, VIPSGATE_ALLOWED_CLIENT_CIDRS="::1/128")
    response = await client.get(signed(URL), headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status == 403  # right secret, wrong network (the test client is 127.0.0.1)
    client = await make_client(IMGPROXY_SECRET=SECRET,
                               VIPSGATE_ALLOWED_CLIENT_CIDRS="127.0.0.1/32")
    assert (await client.get(signed(URL))).status == 403  # right network, no secret
    response = await client.get(signed(URL), headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status == 200

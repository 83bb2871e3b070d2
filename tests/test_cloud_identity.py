"""Azure without a key: ``DefaultAzureCredential`` ends at the managed identity, whose
token vipsgate sends to an Azurite that checks it (``--oauth basic``: issuer, audience
and lifetime, not the signature), over HTTPS as Azure requires for bearer tokens.
The identity endpoint is App Service's protocol (``IDENTITY_ENDPOINT``,
``IDENTITY_HEADER``) served on 127.0.0.1; the certificate is made here and trusted
through ``SSL_CERT_FILE``.
(GKE's metadata server is in test_sources_gcs.py.)"""

from __future__ import annotations

import datetime
import ipaddress
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web
from cloud_fixtures import AZURITE_NAME, BUCKET, Azurite, arrange, azurite_binary

from conftest import signed
from vipsgate.paths import encode_source

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_a_managed_identity_reads_abs_sources(serve, origin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    binary = azurite_binary()
    pytest.importorskip("azure.identity.aio", reason="azure-identity is not installed")
    cert, key = certificate(tmp_path)
    asked: list[tuple[str | None, str | None]] = []

    async def identity(request: web.Request) -> web.Response:
        asked.append((request.headers.get("X-IDENTITY-HEADER"), request.query.get("resource")))
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{TENANT}/",
                  "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "tid": TENANT}
        token = jwt.encode(claims, "Azurite decodes this token, its signature unchecked",
                           algorithm="HS256")
        return web.json_response({"access_token": token, "expires_on": str(now + 3600),
                                  "resource": "https://storage.azure.com",
                                  "token_type": "Bearer"})

    origin.route("/msi/token", identity)
    extra = ("--cert", str(cert), "--key", str(key), "--oauth", "basic")
    with Azurite(binary, tmp_path, extra, scheme="https") as azurite:
        world = arrange(azurite.endpoint, connection_verify=str(cert))
        server = serve(IMGPROXY_USE_ABS="1", IMGPROXY_ABS_NAME=AZURITE_NAME,
                       IMGPROXY_ABS_ENDPOINT=azurite.endpoint,
                       IDENTITY_ENDPOINT=origin.url("/msi/token"), IDENTITY_HEADER="secret-h",
                       SSL_CERT_FILE=str(cert), VIPSGATE_SOURCE_CACHE_BYTES="0",
                       VIPSGATE_RESULT_CACHE_BYTES="0")
        async with aiohttp.ClientSession() as session:
            for width in (20, 21):
                path = signed(f"/rs:fit:{width}:{width}/"
                              + encode_source(f"abs://{BUCKET}/photos/cat.jpg"))
                async with session.get(server.url(path)) as response:
                    assert response.status == 200, (asked, server.stderr.text[-3000:])
        world.service.close()
    assert asked == [("secret-h", "https://storage.azure.com")]  # one token, cached

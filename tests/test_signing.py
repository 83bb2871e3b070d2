"""URL signatures: imgproxy's published test vectors (spec §2.2) and verification rules."""

from __future__ import annotations

import pytest

from vipsgate.signing import Signer, sign

KEY2 = "943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881"
SALT2 = "520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5"
TK, TS = b"test-key".hex(), b"test-salt".hex()

# (key hex, salt hex, signed path, size, expected): every row of spec §2.2, plus klen's 600px URL
VECTORS = [
    ("736563726574", "68656C6C6F",
     "/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png", 32,
     "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8"),
    (KEY2, SALT2, "/rs:fit:300:300/plain/http://img.example.com/pretty/image.jpg", 32,
     "m3k5QADfcKPDj-SDI2AIogZbC3FlAXszuwhtWXYqavc"),
    (TK, TS, "asd", 32, "oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20"),
    (TK, TS, "asd", 8, "oWaL7QoW5Ts"),
    (b"test-key2".hex(), b"test-salt2".hex(), "asd", 32,
     "jYz1UZ7j1BCdSzH3pZhaYf0iuz0vusoOTdqJsUT6WXI"),
    (TK, TS, "/rs:fill:4:4/plain/local:///test1.png", 32,
     "My9d3xq_PYpVHsPrCyww0Kh1w5KZeZhIlWhsa4az1TI"),
    ("45a3f8", "eafe30", "/rs:fill:300:400/plain/http://example.com/im%40age.jpg@png", 32,
     "JutKgv7jt6WvIDAEXjd8fSotCJWTgTA-a0A8tMNZAPM"),
    (KEY2, SALT2, "/el:t/f:png/g:no/h:300/rt:fit/w:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9pbWFnZS5qcGc",
     32, "zsdsCjFCqcAniKFCygMBToRh6l5jVZbL0bhrnnUGK58"),
    ("aa396160c50ea766910eab53", "b3fb8f215827bda5d0e7313d",
     "/g:ce/rs:auto:0:0:0/aHR0cHM6Ly9waWNzdW0ucGhvdG9zLzEwMDA", 32,
     "Da25ef1zWhx4P9hhPWGdFRU8_dYcGvloGHvEZ1c3_0o"),
    ("aa396160c50ea766910eab53", "b3fb8f215827bda5d0e7313d",
     "/g:ce/rs:auto:600:0:0/aHR0cHM6Ly9waWNzdW0ucGhvdG9zLzEwMDA", 32,
     "qcKAFfBJwpiKZ6xt-NT6GXGOGizkeq4sgyfoQ4h-080"),
]


@pytest.mark.parametrize(("key", "salt", "path", "size", "expected"), VECTORS)
def test_published_vectors_sign_and_verify(key, salt, path, size, expected):
    assert sign(bytes.fromhex(key), bytes.fromhex(salt), path, size) == expected
    signer = Signer.from_hex([key], [salt], size)
    assert signer.sign(path) == expected
    assert signer.verify(expected, path if path.startswith("/") else "/" + path)


def test_a_changed_path_or_signature_fails():
    signer = Signer.from_hex([TK], [TS])
    good = "My9d3xq_PYpVHsPrCyww0Kh1w5KZeZhIlWhsa4az1TI"
    assert signer.verify(good, "/rs:fill:4:4/plain/local:///test1.png")
    assert not signer.verify(good, "/rs:fill:4:5/plain/local:///test1.png")
    assert not signer.verify(good[:-1] + "J", "/rs:fill:4:4/plain/local:///test1.png")
    assert not signer.verify("unsafe", "/rs:fill:4:4/plain/local:///test1.png")
    assert not signer.verify("", "/rs:fill:4:4/plain/local:///test1.png")


def test_padding_and_non_canonical_base64_are_rejected():
    signer = Signer.from_hex([TK], [TS], 8)
    assert signer.verify("oWaL7QoW5Ts", "/asd")
    assert not signer.verify("oWaL7QoW5Ts=", "/asd")  # RawURLEncoding: no padding
    assert not signer.verify("oWaL7QoW5T!s", "/asd")  # junk characters are not skipped
    full = Signer.from_hex([TK], [TS])
    good = "oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20"
    assert full.verify(good, "/asd")
    assert not full.verify(good.replace("-", "+"), "/asd")  # standard alphabet is not base64url


def test_truncated_signature_needs_the_configured_size():
    full = Signer.from_hex([TK], [TS])
    assert not full.verify("oWaL7QoW5Ts", "/asd")  # 8-byte signature, server expects 32
    assert Signer.from_hex([TK], [TS], 8).sign("/asd") == "oWaL7QoW5Ts"


def test_any_of_several_pairs_verifies_and_the_first_signs():
    signer = Signer.from_hex([TK, b"test-key2".hex()], [TS, b"test-salt2".hex()])
    assert signer.verify("oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20", "/asd")
    assert signer.verify("jYz1UZ7j1BCdSzH3pZhaYf0iuz0vusoOTdqJsUT6WXI", "/asd")
    assert signer.sign("/asd") == "oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20"
    # a key is only valid with its own salt
    crossed = Signer.from_hex([TK], [b"test-salt2".hex()])
    assert not crossed.verify("oWaL7QoW5TsgbuiS9-5-DI8S3Ibbo1gdB2SteJh3a20", "/asd")


def test_trusted_signatures_pass_without_hmac():
    signer = Signer.from_hex([TK], [TS], trusted=["truested"])
    assert signer.verify("truested", "/anything")
    assert not signer.verify("untrusted", "/anything")


def test_without_a_key_any_placeholder_passes():
    signer = Signer()
    assert not signer.enabled
    assert signer.sign("/x") == "insecure"
    for placeholder in ("insecure", "unsafe", "_", "whatever"):
        assert signer.verify(placeholder, "/rs:fit:1:1/plain/local:///a.jpg")


def test_key_and_salt_lists_must_match():
    with pytest.raises(ValueError):
        Signer.from_hex([TK, TK], [TS])

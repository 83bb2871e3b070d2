"""imgproxy-compatible URL signatures: base64url(HMAC-SHA256(key, salt + path)).

Standard library only, so backend code can vendor it. Several key/salt pairs
may be configured (rotation); any one of them verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(key: bytes, salt: bytes, path: str, size: int = 32) -> str:
    """Signature text for ``path`` (everything after the signature segment)."""
    if not path.startswith("/"):
        path = "/" + path
    digest = hmac.new(key, salt + path.encode("utf-8"), hashlib.sha256).digest()
    return _b64(digest[:size])


@dataclass(frozen=True)
class Signer:
    """Key/salt pairs (first one signs, all verify), truncation, trusted list."""

    pairs: tuple[tuple[bytes, bytes], ...] = ()
    size: int = 32
    trusted: frozenset[str] = frozenset()

    @classmethod
    def from_hex(cls, keys: Sequence[str], salts: Sequence[str], size: int = 32,
                 trusted: Sequence[str] = ()) -> Signer:
        if len(keys) != len(salts):
            raise ValueError("the number of keys and salts differ")
        pairs = tuple((bytes.fromhex(k), bytes.fromhex(s))
                      for k, s in zip(keys, salts, strict=True))
        return cls(pairs, size, frozenset(trusted))

    @property
    def enabled(self) -> bool:
        return bool(self.pairs)

    def sign(self, path: str) -> str:
        if not self.enabled:
            return "insecure"
        key, salt = self.pairs[0]
        return sign(key, salt, path, self.size)

    def verify(self, signature: str, path: str) -> bool:
        """True when ``signature`` is valid for ``path`` under any pair."""
        if not self.enabled:
            return True
        if signature in self.trusted:
            return True
        try:
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except (ValueError, TypeError):
            return False
        if "=" in signature or _b64(given) != signature:
            return False  # imgproxy decodes RawURLEncoding: no padding, canonical only
        if not path.startswith("/"):
            path = "/" + path
        message_tail = path.encode("utf-8")
        ok = False
        for key, salt in self.pairs:
            expected = hmac.new(key, salt + message_tail, hashlib.sha256).digest()[: self.size]
            ok |= hmac.compare_digest(expected, given)
        return ok

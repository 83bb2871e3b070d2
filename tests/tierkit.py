"""Helpers of the shared-tier tests: an origin that counts its hits, a rotated key,
and what a pod's tier and metrics say."""

from __future__ import annotations

import socket

from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from vipsgate.app import METRICS, TIER
from vipsgate.signing import Signer
from vipsgate.tier import SharedCache

ROTATED_KEY, ROTATED_SALT = "ab" * 32, "cd" * 32
ROTATED = Signer.from_hex([ROTATED_KEY], [ROTATED_SALT])
WEBP, ANY = "image/webp,*/*;q=0.8", "*/*"
TIER_BUCKET = "vg-tier"
SAME_HEADERS = ("ETag", "Last-Modified", "Content-Type", "Cache-Control", "Vary",
                "Content-Disposition")


def rotated(path: str) -> str:
    return f"/{ROTATED.sign(path)}{path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rotated_pod_env() -> dict[str, str]:
    return {"IMGPROXY_KEY": ROTATED_KEY, "IMGPROXY_SALT": ROTATED_SALT}


def tier_of(client: TestClient) -> SharedCache:
    tier = client.server.app[TIER]
    assert isinstance(tier, SharedCache)
    return tier


def sample(client: TestClient, name: str, **labels: str) -> float:
    value = client.server.app[METRICS].registry.get_sample_value(name, labels)
    return value or 0.0


def lookups(client: TestClient, outcome: str) -> float:
    return sample(client, "vipsgate_tier_lookups_total", tier=tier_of(client).name,
                  outcome=outcome)


def writes(client: TestClient, outcome: str) -> float:
    return sample(client, "vipsgate_tier_writes_total", tier=tier_of(client).name,
                  outcome=outcome)


def processed(client: TestClient) -> float:
    return sample(client, "vipsgate_stage_duration_seconds_count", stage="process")


async def get(client: TestClient, path: str, accept: str = ANY, **headers: str
              ) -> tuple[int, CIMultiDict[str], bytes]:
    async with client.get(path, headers={"Accept": accept, **headers}) as answer:
        return answer.status, answer.headers.copy(), await answer.read()

"""Shared test harness: settings, a real app on 127.0.0.1, signing, image helpers."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")
os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")

import pytest
import pyvips
from aiohttp.test_utils import TestClient

from vipsgate.config import Settings, from_env
from vipsgate.server import create_app
from vipsgate.signing import Signer

pyvips.cache_set_max(0)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
TEST_KEY = "943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881"
TEST_SALT = "520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5"


def make_settings(images: Path | None = None, **env: str) -> Settings:
    """Settings as the server would read them from ``env`` (plus a test key/salt)."""
    base = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT, "IMGPROXY_WORKERS": "2"}
    if images is not None:
        base["IMGPROXY_LOCAL_FILESYSTEM_ROOT"] = str(images)
    base.update(env)
    return from_env(base)


SIGNER = Signer.from_hex([TEST_KEY], [TEST_SALT])


def signed(path: str) -> str:
    """``/<signature>/path`` for the test key."""
    path = path if path.startswith("/") else "/" + path
    return f"/{SIGNER.sign(path)}{path}"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """An empty directory served as ``local:///``; tests write images into it."""
    root = tmp_path / "images"
    root.mkdir()
    return root


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client, images: Path) -> ClientFactory:  # type: ignore[no-untyped-def]
    """``await make_client(**env)``: the real app on 127.0.0.1 with these settings."""
    async def factory(**env: str) -> TestClient:
        return await aiohttp_client(create_app(make_settings(images, **env)))
    return factory


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not present")
    return CORPUS

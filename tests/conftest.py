"""Shared test harness: settings, a real app on 127.0.0.1, signing, image helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")
os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from vipsgate.app import SETTINGS, VERIFIER, create_app
from vipsgate.config import Settings, from_env
from vipsgate.negotiate import FormatPolicy, negotiate
from vipsgate.paths import parse_path
from vipsgate.processing import Result, process
from vipsgate.processing.vips import init as init_libvips
from vipsgate.resolve import Effective, resolve
from vipsgate.results import ResultKey, result_key
from vipsgate.signing import Signer
from vipsgate.verify import parser_config

init_libvips()  # as the worker pool does

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


def key_for(app: web.Application, path: str, accept: str = "") -> ResultKey:
    """The result-cache key ``app`` uses for the signed ``path`` (without signature)."""
    settings = app[SETTINGS]
    parsed = parse_path(path, app[VERIFIER].parser)
    policy = negotiate(parsed.options.format, accept, auto_webp=settings.auto_webp,
                       auto_avif=settings.auto_avif, enforce_webp=settings.enforce_webp,
                       enforce_avif=settings.enforce_avif)
    return result_key(resolve(parsed.options, settings), parsed.source, policy.key)


async def wait_until(condition: Callable[[], object], timeout: float = 10.0,
                     interval: float = 0.002) -> None:
    """Poll a condition that no event announces (bounded), yielding to the event loop."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(interval)


def effective(options: str = "", fmt: str | None = None, **env: str) -> Effective:
    """The effective options of a URL with ``options`` (``"rs:fit:10:10/q:50"``) under
    the settings ``env`` would give: the production path, settings table included."""
    path = (f"/{options}" if options else "") + "/plain/local:///x" + (f"@{fmt}" if fmt else "")
    settings = make_settings(**env)
    parser = dataclasses.replace(parser_config(settings), allow_security_options=True)
    return resolve(parse_path(path, parser).options, settings)


def process_url(data: bytes, options: str = "", fmt: str | None = None,
                watermark: bytes | None = None, **env: str) -> Result:
    """``process`` as the server calls it, for the URL options and format given."""
    return process(data, effective(options, fmt, **env), FormatPolicy(fmt), watermark)


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

"""Two real server processes (``vipsgate serve``) share one tier: pod B, on a rotated
key, serves what pod A rendered without fetching the source or processing it, for an
Accept-negotiated WebP and for the JPEG variant of the same URL, with A's headers."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cloud_fixtures import azurite, gcs  # noqa: F401 - the emulators, for tier_env
from prometheus_client.parser import text_string_to_metric_families
from s3_fixtures import s3  # noqa: F401 - the session's S3 server, for tier_env
from tierkit import ANY, ROTATED_KEY, ROTATED_SALT, SAME_HEADERS, WEBP, free_port, rotated

from conftest import ROOT, TEST_KEY, TEST_SALT, signed, wait_until
from imagegen import jpeg

pytest_plugins = ("tier_fixtures",)


class Pod:
    """``python -m vipsgate serve`` on 127.0.0.1:port, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port, self.log = free_port(), log
        self.env = {**os.environ, "VIPSGATE_LOG_LEVEL": "warning", "IMGPROXY_WORKERS": "2",
                    "IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES": "1", **env}
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Pod:
        with open(self.log, "wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vipsgate", "serve", "--host", "127.0.0.1", "--port",
                str(self.port), "--processes", "1",  # a pod of one process, as the chart's
                env=self.env, cwd=ROOT, stdout=out, stderr=out)

        def ready() -> bool:
            assert self.proc is not None and self.proc.returncode is None, \
                self.log.read_text()[-2000:]
            return b"listening on" in self.log.read_bytes()

        await wait_until(ready, timeout=60, interval=0.05)
        return self

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(20):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def metric(self, session: aiohttp.ClientSession, name: str, **labels: str) -> float:
        """One sample of this pod's /metrics (0 when absent)."""
        async with session.get(f"{self.base}/metrics") as answer:
            text = await answer.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


@pytest.fixture
async def pods(tmp_path: Path) -> AsyncIterator[list[Pod]]:
    started: list[Pod] = []
    yield started
    for pod in started:
        await pod.stop()


async def test_pod_b_serves_what_pod_a_rendered(pods, origin, tier_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = origin.add("/cat.jpg", jpeg(400, 300), ETag='"v1"',
                     **{"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    path = f"/rs:fill:120:80/plain/{url}"
    key_a = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT}
    key_b = {"IMGPROXY_KEY": ROTATED_KEY, "IMGPROXY_SALT": ROTATED_SALT}
    pods.append(a := Pod({**tier_env, **key_a}, tmp_path / "a.log"))
    pods.append(b := Pod({**tier_env, **key_b}, tmp_path / "b.log"))
    await asyncio.gather(a.start(), b.start())
    tier = tier_env["IMGPROXY_CACHE_USE"]
    async with aiohttp.ClientSession() as session:
        first = {}
        for accept in (WEBP, ANY):
            async with session.get(a.base + signed(path), headers={"Accept": accept}) as answer:
                first[accept] = (answer.status, answer.headers.copy(), await answer.read())
        assert [first[accept][1]["Content-Type"] for accept in (WEBP, ANY)] == \
            ["image/webp", "image/jpeg"]

        async with asyncio.timeout(30):  # write-behind: wait for A's two writes
            while await a.metric(session, "vipsgate_tier_writes_total", tier=tier,
                                 outcome="stored") != 2:
                await asyncio.sleep(0.05)  # polling another process's counter

        for accept, (status, headers, body) in first.items():
            async with session.get(b.base + rotated(path), headers={"Accept": accept}) as answer:
                assert (answer.status, await answer.read()) == (status, body)
                assert [answer.headers.get(h) for h in SAME_HEADERS] == \
                    [headers[h] for h in SAME_HEADERS]
        processed = await b.metric(session, "vipsgate_stage_duration_seconds_count",
                                   stage="process")
        hits = await b.metric(session, "vipsgate_tier_lookups_total", tier=tier, outcome="hit")
        rendered = await a.metric(session, "vipsgate_stage_duration_seconds_count",
                                  stage="process")
    assert origin.hits["/cat.jpg"] == 1  # pod B never fetched the source
    assert (processed, hits, rendered) == (0, 2, 2)  # nor processed it: pod A did


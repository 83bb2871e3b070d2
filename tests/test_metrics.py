"""/metrics after known traffic: counters and histograms move by exactly that traffic,
and the scrape-time gauges read the live caches, queue and workers."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client.parser import text_string_to_metric_families

from conftest import signed, wait_until
from imagegen import jpeg
from vipsgate.app import METRICS, POOL
from vipsgate.probes import ADMISSION

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client, path: str = "/metrics") -> Samples:  # type: ignore[no-untyped-def]
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_counters_and_histograms_follow_traffic(make_client, images):
    source = jpeg(800, 600)
    (images / "cat.jpg").write_bytes(source)
    client = await make_client()
    before = await scrape(client)
    small, large = (signed(f"/rs:fit:{n}:{n}/plain/local:///cat.jpg") for n in (100, 200))
    bodies = []
    for url in (small, small, large):  # miss, hit, miss (its source is then a cache hit)
        response = await client.get(url)
        assert response.status == 200
        bodies.append(await response.read())
    bad = await client.get("/badsignature/rs:fit:30:30/plain/local:///cat.jpg")
    assert bad.status == 403
    after = await scrape(client)

    assert delta(before, after, "vipsgate_requests_total", status="2xx", format="jpeg") == 3
    assert delta(before, after, "vipsgate_requests_total", status="4xx", format="none") == 1
    assert delta(before, after, "vipsgate_request_duration_seconds_count") == 4
    assert delta(before, after, "vipsgate_errors_total", type="security") == 1
    assert delta(before, after, "vipsgate_cache_requests_total", cache="result",
                 outcome="miss") == 2
    assert delta(before, after, "vipsgate_cache_requests_total", cache="result",
                 outcome="hit") == 1
    assert delta(before, after, "vipsgate_cache_requests_total", cache="source",
                 outcome="miss") == 1
    assert delta(before, after, "vipsgate_cache_requests_total", cache="source",
                 outcome="hit") == 1
    for stage in ("fetch", "queue", "process"):  # two misses went down the pipeline
        assert delta(before, after, "vipsgate_stage_duration_seconds_count", stage=stage) == 2
    assert delta(before, after, "vipsgate_stage_duration_seconds_sum", stage="process") > 0
    assert delta(before, after, "vipsgate_source_bytes_count") == 1
    assert delta(before, after, "vipsgate_source_bytes_sum") == len(source)
    assert delta(before, after, "vipsgate_result_bytes_count") == 3
    assert delta(before, after, "vipsgate_result_bytes_sum") == sum(map(len, bodies))

    # live gauges, read at scrape time
    assert value(after, "vipsgate_cache_entries", cache="result") == 2
    assert value(after, "vipsgate_cache_entries", cache="source") == 1
    assert value(after, "vipsgate_cache_bytes", cache="source") >= len(source)
    assert value(after, "vipsgate_cache_bytes", cache="result") >= sum(map(len, bodies[1:]))
    assert value(after, "vipsgate_cache_capacity_bytes", cache="result") == 128 * 1024**2
    assert value(after, "vipsgate_workers") == 2
    assert value(after, "vipsgate_requests_in_flight") == 0
    assert value(after, "vipsgate_queue_depth") == 0
    assert value(after, "vipsgate_draining") == 0
    assert value(after, "vipsgate_vips_memory_highwater_bytes") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    build = [k for k in after if k[0] == "vipsgate_build_info"]
    assert build and dict(build[0][1])["libvips"].startswith("8.")


async def test_queue_gauges_coalescing_and_readiness_under_load(make_client, images):
    """One worker, held by the test: a request waits for it, an identical one joins it
    (coalesced), /ready says busy (still 200) and a third URL gets 429."""
    (images / "cat.jpg").write_bytes(jpeg(400, 300))
    client = await make_client(IMGPROXY_WORKERS="1", IMGPROXY_REQUESTS_QUEUE_SIZE="1")
    app = client.server.app
    pool, admission = app[POOL], app[ADMISSION]
    before = await scrape(client)
    release, started = threading.Event(), threading.Event()

    def hold_worker() -> None:
        started.set()
        release.wait(10)

    async def occupy() -> None:
        async with admission.admit():
            await pool.run(hold_worker)

    blocker = asyncio.ensure_future(occupy())
    await wait_until(started.is_set)
    url = signed("/rs:fit:50:50/plain/local:///cat.jpg")
    first = asyncio.ensure_future(client.get(url))
    await wait_until(lambda: admission.admitted == 2)
    # the middleware counts the request and joins the flight without yielding in between
    second = asyncio.ensure_future(client.get(url))
    await wait_until(lambda: app[METRICS].in_flight == 2)
    try:
        busy = await scrape(client)
        assert value(busy, "vipsgate_requests_in_flight") == 2
        assert value(busy, "vipsgate_queue_depth") == 1
        assert value(busy, "vipsgate_workers_busy") == 1
        assert value(busy, "vipsgate_worker_utilization") == 1.0
        assert value(busy, "vipsgate_queue_capacity") == 2
        ready = await client.get("/ready")
        assert ready.status == 200  # load never takes a pod out of the Service
        assert "busy" in await ready.text()
        rejected = await client.get(signed("/rs:fit:60:60/plain/local:///cat.jpg"))
        assert rejected.status == 429
    finally:
        release.set()
    responses = await asyncio.gather(first, second)
    await blocker
    assert [r.status for r in responses] == [200, 200]
    assert (await client.get("/ready")).status == 200
    after = await scrape(client)
    assert delta(before, after, "vipsgate_cache_requests_total", cache="result",
                 outcome="miss") == 1
    assert delta(before, after, "vipsgate_cache_requests_total", cache="result",
                 outcome="coalesced") == 1
    assert delta(before, after, "vipsgate_errors_total", type="queue") == 1
    assert delta(before, after, "vipsgate_requests_total", status="4xx", format="none") == 1
    assert delta(before, after, "vipsgate_requests_total", status="2xx", format="jpeg") == 2
    assert value(after, "vipsgate_requests_in_flight") == 0
    assert value(after, "vipsgate_queue_depth") == 0


async def test_probes_are_not_counted(make_client):
    client = await make_client()
    before = await scrape(client)
    assert (await client.get("/health")).status == 200
    assert (await client.get("/ready")).status == 200
    after = await scrape(client)
    assert delta(before, after, "vipsgate_request_duration_seconds_count") == 0


async def test_metrics_route_moves_to_prometheus_bind(make_client):
    """With IMGPROXY_PROMETHEUS_BIND the main port has no /metrics (the listener itself
    is started by ``vipsgate serve``; see test_shutdown)."""
    client = await make_client(IMGPROXY_PROMETHEUS_BIND="127.0.0.1:0")
    response = await client.get("/metrics")
    assert response.status == 404  # parsed as an (invalid) image URL now
    assert "vipsgate_requests" not in await response.text()

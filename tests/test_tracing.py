"""Optional OpenTelemetry spans: off by default, one span per stage when on."""

from __future__ import annotations

import pytest

from conftest import LOOPBACK, signed
from imagegen import jpeg

otel = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    """The global provider can be set once per process: this module owns it."""
    tracer_provider = otel.TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tracer_provider)
    yield tracer_provider


@pytest.fixture(autouse=True)
def clean():
    EXPORTER.clear()


async def test_spans_per_stage_when_enabled(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(320, 240))
    client = await make_client(VIPSGATE_OTEL="1")
    response = await client.get(signed("/rs:fit:100:100/plain/local:///a.jpg"))
    assert response.status == 200
    spans = {span.name: span for span in EXPORTER.get_finished_spans()}
    assert set(spans) == {"vipsgate.request", "vipsgate.fetch", "vipsgate.process"}
    root = spans["vipsgate.request"]
    for child in ("vipsgate.fetch", "vipsgate.process"):
        assert spans[child].parent.span_id == root.context.span_id
        assert spans[child].context.trace_id == root.context.trace_id
    assert root.attributes["vipsgate.cache"] == "miss"
    assert root.attributes["vipsgate.format"] == "jpeg"
    assert spans["vipsgate.process"].attributes["vipsgate.source.bytes"] > 0

    EXPORTER.clear()
    again = await client.get(signed("/rs:fit:100:100/plain/local:///a.jpg"))
    assert again.status == 200
    names = [span.name for span in EXPORTER.get_finished_spans()]
    assert names == ["vipsgate.request"]  # a cache hit neither fetches nor processes


async def test_errors_are_recorded_on_the_span(make_client):
    client = await make_client(VIPSGATE_OTEL="1")
    response = await client.get(signed("/rs:fit:10:10/plain/local:///missing.jpg"))
    assert response.status == 404
    (span,) = [s for s in EXPORTER.get_finished_spans() if s.name == "vipsgate.request"]
    assert not span.status.is_ok
    assert any(event.name == "exception" for event in span.events)


async def test_no_spans_by_default(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(64, 48))
    client = await make_client()
    response = await client.get(signed("/rs:fit:10:10/plain/local:///a.jpg"))
    assert response.status == 200
    assert EXPORTER.get_finished_spans() == ()


PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_an_incoming_traceparent_is_continued_and_sent_to_origins(make_client, origin):
    """W3C trace context: the request span's parent is the caller's span; the origin's
    request carries the request span's context."""
    url = origin.add("/a.jpg", jpeg(32, 32))
    client = await make_client(VIPSGATE_OTEL="1", **LOOPBACK)
    response = await client.get(signed(f"/rs:fit:8:8/plain/{url}"),
                                headers={"traceparent": PARENT})
    assert response.status == 200
    (root,) = [s for s in EXPORTER.get_finished_spans() if s.name == "vipsgate.request"]
    assert f"{root.context.trace_id:032x}" == PARENT[3:35]
    assert f"{root.parent.span_id:016x}" == PARENT[36:52]
    sent = origin.requests[-1].headers["traceparent"]
    assert sent.split("-")[1] == PARENT[3:35]
    assert sent.split("-")[2] == f"{root.context.span_id:016x}"

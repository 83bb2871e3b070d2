"""Optional OpenTelemetry spans: off by default, one span per stage when on."""

from __future__ import annotations

import pytest

from conftest import signed
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

"""Request metrics counted in batches (``tally.py``) read the same as observed at once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from vipsgate.metrics import Metrics, RequestTrace
from vipsgate.tally import FlushFirst, Tally

BOUNDS = (0.001, 0.01, 0.1, 1.0)
#: below, on and between the bounds, and past the last one (+Inf)
VALUES = [0.0, 0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 1.0, 1.5, 30.0, 0.01]


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    return (Counter("hits", "h", ["kind"], registry=registry),
            Histogram("seconds", "s", ["stage"], buckets=BOUNDS, registry=registry))


def test_a_flushed_tally_exposes_what_observing_each_value_does() -> None:
    direct, batched = CollectorRegistry(), CollectorRegistry()
    tally = Tally()
    batched.register(FlushFirst(tally))
    (counter, histogram), (counter2, histogram2) = _metrics(direct), _metrics(batched)
    for n, value in enumerate(VALUES):
        kind = "even" if n % 2 == 0 else "odd"
        counter.labels(kind).inc()
        histogram.labels(kind).observe(value)
        tally.count(counter2.labels(kind))
        tally.observe(histogram2.labels(kind), value)
    assert generate_latest(batched) == generate_latest(direct)  # collecting flushed it
    assert not tally.counts and not tally.histograms
    tally.observe(histogram2.labels("odd"), 0.5)  # the next batch adds to the last
    histogram.labels("odd").observe(0.5)
    assert generate_latest(batched) == generate_latest(direct)


def test_requests_are_counted_by_the_next_read_of_the_registry() -> None:
    metrics = Metrics(registry=CollectorRegistry())
    trace = RequestTrace(request_id="x", status=200, format="webp", cache="miss",
                         source_cache="miss", source_bytes=5000, bytes=700,
                         stages={"fetch": 0.02, "process": 0.03})
    trace.finish()
    for _ in range(3):
        metrics.observe(trace)
    registry = metrics.registry
    assert registry.get_sample_value("vipsgate_requests_total",
                                     {"status": "2xx", "format": "webp"}) == 3
    assert registry.get_sample_value("vipsgate_stage_duration_seconds_sum",
                                     {"stage": "process"}) == 3 * 0.03
    assert registry.get_sample_value("vipsgate_result_bytes_bucket", {"le": "1024.0"}) == 3
    assert registry.get_sample_value("vipsgate_source_bytes_count") == 3

"""W3C trace context without OpenTelemetry: vipsgate passes a valid ``traceparent`` on
to HTTP origins unchanged (with OpenTelemetry: ``test_tracing.py``)."""

from __future__ import annotations

import pytest

from conftest import LOOPBACK, signed
from imagegen import jpeg
from vipsgate.trace_context import passed_on, valid

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("value", "ok"), [
    (PARENT, True),
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later", True),  # a later version
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", False),  # 00 is exact
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),  # lower-case hex
    ("garbage", False), ("", False),
])
def test_traceparent_validation(value, ok):
    assert valid(value) is ok


def test_tracestate_goes_along_bounded():
    assert passed_on({"traceparent": PARENT, "tracestate": "a=1"}) == {
        "traceparent": PARENT, "tracestate": "a=1"}
    assert passed_on({"traceparent": PARENT, "tracestate": "x" * 600}) == {"traceparent": PARENT}
    assert passed_on({"traceparent": "bad", "tracestate": "a=1"}) == {}


async def test_origins_get_the_incoming_trace_context(make_client, origin):
    url = origin.add("/a.jpg", jpeg(32, 32))
    client = await make_client(**LOOPBACK, VIPSGATE_RESULT_CACHE_BYTES="0",
                               VIPSGATE_SOURCE_CACHE_BYTES="0")
    path = signed(f"/rs:fit:8:8/plain/{url}")
    response = await client.get(path, headers={"traceparent": PARENT, "tracestate": "v=1"})
    assert response.status == 200
    assert origin.requests[-1].headers["traceparent"] == PARENT
    assert origin.requests[-1].headers["tracestate"] == "v=1"
    await client.get(path, headers={"traceparent": "00-broken"})
    assert "traceparent" not in origin.requests[-1].headers
    await client.get(path)
    assert "traceparent" not in origin.requests[-1].headers

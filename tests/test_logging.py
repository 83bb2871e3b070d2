"""Access log: one line per image request, JSON with the documented fields, the request
id echoed, and never a signature or the key."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from conftest import TEST_KEY, TEST_SALT, signed
from imagegen import jpeg
from proxy.middleware import JsonFormatter, configure_logging, redact

FIELDS = {"ts", "level", "logger", "msg", "request_id", "method", "path", "status", "bytes",
          "duration_ms", "stages_ms", "cache", "source_cache", "source", "format"}


@pytest.fixture
def log_lines():  # type: ignore[no-untyped-def]
    """Lines written by the production formatter for the ``vipsgate`` loggers."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("vipsgate")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [line for line in buffer.getvalue().splitlines() if line]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def access(lines: list[str]) -> list[dict]:
    return [entry for entry in map(json.loads, lines) if entry["logger"] == "vipsgate.access"]


async def test_json_line_has_fields_and_no_secrets(make_client, images, log_lines):
    (images / "cat.jpg").write_bytes(jpeg(400, 300))
    client = await make_client(VIPSGATE_LOG_FORMAT="json")
    url = signed("/rs:fit:100:100/plain/local:///cat.jpg")
    response = await client.get(url, headers={"X-Request-ID": "req-42_a"})
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "req-42_a"
    body = await response.read()

    lines = log_lines()
    [line] = access(lines)
    assert set(line) >= FIELDS
    assert line["request_id"] == "req-42_a"
    assert line["method"] == "GET"
    assert line["path"] == "/<sig>/rs:fit:100:100/plain/local:///cat.jpg"
    assert (line["status"], line["bytes"], line["format"]) == (200, len(body), "jpeg")
    assert (line["cache"], line["source_cache"], line["source"]) == ("miss", "miss", "local")
    assert set(line["stages_ms"]) == {"fetch", "queue", "process"}
    assert line["duration_ms"] >= line["stages_ms"]["process"] > 0
    assert "error" not in line
    signature = url.split("/")[1]
    text = "\n".join(lines)
    for secret in (signature, TEST_KEY, TEST_SALT):
        assert secret not in text


async def test_request_id_is_generated_when_missing_or_invalid(make_client, images, log_lines):
    (images / "cat.jpg").write_bytes(jpeg(40, 30))
    client = await make_client(VIPSGATE_LOG_FORMAT="json")
    url = signed("/rs:fit:10:10/plain/local:///cat.jpg")
    plain = await client.get(url)
    hostile = await client.get(url, headers={"X-Request-ID": "x\" injected"})
    ids = [plain.headers["X-Request-ID"], hostile.headers["X-Request-ID"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    assert [line["request_id"] for line in access(log_lines())] == ids


async def test_error_cause_is_logged_once_with_the_request_id(make_client, images, log_lines):
    (images / "broken.jpg").write_bytes(jpeg(40, 30)[:200])
    client = await make_client(VIPSGATE_LOG_FORMAT="json")
    response = await client.get(signed("/rs:fit:10:10/plain/local:///broken.jpg"),
                                headers={"X-Request-ID": "broken-1"})
    assert response.status == 422
    forbidden = await client.get("/not-a-signature/rs:fit:10:10/plain/local:///broken.jpg")
    assert forbidden.status == 403

    lines = log_lines()
    mentioning = [line for line in lines if "broken-1" in line]
    assert len(mentioning) == 1
    line = json.loads(mentioning[0])
    assert (line["status"], line["error"]) == (422, "processing")
    assert line["reason"]
    entries = access(lines)
    assert (entries[1]["status"], entries[1]["error"], entries[1]["reason"]) == \
        (403, "security", "Invalid signature")
    assert "not-a-signature" not in "\n".join(lines)


async def test_probes_are_not_logged(make_client, log_lines):
    client = await make_client(VIPSGATE_LOG_FORMAT="json")
    for path in ("/health", "/ready", "/metrics"):
        assert (await client.get(path)).status == 200
    assert access(log_lines()) == []


async def test_text_format_is_one_readable_line(make_client, images, caplog):
    (images / "cat.jpg").write_bytes(jpeg(40, 30))
    client = await make_client()  # VIPSGATE_LOG_FORMAT=text is the default
    url = signed("/rs:fit:10:10/plain/local:///cat.jpg")
    with caplog.at_level(logging.INFO, logger="vipsgate.access"):
        assert (await client.get(url, headers={"X-Request-ID": "text-1"})).status == 200
    [record] = [r for r in caplog.records if r.name == "vipsgate.access"]
    message = record.getMessage()
    assert message.startswith("text-1 GET /<sig>/rs:fit:10:10/plain/local:///cat.jpg 200 ")
    assert "cache=miss jpeg" in message and url.split("/")[1] not in message


def test_redact_handles_prefix_and_query():
    assert redact("/SIG/rs:fit:1:1/plain/a.jpg?x=1") == "/<sig>/rs:fit:1:1/plain/a.jpg"
    assert redact("/img/SIG/rs:fit:1:1/plain/a.jpg", "/img") == "/img/<sig>/rs:fit:1:1/plain/a.jpg"
    assert redact("/SIG") == "/<sig>"
    assert redact("/health", signed=False) == "/health"


def test_configure_logging_json_on_root(capsys):
    root, vips = logging.getLogger(), logging.getLogger("pyvips")
    saved = (root.handlers[:], root.level, vips.level)
    try:
        configure_logging("info", "json")
        logging.getLogger("vipsgate").warning("hello %s", "there", extra={"request_id": "r1"})
        vips.info("VIPS: chatter")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        vips.setLevel(saved[2])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["level"], entry["msg"], entry["request_id"]) == ("warning", "hello there", "r1")

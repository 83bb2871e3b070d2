"""Access log: one line per image request, JSON with the documented fields, the request
id echoed, and never a signature or the key."""

from __future__ import annotations

import io
import json
import logging
import re
import threading

import pytest

from conftest import TEST_KEY, TEST_SALT, signed
from imagegen import jpeg
from vipsgate import logs
from vipsgate.logs import JsonFormatter, configure_logging
from vipsgate.metrics import RequestTrace
from vipsgate.middleware import redact

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


@pytest.fixture
def restore_logging():  # type: ignore[no-untyped-def]
    """Undo ``configure_logging``: root handlers and level, pyvips' and Azure's levels,
    the sink."""
    root, vips, azure = (logging.getLogger(), logging.getLogger("pyvips"),
                         logging.getLogger("azure"))
    saved = (root.handlers[:], root.level, vips.level, logs._sink, azure.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    vips.setLevel(saved[2])
    logs._sink = saved[3]
    azure.setLevel(saved[4])


def test_configure_logging_json_on_root(capsys, restore_logging):
    configure_logging("info", "json")
    logging.getLogger("vipsgate").warning("hello %s", "there", extra={"request_id": "r1"})
    logging.getLogger("pyvips").info("VIPS: chatter")
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["level"], entry["msg"], entry["request_id"]) == ("warning", "hello there", "r1")


async def test_server_access_log_writes_the_formatters_lines(make_client, images,
                                                             restore_logging):
    """``configure_logging`` (what ``vipsgate serve`` calls) sends access lines to a
    stream directly, bypassing ``logging``: the same JSON shape, one line per request."""
    (images / "cat.jpg").write_bytes(jpeg(40, 30))
    stream = io.StringIO()
    configure_logging("info", "json", access_stream=stream)
    client = await make_client(VIPSGATE_LOG_FORMAT="json")
    url = signed("/rs:fit:10:10/plain/local:///cat.jpg")
    for request_id in ("sink-1", "sink-2"):
        response = await client.get(url, headers={"X-Request-ID": request_id})
        assert response.status == 200
        await response.read()
    logs.flush_access_log()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["sink-1", "sink-2"]
    assert all(set(line) >= FIELDS and line["logger"] == "vipsgate.access" for line in lines)
    assert [line["cache"] for line in lines] == ["miss", "hit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["ts"])


async def test_server_access_log_text_and_level(make_client, images, restore_logging):
    (images / "cat.jpg").write_bytes(jpeg(40, 30))
    stream = io.StringIO()
    configure_logging("info", "text", access_stream=stream)
    client = await make_client()
    url = signed("/rs:fit:10:10/plain/local:///cat.jpg")
    assert (await client.get(url, headers={"X-Request-ID": "text-2"})).status == 200
    logs.flush_access_log()
    [line] = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO vipsgate\.access: "
                        r"text-2 GET /<sig>/rs:fit:10:10/plain/local:///cat\.jpg 200 \d+B "
                        r"[\d.]+ms cache=miss jpeg .*", line)
    configure_logging("warning", "text", access_stream=stream)  # access lines are INFO
    assert (await client.get(url)).status == 200
    logs.flush_access_log()
    assert len(stream.getvalue().splitlines()) == 1


async def test_access_log_keeps_every_line_when_flushed_from_another_thread():
    """Other log records flush the access lines from whatever thread logs them (libvips
    warnings come from worker threads): no line may be lost or written twice."""
    stream = io.StringIO()
    sink = logs.AccessLog(stream)
    asked = threading.Semaphore(0)  # one release per flush asked of the other thread
    done = threading.Event()

    def flusher() -> None:
        while asked.acquire(timeout=10) and not done.is_set():
            sink.flush()  # runs while the test thread writes the next lines

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        for n in range(3000):
            sink.write(RequestTrace(request_id=f"{n:012d}", status=200), "text")
            asked.release()
    finally:
        done.set()
        asked.release()
        thread.join(10)
    assert not thread.is_alive()
    sink.flush()
    ids = [line.split(": ", 1)[1].split()[0] for line in stream.getvalue().splitlines()]
    assert ids == [f"{n:012d}" for n in range(3000)]

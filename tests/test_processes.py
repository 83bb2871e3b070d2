"""``vipsgate serve --processes N``: N servers share one port; the parent supervises."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import TEST_KEY, TEST_SALT, ServerProcess, signed, wait_for
from imagegen import jpeg
from vipsgate import __version__
from vipsgate.config import available_cpus, from_env
from vipsgate.errors import ConfigError
from vipsgate.memory_budget import auto_limit
from vipsgate.serve import share


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        found.update(int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


@pytest.fixture
def server(serve, tmp_path: Path) -> ServerProcess:  # type: ignore[no-untyped-def]
    """Two server processes on one fixed port (each prints its banner once it listens)."""
    return serve(processes=2, IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(tmp_path),
                 VIPSGATE_LOG_LEVEL="warning")


def test_two_processes_share_the_port_and_stop_together(server: ServerProcess) -> None:
    assert len(server.pids) == 2 and _children(server.pid) == server.pids
    with urllib.request.urlopen(server.url("/health"), timeout=10) as answer:
        assert answer.status == 200
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in server.pids)  # reaped by the parent


def test_the_supervisor_holds_no_server_code(server: ServerProcess) -> None:
    """After forking, the parent becomes ``supervise.py``: no libvips, no aiohttp."""
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert b"vipsgate.supervise" in cmdline
    maps = Path(f"/proc/{server.pid}/maps").read_text()
    assert "libvips" not in maps and "aiohttp" not in maps
    assert "libvips" in Path(f"/proc/{min(server.pids)}/maps").read_text()  # the servers


def test_metrics_of_all_processes_in_every_scrape(server: ServerProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each request and scrape opens its own connection, so SO_REUSEPORT spreads them
    over both processes; every scrape still counts all requests and all workers."""
    (tmp_path / "cat.jpg").write_bytes(jpeg(64, 48))
    base = server.base_url
    for n in range(20):
        with urllib.request.urlopen(base + signed(f"/rs:fit:{10 + n}:10/plain/local:///cat.jpg"),
                                    timeout=10) as answer:
            assert answer.status == 200
    per_process = from_env({"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
                            "VIPSGATE_PROCESSES": "2"}).worker_count

    def scrape() -> dict:  # type: ignore[type-arg]
        with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(answer.read().decode())
                    for s in family.samples}

    result_entries = ("vipsgate_cache_entries", (("cache", "result"),))
    # live gauges of the other process: published each second
    wait_for(lambda: scrape().get(result_entries) == 20, 10, interval=0.05,
             what="the other process publishing its gauges")
    for _ in range(10):
        samples = scrape()
        assert samples[("vipsgate_requests_total", (("format", "jpeg"), ("status", "2xx")))] \
            == 20
        assert samples[("vipsgate_workers", ())] == 2 * per_process
        assert samples[result_entries] == 20
        assert samples[("vipsgate_worker_utilization", ())] == 0.0
        assert ("vipsgate_build_info", (("libvips", samples_libvips(samples)),
                                        ("version", __version__))) in samples
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0


def samples_libvips(samples: dict) -> str:  # type: ignore[type-arg]
    [version] = [dict(labels)["libvips"] for name, labels in samples
                 if name == "vipsgate_build_info"]
    return version


def test_a_crashed_process_stops_the_server_with_an_error(server: ServerProcess) -> None:
    os.kill(min(server.pids), signal.SIGKILL)
    assert server.wait(20) == 1  # the orchestrator restarts the whole server


def test_processes_setting_is_validated() -> None:
    base = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT}
    settings = from_env({**base, "VIPSGATE_PROCESSES": "2", "IMGPROXY_WORKERS": "0"})
    assert settings.processes == 2
    assert settings.worker_count == max(1, 2 * available_cpus() // 2)
    with pytest.raises(ConfigError, match="VIPSGATE_PROCESSES"):
        from_env({**base, "VIPSGATE_PROCESSES": "-1"})


def test_by_default_one_process_per_cpu() -> None:
    settings = from_env({"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT})
    assert settings.processes == 0 and settings.process_count == available_cpus()
    assert from_env({"VIPSGATE_PROCESSES": "3"}).process_count == 3


def test_each_process_gets_its_share_of_the_totals(tmp_path: Path) -> None:
    """Caches, the memory budget (``auto`` fitted to the cgroup limit once, for all) and
    the queue are totals for the server."""
    limit = tmp_path / "memory.max"
    limit.write_text(str(2**30))
    settings = from_env({"IMGPROXY_REQUESTS_QUEUE_SIZE": "65", "VIPSGATE_MEMORY_BUDGET": "90m"})
    one = share(settings, 3)
    assert one.result_cache_bytes == settings.result_cache_bytes // 3
    assert one.source_cache_bytes == settings.source_cache_bytes // 3
    assert one.memory_budget == 30 * 2**20 and one.requests_queue_size == 22
    unbounded = share(from_env({"IMGPROXY_REQUESTS_QUEUE_SIZE": "0",
                                "VIPSGATE_MEMORY_BUDGET": "0"}), 2)
    assert unbounded.requests_queue_size == 0 and unbounded.memory_budget == 0
    caches = settings.result_cache_bytes + settings.source_cache_bytes
    whole = auto_limit(caches, str(limit), runtime=2 * 128 * 2**20)
    auto = dataclasses.replace(settings, memory_budget="auto")
    assert share(auto, 2, str(limit)).memory_budget == whole // 2


def test_children_die_with_a_killed_supervisor(server: ServerProcess) -> None:
    """SIGKILL cannot be forwarded; PR_SET_PDEATHSIG still stops the servers."""
    assert len(server.pids) == 2
    server.signal(signal.SIGKILL)
    server.wait(10)
    # polling /proc with a deadline: no event announces another process's death
    wait_for(lambda: not any(_running(pid) for pid in server.pids), 20, interval=0.05,
             what="the servers stopping")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by init, or by us here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _marked(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (zombies reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if marker.encode() in environ and _running(int(entry)):
                found.append(int(entry))
    return found


@pytest.mark.parametrize("attempt", range(3))
def test_a_stop_while_the_supervisor_starts_stops_all(tmp_path: Path, attempt: int) -> None:
    """SIGTERM as soon as the supervisor is exec'd (before it or the servers handle it):
    it waits, blocked, instead of killing the supervisor and orphaning the servers."""
    import subprocess
    import sys
    import uuid

    marker = f"VIPSGATE_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, "IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
           "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(tmp_path), marker.split("=")[0]: marker}
    process = subprocess.Popen([sys.executable, "-m", "vipsgate", "serve", "--host",
                                "127.0.0.1", "--port", "0", "--processes", "2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # polling /proc: nothing announces another process's exec; the supervisor then
        # starts an interpreter (tens of ms) before it can handle a signal
        wait_for(lambda: b"supervise" in Path(f"/proc/{process.pid}/cmdline").read_bytes(),
                 30, interval=0.001, what="the supervisor's exec")
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        wait_for(lambda: not _marked(marker), 30, interval=0.05, what="every process stopping")
    finally:
        for pid in _marked(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()

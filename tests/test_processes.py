"""``vipsgate serve --processes N``: N servers share one port; the parent supervises."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import TEST_KEY, TEST_SALT, signed
from imagegen import jpeg
from vipsgate import __version__
from vipsgate.config import available_cpus, from_env
from vipsgate.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        found.update(int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, set[int]]]:
    port = _free_port()
    env = {**os.environ, "IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
           "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(tmp_path), "VIPSGATE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "vipsgate", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--processes", "2"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = set()
    try:
        while len(pids) < 2:  # each process prints one line once it listens
            line = proc.stdout.readline()
            assert line, f"server exited early with {proc.wait(10)}"
            if "listening on" in line:
                pids.add(int(line.rsplit("process ", 1)[1].rstrip(")\n")))
        yield proc, port, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def test_two_processes_share_the_port_and_stop_together(server) -> None:  # type: ignore[no-untyped-def]
    proc, port, pids = server
    assert _children(proc.pid) == pids
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        assert answer.status == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # reaped by the parent


def test_metrics_of_all_processes_in_every_scrape(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each request and scrape opens its own connection, so SO_REUSEPORT spreads them
    over both processes; every scrape still counts all requests and all workers."""
    proc, port, _ = server
    (tmp_path / "cat.jpg").write_bytes(jpeg(64, 48))
    base = f"http://127.0.0.1:{port}"
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
    deadline = time.monotonic() + 10  # live gauges of the other process: published each second
    while scrape().get(result_entries) != 20:
        assert time.monotonic() < deadline, "the other process never published its gauges"
    for _ in range(10):
        samples = scrape()
        assert samples[("vipsgate_requests_total", (("format", "jpeg"), ("status", "2xx")))] \
            == 20
        assert samples[("vipsgate_workers", ())] == 2 * per_process
        assert samples[result_entries] == 20
        assert samples[("vipsgate_worker_utilization", ())] == 0.0
        assert ("vipsgate_build_info", (("libvips", samples_libvips(samples)),
                                        ("version", __version__))) in samples
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def samples_libvips(samples: dict) -> str:  # type: ignore[type-arg]
    [version] = [dict(labels)["libvips"] for name, labels in samples
                 if name == "vipsgate_build_info"]
    return version


def test_a_crashed_process_stops_the_server_with_an_error(server) -> None:  # type: ignore[no-untyped-def]
    proc, _, pids = server
    os.kill(min(pids), signal.SIGKILL)
    assert proc.wait(20) == 1  # the orchestrator restarts the whole server


def test_processes_setting_is_validated() -> None:
    base = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT}
    settings = from_env({**base, "VIPSGATE_PROCESSES": "2", "IMGPROXY_WORKERS": "0"})
    assert settings.processes == 2
    assert settings.worker_count == max(1, 2 * available_cpus() // 2)
    with pytest.raises(ConfigError, match="VIPSGATE_PROCESSES"):
        from_env({**base, "VIPSGATE_PROCESSES": "0"})


def test_children_die_with_a_killed_supervisor(server) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL cannot be forwarded; PR_SET_PDEATHSIG still stops the servers."""
    proc, _, pids = server
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 20
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _running(pid)}
        if alive:
            time.sleep(0.05)  # polling /proc with a deadline: no event to wait on
    assert not alive


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

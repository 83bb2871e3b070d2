"""The ``vipsgate`` command line as a new user meets it: --version, --help, sign's checks,
``config --check`` and a closed pipe, start-up warnings, a busy port, ``health``, and
``warm``'s reasons for requests that got no answer."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiohttp.test_utils import TestServer

from conftest import ROOT, TEST_KEY, TEST_SALT, make_settings
from vipsgate import __version__, warm
from vipsgate.app import create_app
from vipsgate.cli import main
from vipsgate.commands import health, health_url
from vipsgate.config import environment
from vipsgate.config.unsupported import READ_ELSEWHERE, UNSUPPORTED
from vipsgate.signing import Signer


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}
    env.update(extra)
    return env


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith(("IMGPROXY_", "VIPSGATE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMGPROXY_KEY", TEST_KEY)
    monkeypatch.setenv("IMGPROXY_SALT", TEST_SALT)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"vipsgate {__version__} (libvips ")


def test_help_is_plain_text_and_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text
    for command in ("serve", "sign", "config", "warm", "health"):
        assert f"\n    {command} " in text, command
    assert main([]) == 2  # no command: the help, and a failing status


# --- sign ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "said"), [
    ("/rs:fit:300:abc/plain/local:///a.jpg", "Invalid height: abc"),
    ("/bogus:1/plain/local:///a.jpg", "Unknown processing option bogus"),
    ("/mrd:10/plain/local:///a.jpg", "mrd is not allowed"),
    ("/pr:nope/plain/local:///a.jpg", "Unknown preset: nope"),
    ("/w:10/plain/https://example.com/a.jpg?v=2", "unescaped '?'"),
    ("/w:10/plain/https://example.com/a.jpg#top", "unescaped '#'"),
    ("/w:10/plain/https://example.com/a@2x.jpg", "'@2x.jpg' is not an output format"),
    ("/w:10/plain/https://u@example.com/a@2x.jpg@webp", "more than one '@'"),
])
def test_sign_refuses_what_the_server_would_refuse(keyed: None, path: str, said: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and said in err, err


@pytest.mark.parametrize("path", [
    "/rs:fit:300:300/plain/https://example.com/a%402x.jpg%3Fv=2@webp",
    "/w:10/plain/local:///a.jpg",
    "/w:10/aHR0cHM6Ly9leGFtcGxlLmNvbS9hQDJ4LmpwZz92PTI.webp",  # base64 holds ? and @
])
def test_sign_signs_what_the_server_accepts(keyed: None, path: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", path]) == 0
    signature, _, rest = capsys.readouterr().out.strip()[1:].partition("/")
    assert "/" + rest == path
    assert Signer.from_hex([TEST_KEY], [TEST_SALT]).verify(signature, path)


def test_sign_uses_the_servers_presets_and_allowed_options(
        keyed: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IMGPROXY_PRESETS", "thumb=rs:fill:100:100")
    monkeypatch.setenv("IMGPROXY_ALLOWED_PROCESSING_OPTIONS", "pr,w")
    assert main(["sign", "/pr:thumb/plain/local:///a.jpg"]) == 0
    assert main(["sign", "/h:10/plain/local:///a.jpg"]) == 2
    assert "Forbidden processing option h" in capsys.readouterr().err


# --- config -------------------------------------------------------------------------------

def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vipsgate", *args], cwd=ROOT,
                          env=clean_env(**env), capture_output=True, text=True, timeout=60)


def test_config_check_lists_every_problem_in_one_line_each() -> None:
    done = run_cli("config", "--check", IMGPROXY_QUALITY="high", IMGPROXY_TTL="-1",
                   IMGPROXY_QUALTY="70", VIPSGATE_RESULT_CACHE="1", IMGPROXY_USE_SWIFT="true")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 5, lines
    errors = [line for line in lines if line.startswith("error: ")]
    assert any("IMGPROXY_QUALITY='high'" in line for line in errors)
    assert any("IMGPROXY_TTL='-1'" in line for line in errors)
    assert any("IMGPROXY_QUALTY" in line and "did you mean IMGPROXY_QUALITY?" in line
               for line in errors)
    assert any("unknown setting VIPSGATE_RESULT_CACHE " in line for line in errors)
    assert [line for line in lines if line.startswith("warning: ")] == [
        f"warning: IMGPROXY_USE_SWIFT is not supported ({UNSUPPORTED['IMGPROXY_USE_SWIFT']}) "
        "and is ignored"]


def test_config_check_passes_a_good_environment() -> None:
    done = run_cli("config", "--check", IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT,
                   IMGPROXY_TTL="60", VIPSGATE_BASE_URL="https://img.example.com")
    assert (done.returncode, done.stdout, done.stderr) == (0, "configuration ok\n", "")
    # problems of the configuration as a whole, once every value parses
    done = run_cli("config", "--check", IMGPROXY_KEY=TEST_KEY)
    assert done.returncode == 1 and "IMGPROXY_SALT" in done.stderr


def test_config_into_a_closed_pipe_ends_quietly() -> None:
    """``vipsgate config | head -1``: the reader leaves first, which is no error."""
    process = subprocess.Popen([sys.executable, "-m", "vipsgate", "config"], cwd=ROOT,
                               env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command writes: its write meets a closed pipe
    err = process.stderr.read()
    assert process.wait(60) == 0
    assert err == b""


def test_unknown_and_unsupported_names() -> None:
    env = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT, "IMGPROXY_QUALTY": "1",
           "VIPSGATE_BASE_URL": "https://x", "IMGPROXY_NETWORK": "unix",
           "PATH": "/bin", "IMGPROXY_NOTHING_LIKE_IT": "1"}
    assert environment.unknown_names(env) == ["IMGPROXY_NOTHING_LIKE_IT", "IMGPROXY_QUALTY"]
    lines = environment.warnings(env)
    assert lines[:2] == ["unknown setting IMGPROXY_NOTHING_LIKE_IT is ignored",
                         "unknown setting IMGPROXY_QUALTY is ignored; "
                         "did you mean IMGPROXY_QUALITY?"]
    assert lines[2].startswith("IMGPROXY_NETWORK is not supported (")
    # the tables are data about names that are not settings
    assert not (UNSUPPORTED.keys() | READ_ELSEWHERE.keys()) & environment.setting_names()


# --- serve: a busy port, start-up warnings ------------------------------------------------

@contextmanager
def serving(*args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``vipsgate serve`` on a kernel-chosen port, until its banner names the port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vipsgate", "serve", "--host", "127.0.0.1", *args], cwd=ROOT,
        env=clean_env(IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT, **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    try:
        line = process.stdout.readline()  # blocks until the server listens
        assert "listening on" in line, (line, process.stderr.read())
        yield process, int(line.split("127.0.0.1:", 1)[1].split()[0])
    finally:
        process.terminate()
        process.wait(60)
        process.stdout.close()
        process.stderr.close()


@pytest.mark.timeout(120)
def test_a_second_server_on_a_busy_port_stops_with_one_line() -> None:
    with serving("--port", "0", IMGPROXY_QUALTY="70") as (first, port):
        for processes in ("1", "2"):
            second = run_cli("serve", "--host", "127.0.0.1", "--port", str(port),
                             "--processes", processes, IMGPROXY_KEY=TEST_KEY,
                             IMGPROXY_SALT=TEST_SALT)
            assert second.returncode == 2, second.stderr
            assert second.stderr == (f"vipsgate: cannot listen on 127.0.0.1:{port}: the address "
                                     "is already in use (is another server running on that "
                                     "port?)\n")
            assert "listening" not in second.stdout
        assert health(f"http://127.0.0.1:{port}/health") == "vipsgate is running"
        first.terminate()
        assert first.wait(60) == 0
        assert first.stderr is not None
        assert "unknown setting IMGPROXY_QUALTY is ignored; did you mean IMGPROXY_QUALITY?" \
            in first.stderr.read()


@pytest.mark.timeout(120)
def test_several_processes_on_a_kernel_chosen_port() -> None:
    """The supervisor binds every process's socket, so port 0 works for several too,
    and the port is refused to a second server while they run."""
    with serving("--port", "0", "--processes", "2") as (_, port):
        assert health(f"http://127.0.0.1:{port}/health") == "vipsgate is running"
        second = run_cli("serve", "--host", "127.0.0.1", "--port", str(port),
                         IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT)
        assert second.returncode == 2 and "already in use" in second.stderr


# --- health -------------------------------------------------------------------------------

def test_health_url_follows_the_settings() -> None:
    assert health_url(make_settings(VIPSGATE_BIND="0.0.0.0:9000")) == \
        "http://127.0.0.1:9000/health"
    assert health_url(make_settings(VIPSGATE_BIND="[::]:9000",
                                    IMGPROXY_PATH_PREFIX="/img/")) == "http://[::1]:9000/img/health"


def test_health_command_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with closed_port() as port:
        assert main(["health", "--url", f"http://127.0.0.1:{port}/health"]) == 1
    assert capsys.readouterr().err == (f"vipsgate: unhealthy: http://127.0.0.1:{port}/health: "
                                       "Connection refused\n")


async def test_health_command_against_a_server(images, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    async with TestServer(create_app(make_settings(images)), host="127.0.0.1") as server:
        url = str(server.make_url("/health"))
        assert await asyncio.to_thread(main, ["health", "--url", url]) == 0
        assert capsys.readouterr().out == "vipsgate is running\n"
        bad = str(server.make_url("/nope/health"))
        assert await asyncio.to_thread(main, ["health", "--url", bad]) == 1
        assert "HTTP 403" in capsys.readouterr().err  # an image path with no signature


# --- warm: why a request got no answer ----------------------------------------------------

@contextmanager
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, deterministically."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_warm_reports_a_refused_connection_with_its_reason() -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/sig/w:10/plain/local:///a.jpg"
        summary = await warm.warm(warm.build_jobs([url], ["jpeg"]), retries=0, timeout=10)
    assert summary.statuses == {0: 1}
    assert summary.errors == {f"cannot connect to 127.0.0.1:{port}: Connection refused": 1}
    out = io.StringIO()
    warm.report(summary, out)
    assert "(no answer: 1)" in out.getvalue()
    assert f"no answer x1: cannot connect to 127.0.0.1:{port}: Connection refused" \
        in out.getvalue()


# --- make loadtest against an existing deployment -----------------------------------------

@pytest.mark.timeout(180)
def test_loadtest_against_an_existing_deployment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``make loadtest ARGS="--host ... --sources ..."``: signs with the deployment's key,
    sends its secret, and starts no server of its own."""
    import csv
    import importlib.util
    if importlib.util.find_spec("locust") is None:  # not imported: it gevent-patches the process
        pytest.skip("locust is not installed (make install)")

    from imagegen import jpeg
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b c.jpg"):
        (images / name).write_bytes(jpeg(320, 240))
    sources = tmp_path / "sources.txt"
    sources.write_text("# what the deployment can fetch\nlocal:///a.jpg\nlocal:///b%20c.jpg\n")
    with serving("--port", "0", IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(images),
                 IMGPROXY_SECRET="cdn-only", VIPSGATE_LOG_LEVEL="warning") as (_, port):
        done = subprocess.run(
            [sys.executable, str(ROOT / "loadtest" / "run_locust.py"), "--host",
             f"http://127.0.0.1:{port}", "--sources", str(sources), "--users", "2",
             "--spawn-rate", "2", "--run-time", "10s", "--results", str(tmp_path / "out")],
            env=clean_env(IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT,
                          IMGPROXY_SECRET="cdn-only"),
            capture_output=True, text=True, timeout=150, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "generating" not in done.stdout  # nothing of its own started
    with (tmp_path / "out" / "locust-remote_stats.csv").open() as fh:
        total = next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0
    missing = run_cli_loadtest(tmp_path, "--host", "http://127.0.0.1:1")
    assert missing.returncode == 2 and "--host and --sources go together" in missing.stderr


def run_cli_loadtest(cwd, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, str(ROOT / "loadtest" / "run_locust.py"), *args],
                          env=clean_env(), capture_output=True, text=True, timeout=60, cwd=cwd)

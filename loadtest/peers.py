"""thumbor as a peer for ``bench.py --vs-thumbor``: its own venv, config, server, URLs.

thumbor 7.8 (Pillow engine, file loader, no storage, no result storage) is installed once
into ``loadtest/.peers/thumbor-venv`` (git-ignored) and started with 2 processes on
127.0.0.1. Tornado forks the processes after binding one listening socket, so they
share it: a keep-alive connection stays with the process that accepted it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loadtest.common import Server, process_tree
from loadtest.mix import MIXES
from loadtest.mix import thumbor_path as mix_thumbor_path

PEERS = Path(__file__).resolve().parent / ".peers"
THUMBOR_VENV = PEERS / "thumbor-venv"
THUMBOR_SPECS = ("thumbor==7.8.*", "thumbor>=7,<8")  # the second only if 7.8 is missing

# W1-W4 in thumbor's grammar. max_age(n) only sets Cache-Control: a no-op on the pixels
# that makes every URL distinct (thumbor has no cache here anyway: no storages).
THUMBOR_URLS = {
    "W1": "/unsafe/fit-in/300x200/filters:quality(80):max_age({n})/photo_1080.jpg",
    "W2": "/unsafe/fit-in/300x200/filters:format(webp):quality(80):max_age({n})/photo_1080.jpg",
    "W3": "/unsafe/800x600/filters:quality(80):max_age({n})/photo_12mp.jpg",
    "W4": "/unsafe/fit-in/300x300/filters:format(webp):quality(80):max_age({n})/alpha.png",
}


class PeerUnavailable(Exception):
    """A peer that cannot run here; the message says why and how to get it."""


def thumbor_url(name: str, n: int) -> str:
    """Request ``n`` of workload ``name`` (W1-W4 or a mix) in thumbor's grammar."""
    if name in THUMBOR_URLS:
        return THUMBOR_URLS[name].format(n=n)
    mix = next(m for m in MIXES if m.name == name)
    return mix_thumbor_path(mix.request(n), n)


def thumbor_paths(name: str, start: int = 1) -> Iterator[str]:
    """Endless distinct thumbor URLs for workload ``name``."""
    n = start
    while True:
        yield thumbor_url(name, n)
        n += 1


def _pip_install(python: Path, spec: str) -> bool:
    """Install ``spec`` into the venv of ``python`` with uv (fast) or else pip."""
    try:
        import uv  # noqa: F401 - only to learn whether uv is available here

        argv = [sys.executable, "-m", "uv", "pip", "install", "-q", "-p", str(python), spec]
    except ImportError:
        argv = [str(python), "-m", "pip", "install", "-q", spec]
    return subprocess.run(argv, timeout=600).returncode == 0


def ensure_thumbor() -> Path:
    """The thumbor venv's python, created and installed on the first call only."""
    python = THUMBOR_VENV / "bin" / "python"
    stamp = THUMBOR_VENV / ".installed"
    if stamp.exists() and python.exists():
        return python
    print(f"installing thumbor into {THUMBOR_VENV} (once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True, timeout=300)
    for spec in THUMBOR_SPECS:
        if _pip_install(python, spec):
            if spec != THUMBOR_SPECS[0]:
                print(f"  ! {THUMBOR_SPECS[0]} could not be installed; using {spec}",
                      file=sys.stderr)
            stamp.write_text(spec + "\n")
            return python
    raise RuntimeError(f"could not install thumbor into {THUMBOR_VENV} (see pip's output)")


def thumbor_versions(python: Path) -> dict[str, str]:
    code = "import PIL, thumbor; print(thumbor.__version__, PIL.__version__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    return {"thumbor": out[0], "thumbor_pillow": out[1]}


def write_conf(path: Path, root: Path) -> Path:
    """thumbor.conf: file loader on ``root``, nothing stored, q80, Pillow engine."""
    path.write_text(
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = {str(root)!r}\n"
        "STORAGE = 'thumbor.storages.no_storage'\n"
        "RESULT_STORAGE = None\n"
        "ENGINE = 'thumbor.engines.pil'\n"
        "ALLOW_UNSAFE_URL = True\n"
        "QUALITY = 80\n"
        "AUTO_WEBP = False\n"
        # the builtin `format` and `quality` filters (thumbor's default FILTERS) give WebP
        # output with filters:format(webp); Pillow's wheel includes libwebp.
        "MAX_WAIT_SECONDS_BEFORE_SERVER_SHUTDOWN = 0\n"
        "MAX_WAIT_SECONDS_BEFORE_IO_SHUTDOWN = 0\n")
    return path


@dataclass
class ThumborServer(Server):
    """thumbor in its own process group: the forking parent does not pass SIGTERM on,
    so ``stop()`` signals the whole group."""

    def start(self) -> ThumborServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([*self.argv, "--port", str(self.port)],
                                     env={**os.environ, **self.env}, stdout=log, stderr=log,
                                     start_new_session=True, cwd=self.log_path.parent)
        log.close()
        try:
            self._wait_ready(timeout=60.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until the health check answers and all ``processes`` children exist."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"thumbor exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            if len(process_tree(self.proc.pid)) >= 1 + self.processes:
                try:
                    url = f"http://127.0.0.1:{self.port}/healthcheck"
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        if answer.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.1)  # polling a subprocess's start-up; there is nothing to wait on
        raise RuntimeError("thumbor did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if _signal_group(self.proc, signal.SIGTERM, 10.0):
                _signal_group(self.proc, signal.SIGKILL, 5.0)
            self.proc.wait(5)
        except BaseException:  # interrupted while stopping (a second Ctrl-C): no leftovers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def _signal_group(leader: subprocess.Popen, sig: int, wait: float) -> bool:
    """Send ``sig`` to the leader's group; True if some of it is alive after ``wait`` s."""
    pgid = leader.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        leader.poll()  # reap the leader; its children go to init
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)  # waiting for processes that are not all our children
    return True


def thumbor_server(root: Path, workdir: Path, processes: int = 2) -> tuple[ThumborServer, dict]:
    """A ready-to-start thumbor server on ``root`` and the installed versions; raises
    ``PeerUnavailable`` when thumbor cannot be installed here."""
    try:
        python = ensure_thumbor()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        raise PeerUnavailable(f"{error}; skipping thumbor") from error
    conf = write_conf(workdir / "thumbor.conf", root)
    argv = [str(python), "-m", "thumbor.server", "-c", str(conf), "-i", "127.0.0.1",
            "--processes", str(processes), "-l", "warning"]
    server = ThumborServer(argv, {}, workdir / "thumbor.log", processes=processes)
    return server, {**thumbor_versions(python), "processes": processes, "engine": "pil",
                    "conf": conf.read_text()}

"""The supervisor of ``VIPSGATE_PROCESSES`` > 1 servers: ``serve`` forks the servers,
then replaces itself with this module (``exec``), so the process that serves nothing
holds only an interpreter (about 12 MB of RSS instead of the 26 MB that the CLI and the
configuration had cost it). It imports the standard library only.

It forwards SIGTERM/SIGINT to the servers, and when one dies unexpectedly it stops the
others and exits with 1 (the orchestrator restarts the whole server). It drops the live
gauges of each server that exits, and removes the metric files' directory if it made it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys


def supervise(children: list[int], own_dir: str | None = None) -> int:
    """Wait for ``children`` (the servers, already running); the exit status."""
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status, remaining = 0, set(children)
    while remaining:
        pid, raw = os.wait()
        remaining.discard(pid)
        _process_exited(pid)
        code = os.waitstatus_to_exitcode(raw)
        if code != 0 and not stopping:
            status = 1
            forward(signal.SIGTERM, None)
    if own_dir:
        shutil.rmtree(own_dir, ignore_errors=True)
    return status


def command(children: list[int], own_dir: str | None) -> list[str]:
    """The ``argv`` that runs the supervisor (for ``os.execv``)."""
    package = __name__.rpartition(".")[0]
    return [sys.executable, "-m", f"{package}.supervise",
            ",".join(map(str, children)), own_dir or ""]


def _process_exited(pid: int) -> None:
    """Drop the live gauges of a server that has exited (prometheus-client's files)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


if __name__ == "__main__":
    pids, directory = sys.argv[1], sys.argv[2]
    sys.exit(supervise([int(p) for p in pids.split(",")], directory or None))

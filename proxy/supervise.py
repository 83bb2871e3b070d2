"""The supervisor of ``VIPSGATE_PROCESSES`` > 1 servers: ``serve`` forks the servers,
then replaces itself with this module (``exec``), so the process that serves nothing
holds only an interpreter (about 11 MB of RSS instead of the 26 MB that the CLI and the
configuration had cost it). It imports the standard library only (and ``multiprocess``,
which does too).

It forwards SIGTERM/SIGINT to the servers (``serve`` blocks both before forking, so a
stop that comes before the handlers exist waits for them), and when one dies
unexpectedly it stops the others and exits with 1 (the orchestrator restarts the whole
server). It drops the live gauges of each server that exits, and removes the metric
files' directory if it made it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import sys

from .multiprocess import multiprocess_dir

#: the signals that stop the server (forwarded to every server process)
STOPS = frozenset({signal.SIGTERM, signal.SIGINT})


def supervise(children: list[int], own_dir: str | None = None) -> int:
    """Wait for ``children`` (the servers, already running); the exit status."""
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an inherited SIG_IGN reaps them early
    for signum in STOPS:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)  # a stop that came meanwhile: now
    status, remaining = 0, set(children)
    while remaining:
        pid, raw = os.wait()
        if pid not in remaining:  # not a server (an orphan handed to a PID 1)
            continue
        remaining.discard(pid)
        if os.waitstatus_to_exitcode(raw) != 0 and not stopping:
            status = 1
            forward(signal.SIGTERM, None)
        _drop_live_gauges(pid)
    if own_dir:
        shutil.rmtree(own_dir, ignore_errors=True)
    return status


def command(children: list[int], own_dir: str | None) -> list[str]:
    """The ``argv`` that runs the supervisor (for ``os.execv``); ``-P``: the working
    directory is not put on ``sys.path`` (nothing there can shadow the standard
    library)."""
    package = __name__.rpartition(".")[0]
    return [sys.executable, "-P", "-m", f"{package}.supervise",
            ",".join(map(str, children)), own_dir or ""]


def _drop_live_gauges(pid: int) -> None:
    """What prometheus-client's ``multiprocess.mark_process_dead`` does (its files of
    ``live*`` gauges for ``pid``), without importing it."""
    directory = multiprocess_dir()
    if directory:
        for path in glob.glob(os.path.join(glob.escape(directory), f"gauge_live*_{pid}.db")):
            with contextlib.suppress(OSError):
                os.remove(path)


if __name__ == "__main__":
    pids, directory = sys.argv[1], sys.argv[2]
    sys.exit(supervise([int(p) for p in pids.split(",")], directory or None))

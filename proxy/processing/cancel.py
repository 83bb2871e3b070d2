"""Stopping libvips work in flight: a job's ``KillSwitch``.

A libvips call cannot be interrupted from Python, but an image can be marked killed:
every computation that pulls pixels through it then fails at its next tile. The
pipeline ``watch``es the images it evaluates (the decoded source, each copy made in
memory); ``kill`` marks them all, and the work stops within a tile or so, freeing its
worker. The event loop kills a job nobody waits for any more (``workers.WorkerPool``);
``Deadlines`` kills a job at its deadline, in whatever process runs it (one timer
thread per process, started on first use).

What a kill cannot stop: a decoder or encoder that works outside libvips' tile loop
(librsvg laying out text, an AVIF encoder, the Pillow-based decoders); the guards in
front (``svg_guard``, the JPEG scan limit, the memory estimate) keep those short, and
worker processes past their deadline are replaced (``workers``).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

import pyvips


class KillSwitch:
    """The images one job evaluates; thread-safe (killed from another thread)."""

    def __init__(self) -> None:
        self.reason: str | None = None  # why it was killed; None while it may run
        self._images: list[pyvips.Image] = []
        self._lock = threading.Lock()

    @property
    def killed(self) -> bool:
        return self.reason is not None

    def watch(self, image: pyvips.Image) -> pyvips.Image:
        """Register ``image`` (returned): killing the job stops work that reads it."""
        with self._lock:
            if self.reason is not None:
                image.set_kill(True)
            self._images.append(image)
        return image

    def kill(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            for image in self._images:
                image.set_kill(True)

    def release(self) -> None:
        """The job ended: forget its images."""
        with self._lock:
            self._images.clear()


class Deadlines:
    """Kills switches at their deadlines (``time.monotonic()``) from one timer thread.

    ``arm`` wakes the thread only for a deadline earlier than all it holds, and the
    thread otherwise sleeps at least ``GRANULARITY`` seconds between passes, killing
    every switch past its deadline on each: jobs share one timeout, so a steady stream
    of jobs costs it a few wakes a second instead of two per job (each a context switch
    and a turn of the GIL). A kill can come up to ``GRANULARITY`` late."""

    GRANULARITY = 0.1

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, KillSwitch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, switch: KillSwitch, deadline: float) -> None:
        with self._wake:
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._order), switch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vips-deadlines",
                                                daemon=True)
                self._thread.start()
            elif earliest:
                self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, switch = heapq.heappop(self._heap)
                    switch.kill("deadline")
                # a finished job's switch waits in the heap until its deadline: it holds
                # no image by then (``release``), only a few bytes
                self._wake.wait(max(self._heap[0][0] - now, self.GRANULARITY)
                                if self._heap else None)


#: this process's deadline timer
DEADLINES = Deadlines()

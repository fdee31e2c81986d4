"""Progress of long steps, told to whoever watches the run: the ``tiklive`` command, and nobody else by default.

The capture code reports through two calls: :func:`requested` (one API request cleared the plan's rate window; the
rate limiter calls it) and :func:`task` (a loop over a known number of items starts, e.g. the day's videos). Both do
nothing until a sink is installed with :func:`installed`, so a run launched from the Dagster UI, a schedule or a
test behaves exactly as before. ``tiklive run`` installs one sink per step: a progress bar when stderr is a terminal
(:class:`BarProgress`), otherwise a plain line at most every few seconds (:class:`LineProgress`), so a CI log gets
a handful of lines, never one per request.

The sink is module-wide, not per thread: the download workers report from their own threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO


class Sink(Protocol):
    def requested(self) -> None:
        """One API request is about to be sent."""

    def start(self, name: str, total: int | None) -> None:
        """A loop over ``total`` items (None: unknown) starts, e.g. ``("videos", 40)``."""

    def advance(self, n: int = 1) -> None:
        """``n`` items of the current loop are done."""


_sink: Sink | None = None


@contextmanager
def installed(sink: Sink) -> Iterator[Sink]:
    """Report to ``sink`` inside the block; the previous sink (usually none) is back afterwards."""
    global _sink
    previous, _sink = _sink, sink
    try:
        yield sink
    finally:
        _sink = previous


def requested() -> None:
    sink = _sink
    if sink is not None:
        sink.requested()


class Task:
    """The handle :func:`task` yields: ``advance()`` once per item done."""

    def __init__(self, sink: Sink | None):
        self._sink = sink

    def advance(self, n: int = 1) -> None:
        if self._sink is not None:
            self._sink.advance(n)


@contextmanager
def task(name: str, *, total: int | None = None) -> Iterator[Task]:
    """A loop over ``total`` things called ``name`` (plural: "videos") starts; ``advance()`` the handle per item."""
    sink = _sink
    if sink is not None:
        sink.start(name, total)
    yield Task(sink)


class _Counts:
    """What one step did so far, shared by both sinks (guarded: workers report from several threads)."""

    def __init__(self, step: str):
        self.step = step
        self.started = time.monotonic()
        self.requests = 0
        self.loop: str | None = None
        self.done = 0
        self.total: int | None = None
        self.lock = threading.Lock()

    def describe(self) -> str:
        parts = []
        if self.loop is not None:
            total = f"/{self.total}" if self.total is not None else ""
            parts.append(f"{self.done}{total} {self.loop}")
        parts.append(f"{self.requests} request{'s' if self.requests != 1 else ''}")
        return f"{self.step}: {', '.join(parts)}, {time.monotonic() - self.started:.0f} s"


class LineProgress:
    """For a log (stderr is not a terminal): ``  archived_videos: 12/40 videos, 57 requests, 31 s`` at most once
    every ``interval`` seconds while the step makes progress; a step shorter than that prints nothing."""

    def __init__(self, step: str, stream: TextIO, interval: float = 30.0):
        self.counts = _Counts(step)
        self.stream = stream
        self.interval = interval
        self._last = self.counts.started

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(f"  {self.counts.describe()}\n")
        self.stream.flush()

    def requested(self) -> None:
        with self.counts.lock:
            self.counts.requests += 1
            self._tick()

    def start(self, name: str, total: int | None) -> None:
        with self.counts.lock:
            self.counts.loop, self.counts.total, self.counts.done = name, total, 0

    def advance(self, n: int = 1) -> None:
        with self.counts.lock:
            self.counts.done += n
            if self.counts.total is not None and self.counts.done > self.counts.total:
                self.counts.total = self.counts.done  # more came in than were queued at the start
            self._tick()

    def close(self) -> None:
        pass


class BarProgress:
    """For a terminal: one tqdm bar for the step, labelled ``label``, counting requests, then the loop's items once
    one starts ("3/40 videos"; the requests move to the bar's postfix). Cleared when the step ends, so that the
    step's own summary line is what stays on screen; lines logged meanwhile (the rate-window waits) go above it."""

    def __init__(self, label: str, stream: TextIO, mininterval: float = 0.1):
        from tqdm import tqdm

        self.counts = _Counts(label)
        self.bar = tqdm(
            desc=label, unit=" requests", file=stream, leave=False, dynamic_ncols=True, mininterval=mininterval
        )

    def requested(self) -> None:
        with self.counts.lock:
            self.counts.requests += 1
            if self.counts.loop is None:
                self.bar.update(1)
            else:
                self.bar.set_postfix_str(f"{self.counts.requests} requests")

    def start(self, name: str, total: int | None) -> None:
        with self.counts.lock:
            self.counts.loop, self.counts.total, self.counts.done = name, total, 0
            self.bar.reset(total=total)
            self.bar.unit = f" {name}"
            if total is not None:  # "12/40 videos", with the time left
                self.bar.bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}{postfix}]"
            self.bar.set_postfix_str(f"{self.counts.requests} requests")

    def advance(self, n: int = 1) -> None:
        with self.counts.lock:
            self.counts.done += n
            if self.bar.total is not None and self.counts.done > self.bar.total:
                self.bar.total = self.counts.done  # more came in than were queued at the start
            self.bar.update(n)

    def close(self) -> None:
        self.bar.close()

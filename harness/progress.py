"""Progress of a run for the person watching it: a live bar in a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("scan")

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1


def progress_text(done: int, total: int, rate: float) -> str:
    """`done/total symbols (rate/s, ETA s)`; the ETA is unknown ('?') until a rate is known."""
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    return f"{done}/{total} symbols ({rate:.1f} symbols/s, ETA {eta})"


class Progress:
    """Counts symbols done. On a terminal (`stream.isatty()`) redraws one bar line in place, at most
    every REDRAW_SECONDS; otherwise logs `Processed N/M symbols (...)` each time report() is asked to
    (the driver asks once per written chunk). The rate counts from start(), after the cluster is up."""

    def __init__(self, total: int, already: int, stream: TextIO | None = None):
        self.total, self.already, self.done = total, already, already
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = self.drawn = 0.0

    def start(self) -> None:
        self.started = time.monotonic()

    def rate(self) -> float:
        elapsed = time.monotonic() - (self.started or time.monotonic())
        return (self.done - self.already) / elapsed if elapsed > 0 else 0.0

    def advance(self, count: int = 1) -> None:
        """`count` more symbols are done."""
        self.done += count
        if self.live and (time.monotonic() - self.drawn >= REDRAW_SECONDS or self.done == self.total):
            filled = BAR_WIDTH * self.done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                              f"{progress_text(self.done, self.total, self.rate())}\x1b[K")
            self.stream.flush()
            self.drawn = time.monotonic()

    def report(self) -> None:
        """A log line with the count so far (not on a terminal, where the bar shows it)."""
        if not self.live:
            log.info("Processed %s", progress_text(self.done, self.total, self.rate()))

    def close(self) -> None:
        if self.live and self.drawn:
            self.stream.write("\n")
            self.stream.flush()

"""Progress of a run for the person watching it: a live bar in a terminal or a notebook, log lines
otherwise (a CI log, a file).

The bar is tqdm's (tqdm.auto: a widget in Jupyter when ipywidgets is installed, text otherwise),
which draws at most every 0.1 s, so its cost per symbol is a counter increment.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import TextIO

log = logging.getLogger("scan")

REDRAW_SECONDS = 0.1


def progress_text(done: int, total: int, rate: float) -> str:
    """`done/total symbols (rate/s, ETA s)`; the ETA is unknown ('?') until a rate is known."""
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    return f"{done}/{total} symbols ({rate:.1f} symbols/s, ETA {eta})"


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (whose stderr is no terminal, but shows a bar)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and type(get()).__name__ == "ZMQInteractiveShell"


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """(columns, rows) of the terminal `stream` writes to; 0 where unknown."""
    try:
        return tuple(os.get_terminal_size(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return 0, 0


class Progress:
    """Counts symbols done. In a terminal (`stream.isatty()`) or a notebook, a live tqdm bar;
    otherwise a `Processed N/M symbols (...)` log line each time report() is asked to (the driver
    asks once per written chunk). The rate counts from start(), after the cluster is up.
    enabled=False: neither."""

    def __init__(self, total: int, already: int, stream: TextIO | None = None, enabled: bool = True):
        self.total, self.already, self.done = total, already, already
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and (in_notebook() or self.stream.isatty())
        self.started = 0.0
        self.bar = None

    def start(self) -> None:
        self.started = time.monotonic()
        if self.live:
            from tqdm.auto import tqdm  # imported when a bar is drawn: a log-only run does without
            with warnings.catch_warnings():  # tqdm.auto's "IProgress not found": it falls back to text
                warnings.simplefilter("ignore")
                if in_notebook():
                    self.bar = tqdm(total=self.total, initial=self.already, unit="symbol", desc="scan",
                                    mininterval=REDRAW_SECONDS)
                else:  # a terminal that reports no size (a bare pty) would get no bar from tqdm at all
                    columns, rows = terminal_size(self.stream)
                    self.bar = tqdm(total=self.total, initial=self.already, unit="symbol", desc="scan",
                                    mininterval=REDRAW_SECONDS, file=self.stream, ncols=columns or 80,
                                    nrows=rows or 24, dynamic_ncols=bool(columns))

    def rate(self) -> float:
        elapsed = time.monotonic() - (self.started or time.monotonic())
        return (self.done - self.already) / elapsed if elapsed > 0 else 0.0

    def advance(self, count: int = 1) -> None:
        """`count` more symbols are done."""
        self.done += count
        if self.bar is not None:
            self.bar.update(count)

    def report(self) -> None:
        """A log line with the count so far (not where the bar shows it)."""
        if self.enabled and not self.live:
            log.info("Processed %s", progress_text(self.done, self.total, self.rate()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

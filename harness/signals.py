"""SIGINT and SIGTERM: the only module that sets their handlers (the workers' own: cluster.worker_setup).

    exit_quietly_while_importing()  `python -m harness.run`: a Ctrl-C during the driver's imports
                                    (~1 s) exits 130 with one line, not a traceback
    stop_on_signals()               the CLI: SIGTERM and Ctrl-C raise StopRequested; more presses
                                    soon after the first are ignored, a later one ends the process
    interrupts_stop_the_run()       scan() from Python: within the block Ctrl-C (a notebook's stop
                                    button) raises StopRequested
    ignore_interrupts()             the CLI once its run is over

StopRequested, not a plain KeyboardInterrupt: landing inside a detector in a serial run, a plain
one would be taken for that detector's own failure of the symbol (harness.task). Only stdlib
imports here: the first of these runs before the driver imports anything heavy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator

from harness.errors import Interrupted, StopRequested

INTERRUPTED = "interrupted; flushed symbols are kept, rerun with --resume to continue"
# Ctrl-C presses within this many seconds of the first are the same impatient press (people press
# two or three times): they would land in the cleanup the first one started (closing the cluster,
# removing temp files) and print its traceback. A press after it is a second request.
SAME_PRESS_SECONDS = 2.0
_first_interrupt: list[float] = []


def _interrupted_while_importing(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # once (see _raise_interrupted)
    print("error: interrupted", file=sys.stderr)
    sys.exit(Interrupted.exit_code)


def exit_quietly_while_importing() -> None:
    """A Ctrl-C from now until stop_on_signals() exits 130 with the one line of a later one, without
    the traceback of the import it lands in. Not where SIGINT is ignored or handled already."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_importing)


def _raise_interrupted(signum: int, frame: Any) -> None:
    if _first_interrupt:
        if signum == signal.SIGINT and time.monotonic() - _first_interrupt[0] < SAME_PRESS_SECONDS:
            return
        _exit_now()
    _first_interrupt.append(time.monotonic())
    raise StopRequested


def _exit_now() -> None:
    """End the process at once, exit 130: the first interrupt got no answer (a detector that
    swallows it with a bare `except:`, a cleanup that hangs). Staged chunks are whole on disk
    (state.json is their commit point), the lock goes with the process; the worker processes
    are killed first, since nothing else will stop them now."""
    with contextlib.suppress(Exception):
        import psutil
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        print(f"error: {INTERRUPTED}", file=sys.stderr, flush=True)
    os._exit(Interrupted.exit_code)


def stop_on_signals() -> None:
    """The CLI's handlers: SIGTERM, and SIGINT unless it is ignored (`cmd &`), raise StopRequested
    once; a second signal ends the process at once (_exit_now), but for Ctrl-C presses within
    SAME_PRESS_SECONDS of the first, which are ignored. Starts afresh: a process may run main()
    more than once (the tests do)."""
    _first_interrupt.clear()
    signal.signal(signal.SIGTERM, _raise_interrupted)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _raise_interrupted)


def ignore_interrupts() -> None:
    """SIGINT ignored from now on: the CLI's run is over and a Ctrl-C has nothing to stop, while
    Python, resetting our handler to the default as it exits, would end the process by the raw
    signal (exit -2, a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def interrupts_stop_the_run() -> Iterator[None]:
    """Within the block, Ctrl-C (a notebook's stop button) raises StopRequested, as in the CLI.
    Only in the main thread, where signals are delivered; the previous handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise StopRequested

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

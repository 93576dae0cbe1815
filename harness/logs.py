"""Where the scan's log lines (the "scan" logger) show, for the CLI (harness.run) and scan() (harness.api)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("scan")


def show_messages(level: int = logging.INFO, dask: bool = False) -> None:
    """Let the scan's log lines show where nothing was set up for them (a notebook, a script, the
    CLI): one handler on stderr. A caller who gave the "scan" logger a handler keeps their own.
    dask: Dask's own log lines (distributed) too, at INFO."""
    if log.handlers or logging.getLogger().handlers:  # the caller's own set-up (e.g. logging.basicConfig)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False  # the scan's own messages only: Dask's INFO chatter stays out
    if dask:
        logging.getLogger("distributed").addHandler(handler)
        logging.getLogger("distributed").setLevel(logging.INFO)

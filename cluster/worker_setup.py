"""Preloaded into every LocalCluster worker process (distributed's `preload` hook)."""

import signal


def dask_setup(worker) -> None:
    # Ctrl-C in a terminal reaches every process of the foreground group. The driver closes the
    # cluster itself; a worker must not die of the SIGINT first, each with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

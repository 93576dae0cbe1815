"""The forkserver a LocalCluster's workers are forked from, started as soon as the driver knows it
will start a LocalCluster. No Dask import here (cluster.client imports Dask, 0.5 s):
the forkserver's own imports, the longest part of the cluster's start, then overlap the driver's
import of Dask and the scheduler's start-up (its dashboard imports bokeh)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import threading

# Imported by the forkserver once, so that every worker forked from it has them: first
# cluster.forkserver_setup (SIGINT ignored), then Dask, then through harness.task numpy, pandas,
# pyarrow and the detectors; last cluster.worker_setup, which freezes all of them out of the
# garbage collector.
PRELOAD = ["cluster.forkserver_setup", "distributed", "harness.task", "cluster.worker_setup"]


def start_forkserver() -> None:
    """Start the forkserver in the background, with PRELOAD; nothing if it is already running.

    A thread waits for it: the first worker to start waits for it too (ensure_running holds a lock).
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)  # read when it starts
    threading.Thread(target=multiprocessing.forkserver.ensure_running, name="forkserver-start", daemon=True).start()

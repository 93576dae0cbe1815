"""The forkserver a LocalCluster's workers are forked from, started as soon as the driver knows it
will start a LocalCluster. No Dask import here (harness.executors.clusters imports Dask, 0.5 s):
the forkserver's own imports, the longest part of the cluster's start, then overlap the driver's
import of Dask and the scheduler's start-up (its dashboard imports bokeh)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import signal
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
    threading.Thread(target=_ensure_running_deaf_to_ctrl_c, name="forkserver-start", daemon=True).start()


def _ensure_running_deaf_to_ctrl_c() -> None:
    """multiprocessing's ensure_running with SIGINT blocked in this thread, as multiprocessing starts
    its resource tracker: the forkserver inherits the mask through fork and exec, so a terminal's
    Ctrl-C (sent to the whole foreground group) stays pending in it from its first instruction, not
    only once Python has started and imported cluster.forkserver_setup, which ignores SIGINT (the
    pending one is dropped) and unblocks it. Before, a Ctrl-C during the interpreter's start-up
    killed it with "Fatal Python error: init_import_site" and a traceback. The driver alone gets
    the Ctrl-C, and stops the cluster. The resource tracker comes first: starting it (bpo-33613)
    blocks and then unblocks SIGINT in the calling thread."""
    multiprocessing.resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

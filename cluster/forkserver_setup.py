"""Imported first by the forkserver (cluster.forkserver.PRELOAD): from here on it ignores SIGINT.

multiprocessing's forkserver ignores SIGINT itself, but only once its preloads are imported (~1 s of
Dask, pandas, pyarrow): a Ctrl-C during them printed the forkserver's KeyboardInterrupt traceback
beside the driver's one-line message. Until here SIGINT is blocked (cluster.forkserver), which also
covers the interpreter's own start-up, before any preload. The driver handles Ctrl-C and closes the
cluster; the workers, forked with the forkserver's signal handlers, ignore SIGINT from their first
instruction too (cluster.worker_setup says so again for workers that come from elsewhere)."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C pending since the start is dropped here
# SIGINT came blocked (cluster.forkserver starts this process so): unblocked, so that a worker forked
# from here starts with a plain signal mask.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

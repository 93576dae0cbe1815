"""Preloaded into every LocalCluster worker process (distributed's `preload` hook), and into the
forkserver the workers are forked from (cluster.forkserver.PRELOAD), after its other imports."""

import gc
import os
import signal

IMPORTED_IN = os.getpid()  # in a worker forked from the forkserver: the forkserver's

# In the forkserver, everything imported so far (Dask, pandas, pyarrow, the scan's code) is frozen
# out of the garbage collector, as the gc docs advise before forking: the collector never walks
# these objects again, in the forkserver or in the workers forked from it, and the forkserver's
# own exit, which would collect over all of them, ends 0.1 s after the driver's instead of 0.4 s.
gc.freeze()


def dask_setup(worker) -> None:
    # Ctrl-C in a terminal reaches every process of the foreground group. The driver closes the
    # cluster itself; a worker must not die of the SIGINT first, each with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

"""The processes under the executors (harness.executors), and how the work is sized; nothing
here imports the scan's code (harness), which imports this package: it is the lower layer.

    plan        how the work is sized (pure): the scan's tasks, the end's units and pieces
    forkserver  the process a LocalCluster's workers are forked from (forkserver_setup,
                worker_setup: what those processes run first; its preload list names the scan's
                modules, which it imports in that process, not here)
    cpuslots    at most one CPU-bound process per core on this machine (held by the worker code
                that harness.executors.local runs; no Dask in it)

Importing this package imports nothing heavy: the serial path (workers: 1) never imports Dask.
"""

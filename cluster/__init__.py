"""Where and how the scan's tasks run: everything Dask-specific, and what decides a task's size.

    client      connect(): a LocalCluster of ours, a remote scheduler or the caller's own Client
                (the only place that builds one), and the workers' preparation
    dispatch    symbols -> Dask tasks -> results in completion order; the end of the run's jobs
                on the workers; the dashboard's Progress marks; staged chunks sent to remote workers
    plan        how many symbols a task carries (pure)
    forkserver  the process a LocalCluster's workers are forked from (forkserver_setup,
                worker_setup: what those processes run first)
    cpuslots    at most one CPU-bound process per core on this machine (taken by the worker code
                itself: harness.task, harness.finish; no Dask in it)

Importing this package imports nothing heavy: the serial path (workers: 1) never imports Dask.
"""

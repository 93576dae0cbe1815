"""Executors: the ways a run's work runs, one class each, behind one small interface (Executor).

    serial     Serial: this process, no Dask at all (workers: 1, no scheduler, no client): the
               reference path
    local      LocalDask: a LocalCluster of this run's own (forkserver, CPU slots, quiet Dask)
    remote     RemoteScheduler: the Dask scheduler at scheduler_address (TLS, code shipping, the
               staged chunks sent to its workers)
    caller     CallerClient: a caller's own distributed.Client (a notebook's), used and left open
    on_dask    DaskExecutor: what the three Dask executors share (the scan's tasks, the end's jobs)
    clusters   the Dask helpers they use (the only code that builds a Client); dispatch: symbols ->
               Dask tasks -> results, and the end's jobs on the workers

An executor is a context manager: entering it sets its workers up (starts or joins a cluster),
leaving it cancels what is pending and closes what it started. Inside, run_scan() gives the scan's
results and run_jobs() runs the end of the run's jobs (harness.finish); facts() is its part of
run.json. Workers return data; the driver writes every file. Importing this package imports no
Dask: executor_for() imports the executor it picks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:
    from harness.config import ScanConfig
    from harness.task import ScanSettings, SymbolResult


class Executor:
    """One way of running a run's work (module docstring). Subclasses set it up in __enter__ and
    give run_scan and run_jobs; the attributes are known once it is entered."""

    processes: int = 1              # how many jobs run_jobs runs at once (the cluster's worker threads)
    worker_processes: int = 0       # the worker processes that run the work (0: this process)
    dashboard: str | None = None    # the Dask dashboard's address
    start_seconds: float = 0.0      # importing Dask and starting or joining the cluster

    def __init__(self, cfg: ScanConfig):
        self.cfg = cfg

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def run_scan(self, symbols: Sequence[str], todo: Sequence[int], settings: ScanSettings
                 ) -> Iterator[tuple[int, SymbolResult]]:
        """(i, the result of symbols[i]) for every i in `todo`, in completion order. Closing the
        iterator (a failure, Ctrl-C) stops the scan."""
        raise NotImplementedError

    def run_jobs(self, function: Callable[..., Any], jobs: Sequence[Any]) -> list[Any]:
        """function(job) for every job, the results in job order (harness.finish.RunAll). A job
        with a `chunks` attribute reads those staged chunks: where the workers may not see the
        driver's disk, they come as a second argument (harness.staged_chunk.staged_files of each)."""
        raise NotImplementedError

    def client_closed(self) -> bool:
        """Whether a caller's client was closed during the run (by the caller: nothing to retry)."""
        return False

    def tasks(self) -> tuple[int, int, int]:
        """(tasks submitted, bytes of results received, bytes of staged chunks shipped)."""
        return 0, 0, 0

    def facts(self) -> dict[str, Any]:
        """For run.json: the cluster, the tasks submitted and the bytes sent each way."""
        tasks, received, shipped = self.tasks()
        return {"worker_processes": self.worker_processes, "scheduler_address": self.cfg.scheduler_address,
                "dashboard": self.dashboard, "cluster_start_seconds": self.start_seconds,
                "tasks": tasks, "bytes_received": received,  # the scan's results
                "bytes_shipped": shipped}


def executor_for(cfg: ScanConfig, client: Any = None) -> Executor:
    """The executor of a run of `cfg`: the caller's `client` when there is one (`workers` and
    `scheduler_address` then ignored), else the scheduler at scheduler_address, else this process
    for workers: 1, else a LocalCluster of `workers` processes."""
    if client is not None:
        from harness.executors.caller import CallerClient
        return CallerClient(cfg, client)
    if cfg.scheduler_address:
        from harness.executors.remote import RemoteScheduler
        return RemoteScheduler(cfg)
    if cfg.workers == 1:
        from harness.executors.serial import Serial
        return Serial(cfg)
    from harness.executors.local import LocalDask
    return LocalDask(cfg)

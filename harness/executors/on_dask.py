"""DaskExecutor: what the Dask executors (local, remote, caller) share once they have a Client.

The scan runs as ScanFeed tasks (harness.executors.dispatch), the end of the run's jobs as
dask_run_all tasks, all kept on the dashboard's Progress panel (ProgressMarks) until the executor
is left. A subclass gives connect(), the Client of its cluster with its workers ready, and says
whether those workers see the driver's disk (a LocalCluster of ours) or get the staged chunks
through Dask (ShippedChunks), and what a task holds while it computes (cpu: a CPU slot).
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

from cluster.plan import TaskPlanner
from harness.executors import Executor
from harness.executors.dispatch import ProgressMarks, ScanFeed, ShippedChunks, dask_run_all
from harness.outdir import STAGING
from harness.task import ScanSettings, SymbolResult


class DaskExecutor(Executor):
    """A Dask cluster's workers run the scan's tasks and the end's jobs (module docstring)."""

    sees_driver_disk = False  # else the staged chunks the end's jobs read are sent to the workers

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.client: Any = None
        self.cpu: Callable[[], ContextManager[None]] | None = None  # what a task holds while it computes
        self.feed: ScanFeed | None = None
        self.results: Iterator[tuple[int, SymbolResult]] | None = None
        self.marks: ProgressMarks | None = None
        self.shipped: ShippedChunks | None = None
        self._stack = contextlib.ExitStack()

    def connect(self) -> ContextManager[Any]:
        """The Client of the cluster, its workers ready for the scan; closed (if ours) on the way out."""
        raise NotImplementedError

    def __enter__(self) -> DaskExecutor:
        began = time.time()  # the cluster's start includes importing Dask (the subclass's connect)
        with contextlib.ExitStack() as stack:
            self.client = stack.enter_context(self.connect())
            stack.callback(self._release)
            self.start_seconds = round(time.time() - began, 3)
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            self.processes = max(sum(w["nthreads"] for w in workers), 1)
            self.worker_processes = len(workers)
            from harness.executors.clusters import dashboard_link
            self.dashboard = dashboard_link(self.client)
            self.marks = ProgressMarks(self.client)  # the dashboard's Progress panel shows the whole run
            if not self.sees_driver_disk:
                self.shipped = ShippedChunks(self.client, Path(self.cfg.out_dir) / STAGING)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._stack.__exit__(*exc)

    def _release(self) -> None:
        """Cancel the scan's pending tasks, let go of what the run keeps on the workers."""
        if self.results is not None:
            self.results.close()
        if self.marks is not None:
            self.marks.release()
        if self.shipped is not None:
            self.shipped.release()

    def run_scan(self, symbols: Sequence[str], todo: Sequence[int], settings: ScanSettings
                 ) -> Iterator[tuple[int, SymbolResult]]:
        self.feed = ScanFeed(self.client, symbols, settings, TaskPlanner(self.processes, self.cfg.symbols_per_task),
                             self.marks,
                             cpu=self.cpu)
        self.results = self.feed.results(todo)
        return self.results

    def run_jobs(self, function: Callable[..., Any], jobs: Sequence[Any]) -> list[Any]:
        if self.cpu is not None:
            function = functools.partial(holding, self.cpu, function)
        return dask_run_all(self.client, function, jobs, marks=self.marks, shipped=self.shipped)

    def tasks(self) -> tuple[int, int, int]:
        return (self.feed.tasks if self.feed else 0, self.feed.bytes_received if self.feed else 0,
                self.shipped.bytes_sent if self.shipped else 0)


def holding(cpu: Callable[[], ContextManager[None]], function: Callable[..., Any], *args: Any) -> Any:
    """function(*args) within cpu() (a CPU slot): on a worker, a job of the end of the run."""
    with cpu():
        return function(*args)

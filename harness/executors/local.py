"""LocalDask: a LocalCluster of this run's own, on this machine, closed at the end of the run.

Its workers are forked from a forkserver that has imported the scan's code (cluster.forkserver,
started before this process imports Dask, whose import it then overlaps), with glibc's malloc
defaults; its scheduler and dashboard listen on 127.0.0.1 (dashboard_address). At most one
worker per core when the data is local (local_worker_processes); with more worker processes than
cores (remote data) their CPU work takes a CPU slot (cluster.cpuslots), one per core. Its workers
read the staged chunks from the driver's disk.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Iterator

from cluster.cpuslots import cpu_slot, make_slots, remove_slots
from cluster.forkserver import start_forkserver
from harness.errors import ScanError
from harness.executors.on_dask import DaskExecutor

log = logging.getLogger("scan")


class LocalDask(DaskExecutor):
    """`workers` single-threaded worker processes of a new LocalCluster (module docstring)."""

    sees_driver_disk = True

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        start_forkserver()  # first: its imports overlap this process's import of Dask
        from distributed import Client, LocalCluster
        from harness.executors.clusters import (FORKSERVER, QUIET_DASK, check_main_guard, dask_settings,
                                                leave_half_started_clusters, local_worker_processes, log_dashboard,
                                                machine_cores, prepare, slower_heartbeats, start_local_forkserver)
        cfg = self.cfg
        with dask_settings("quiet", QUIET_DASK):
            check_main_guard()
            start_local_forkserver()
            cores, processes = machine_cores(), local_worker_processes(cfg)
            if processes < cfg.workers:
                log.warning("workers: %d, but this machine has %d cores and the data is local: starting %d worker "
                            "processes (more CPU-bound processes than cores only slow the scan down)",
                            cfg.workers, cores, processes)
            elif processes > cores:
                log.warning("workers: %d on a machine with %d cores: their reads overlap, but detector code runs in "
                            "at most %d of them at a time", processes, cores, cores)
            # FORKSERVER for the cluster's whole life: a nanny restarting a dead worker reads it again.
            # Worker logs below CRITICAL stay out of the user's terminal: the scan's own errors come
            # back as data, and a Ctrl-C would otherwise print workers' heartbeat tracebacks.
            with slower_heartbeats(), dask_settings("forkserver", FORKSERVER):
                try:
                    cluster = LocalCluster(n_workers=processes, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=cfg.dashboard_address,
                                           silence_logs=logging.CRITICAL, preload=["cluster.worker_setup"])
                except (RuntimeError, OSError) as exc:  # e.g. a dashboard_address this machine does not have
                    raise ScanError(f"cannot start the local Dask cluster: {str(exc).splitlines()[0]} (is "
                                    f"dashboard_address {cfg.dashboard_address!r} an address of this machine? "
                                    "127.0.0.1:0 takes any free port)") from None
                except KeyboardInterrupt:  # Ctrl-C while it starts
                    leave_half_started_clusters()
                    raise
                try:
                    # direct_to_workers: results come straight from the worker that holds them, not
                    # relayed by the scheduler (which runs in this process too): half the driver's
                    # CPU per byte (160 MB of finish results: 0.1 s instead of 0.2-0.5 s). Not the default
                    # client: that would set dask.config's scheduler, process-wide, like Dask's own
                    # context managers, undone in the wrong order when scans overlap (shared_change).
                    client = Client(cluster, direct_to_workers=True, set_as_default=False)
                    try:
                        log_dashboard(client, cfg)
                        prepare(client, cfg, spawned=False)  # forked from the forkserver: glibc's defaults
                        with self.cpu_slots(processes > cores, cores):
                            yield client
                    finally:
                        client.close()
                finally:
                    cluster.close()

    @contextlib.contextmanager
    def cpu_slots(self, needed: bool, cores: int) -> Iterator[None]:
        """Within the block, when `needed`, the workers' CPU work holds one of `cores` CPU slots
        (self.cpu: the scan's reads of local files and detectors, the end's jobs); the semaphore
        is removed as the block ends (a waiter then goes on without one)."""
        semid = make_slots(cores) if needed else None
        self.cpu = functools.partial(cpu_slot, semid) if semid is not None else None
        try:
            yield
        finally:
            remove_slots(semid)

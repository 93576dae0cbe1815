"""Where tasks run: the only place in the project that builds a Dask Client.

connect(cfg) yields a Client either for a new LocalCluster on this machine (scheduler and dashboard
on 127.0.0.1, `workers` single-threaded worker processes) or for the remote scheduler at
`scheduler_address`, which it only disconnects from at the end, never shuts down.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import dask
from distributed import Client, LocalCluster

from harness.config import ScanConfig
from harness.errors import ScanError

log = logging.getLogger("scan")

# Dask's defaults poll often (worker profiler every 10 ms, ticks every 20 ms, memory monitor every
# 100 ms); an idle 8-worker LocalCluster then burns a third of a core that the detectors need.
# These intervals keep the dashboard live (its profile page samples every 100 ms instead of 10 ms).
QUIET_DASK = {
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.profile.cycle": "5000ms",
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "2000ms",
    "distributed.worker.memory.monitor-interval": "1000ms",
    "distributed.scheduler.work-stealing-interval": "500ms",
}
# One task at a time per worker thread (the default 1.1 sends a second one ahead). When a worker
# process dies, Dask counts a failure against every task it held: with a task queued behind the one
# that killed it, an innocent symbol could be the one reported (KilledWorker) and skipped.
ONE_TASK_PER_THREAD = {"distributed.scheduler.worker-saturation": 1.0}


def _import_scan_code() -> bool:
    """Run on every worker before the scan: imports pay their cost once, outside the timed work."""
    import harness.task  # noqa: F401  (pulls in pandas, pyarrow, the detectors)
    return True


def warm_up(client: Client) -> None:
    """Import the scan's code on every worker now, so that the first tasks do not pay for it."""
    client.run(_import_scan_code)


@contextlib.contextmanager
def connect(cfg: ScanConfig) -> Iterator[Client]:
    """A Client for this run; closes it (and a LocalCluster it started) on the way out."""
    with dask.config.set({**QUIET_DASK, **ONE_TASK_PER_THREAD}):
        if cfg.scheduler_address:
            if not cfg.scheduler_address.startswith(("tcp://", "tls://")):
                raise ScanError(f"config key 'scheduler_address': {cfg.scheduler_address!r} must look like "
                                "tcp://host:port or tls://host:port")
            try:
                client = Client(cfg.scheduler_address, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ScanError(f"cannot reach the Dask scheduler at {cfg.scheduler_address}: {exc} "
                                "(is `dask scheduler` running there?)") from None
            log.info("Connected to scheduler %s (%d workers); config key 'workers' is ignored",
                     cfg.scheduler_address, len(client.scheduler_info(n_workers=-1)["workers"]))
            try:
                warm_up(client)
                yield client
            finally:
                client.close()  # never client.shutdown(): the cluster is not ours
            return
        cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=cfg.dashboard_address,
                               silence_logs=logging.ERROR)
        try:
            client = Client(cluster)
            try:
                log.info("Dask dashboard: %s", client.dashboard_link)
                warm_up(client)
                yield client
            finally:
                client.close()
        finally:
            cluster.close()

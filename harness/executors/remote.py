"""RemoteScheduler: the Dask scheduler at scheduler_address (tcp://, or tls:// with the config's
`security` certificates), whose cluster is not ours: disconnected from at the end, never shut down.

Before the scan: a deadline on reaching the scheduler (check_scheduler), a worker to run on
(wait_for_a_worker), results fetched straight from the workers when they can be reached
(workers_reachable), the project's code shipped when asked (ship_code), the workers prepared
(harness.executors.clusters.prepare: versions, imports, malloc for large arrays). Its workers
share no disk with the driver: the staged chunks the end's jobs read are sent through Dask.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from harness.executors.on_dask import DaskExecutor

log = logging.getLogger("scan")


class RemoteScheduler(DaskExecutor):
    """The workers of the scheduler at cfg.scheduler_address (module docstring); `workers` is ignored."""

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        from distributed import Client
        from harness.executors.clusters import (CONNECT_SECONDS, QUIET_DASK, check_scheduler, dashboard_link,
                                                dask_settings, prepare, security_of, unreachable,
                                                wait_for_a_worker, workers_reachable)
        address = self.cfg.scheduler_address
        with dask_settings("quiet", QUIET_DASK):
            security = security_of(self.cfg)
            check_scheduler(address, security)  # a deadline the Client does not have
            try:
                client = Client(address, timeout=f"{CONNECT_SECONDS}s", security=security, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise unreachable(address, exc) from None
            try:
                log.info("Connected to scheduler %s (%d workers; config key 'workers' is ignored); dashboard: %s",
                         address, len(client.scheduler_info(n_workers=-1)["workers"]),
                         dashboard_link(client) or "none (the scheduler serves none)")
                wait_for_a_worker(client, address)
                client.direct_to_workers = workers_reachable(client)
                if not client.direct_to_workers:
                    log.info("The workers cannot be reached from here: results come through the scheduler")
                prepare(client, self.cfg)
                yield client
            finally:
                client.close()  # never client.shutdown(): the cluster is not ours

"""CallerClient: a caller's own distributed.Client (a notebook's LocalCluster, a SLURMCluster, a
KubeCluster, ...), used as it is and never closed; `workers` and `scheduler_address` are ignored.

Its workers are prepared like a remote scheduler's (harness.executors.clusters.prepare), and may
not see the driver's disk: the staged chunks the end's jobs read are sent through Dask. The caller
may close it during the run (a notebook's other cell): client_closed() says so.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from harness.executors.on_dask import DaskExecutor

log = logging.getLogger("scan")


class CallerClient(DaskExecutor):
    """The caller's `client`'s cluster (module docstring)."""

    def __init__(self, cfg: Any, client: Any):
        super().__init__(cfg)
        self.given = client

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        from harness.executors.clusters import dashboard_link, prepare, wait_for_a_worker
        client = self.given
        workers = client.scheduler_info(n_workers=-1)["workers"]
        log.info("Running on the given Dask client (%d workers); dashboard: %s", len(workers),
                 dashboard_link(client) or "none")
        wait_for_a_worker(client, client.scheduler.address)
        prepare(client, self.cfg)
        yield client

    def client_closed(self) -> bool:
        return self.given.status in ("closing", "closed")

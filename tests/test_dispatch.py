"""Tasks on Dask: whole-run submission, per-symbol failures inside multi-symbol tasks."""

from __future__ import annotations

import time

import numpy as np
import pytest
from distributed import Client, LocalCluster

from conftest import bars, write_partition
from harness.detectors import DetectorSpec, resolve_detectors
from harness.dispatch import dask_results, split_units
from harness.io import list_symbols
from harness.task import ScanTask, scan_symbols


def explode_on_b(df, cfg):
    if df["close"].iloc[0] == 2.0:
        raise RuntimeError("boom")
    return df.iloc[::10][["date"]].assign(score=1.0)


@pytest.mark.parametrize("stop_on_error, expected", [(True, 2), (False, 3)])
def test_a_multi_symbol_task_stops_at_its_first_failure_only_when_failing_fast(tmp_path, stop_on_error, expected):
    for symbol, price in (("A", 1.0), ("B", 2.0), ("C", 3.0)):
        write_partition(tmp_path, symbol, bars(30, close=np.full(30, price)))
    task = ScanTask(str(tmp_path), 3650, None, (DetectorSpec("x", explode_on_b, {}),), (5,),
                    stop_on_error=stop_on_error)
    results = scan_symbols(["A", "B", "C"], task)
    assert [r.symbol for r in results] == ["A", "B", "C"][:expected]
    assert results[0].error is None and results[1].error.detector == "x" and "boom" in results[1].error.message
    if not stop_on_error:
        assert results[2].error is None and results[2].rows.num_rows == 3


def test_split_units():
    assert split_units([3, 4, 5, 9, 10], [3, 2]) == [(3, 4, 5), (9, 10)]


def scan_task_count(client: Client) -> int:
    """Tasks of the "scan" prefix the scheduler has ever seen, in any state, forgotten included: what
    the dashboard's Progress panel counts."""
    def count(dask_scheduler=None):
        prefix = dask_scheduler.task_prefixes.get("scan")
        return sum(prefix.states.values()) if prefix else 0
    return client.run_on_scheduler(count)


def test_the_whole_run_is_submitted_once_the_pilot_results_are_in(small_universe):
    symbols = list_symbols(str(small_universe))
    task = ScanTask(str(small_universe), 10_000, None, tuple(resolve_detectors(("gap", "ma_cross"), {})), (5,))
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        results = dask_results(client, symbols, range(len(symbols)), task, workers=2, symbols_per_task=None)
        seen = [next(results), next(results)]  # the pilot task of each worker: then the plan
        # the generator is paused here, so it submits nothing more; its graph updates travel on a
        # batched stream, so let them arrive before counting
        time.sleep(1.0)
        submitted = scan_task_count(client)
        seen += list(results)
        assert scan_task_count(client) == submitted, "nothing may be submitted after the pilots' results"
    assert sorted(i for i, _ in seen) == list(range(len(symbols)))
    assert all(r.error is None for _, r in seen)
    assert 2 < submitted < len(symbols), "a pilot task per worker, then a few bigger ones"

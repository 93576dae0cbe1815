"""Serial: every symbol and every job of the end in this process, one after the other; no Dask.
The reference path: every other executor's files are the same, byte for byte."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from harness.executors import Executor
from harness.task import ScanSettings, SymbolResult, scan_symbol


class Serial(Executor):
    """This process (workers: 1): the symbols in order, the jobs read the staging folder."""

    def run_scan(self, symbols: Sequence[str], todo: Sequence[int], settings: ScanSettings
                 ) -> Iterator[tuple[int, SymbolResult]]:
        for i in todo:
            yield i, scan_symbol(symbols[i], settings)

    def run_jobs(self, function: Callable[..., Any], jobs: Sequence[Any]) -> list[Any]:
        return [function(job) for job in jobs]

"""The driver: `python -m harness.run [--config config.yaml] [flags]`.

Wires the steps together and holds no detector or statistics logic:
config -> symbols -> results (in-process, or one Dask task per symbol) -> ordered flushes ->
summary -> run.json. It alone writes files (through harness.output) and logs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import platform
import signal
import sys
import time
import uuid
from collections import deque
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from harness.config import ScanConfig, load_config, read_yaml
from harness.detectors import resolve_detectors
from harness.errors import ConfigError, Interrupted, ScanError, SymbolFailed
from harness.io import Universe, invalid_folder_error, list_partitions
from harness.outdir import hold_output_folder
from harness.output import OutputWriter
from harness.report import build_report
from harness.summary import format_summary, summarize
from harness.task import ScanTask, SymbolError, SymbolResult, scan_symbol, scan_symbols

log = logging.getLogger("scan")

MAX_RESUBMITS = 3  # for a symbol whose finished result was lost with its worker
GATHER_WAIT_SECONDS = 0.25  # how long a finished result may wait for others to be fetched with it


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.run",
                                     description="Run every detector over every symbol and summarise forward returns.")
    parser.add_argument("--config", default="config.yaml", help="YAML config (default: config.yaml)")
    parser.add_argument("--workers", type=int, help="worker processes (1 = in-process, no Dask)")
    parser.add_argument("--scheduler", dest="scheduler_address", help="remote scheduler, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("--symbols", help="comma-separated symbols to scan (default: all)")
    parser.add_argument("--out", dest="out_dir", help="output folder")
    parser.add_argument("--data", dest="ohlcv_path", help="dataset root holding symbol=XXX/ folders")
    parser.add_argument("--on-error", dest="on_error", choices=("fail", "skip"), help="what a failing symbol does")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ScanConfig:
    overrides = {key: getattr(args, key) for key in
                 ("workers", "scheduler_address", "symbols", "out_dir", "ohlcv_path", "on_error")}
    return load_config(read_yaml(args.config), overrides)


def select_symbols(cfg: ScanConfig) -> Universe:
    """The run's universe: symbols sorted, invalid `symbol=` folders, ignored entries.

    The symbols are the config's list (each must exist; then nothing is invalid) or every
    partition. An invalid folder name is a DataError with on_error: fail; with skip it is left out
    and reported as a failure.
    """
    universe = list_partitions(cfg.ohlcv_path, cfg.storage_options)
    if cfg.symbols is None:
        if universe.invalid and cfg.on_error == "fail":
            raise invalid_folder_error(cfg.ohlcv_path, universe.invalid[0])
        if not universe.symbols:
            raise ConfigError(f"config key 'ohlcv_path': no symbol=XXX folders under {cfg.ohlcv_path!r} "
                              "(empty universe)")
        return universe
    missing = sorted(set(cfg.symbols) - set(universe.symbols))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(f"config key 'symbols': no partition under {cfg.ohlcv_path!r} for {shown}")
    return Universe(list(cfg.symbols), [], universe.ignored)


def run_key(cfg: ScanConfig, symbols: Sequence[str]) -> str:
    """A digest of everything that decides the outputs (not where or how fast they are computed)."""
    settings = cfg.as_dict()
    for key in ("workers", "symbols_per_task", "scheduler_address", "dashboard_address", "out_dir", "on_error",
                "security", "ship_code", "allow_version_mismatch", "storage_options"):
        settings.pop(key)
    settings["symbols"] = list(symbols)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def serial_results(symbols: Sequence[str], first: int, task: ScanTask) -> Iterator[tuple[int, SymbolResult]]:
    """The reference path: every symbol in this process, in order."""
    for i in range(first, len(symbols)):
        yield i, scan_symbol(symbols[i], task)


def dask_results(client: Any, symbols: Sequence[str], first: int, task: ScanTask, in_flight: int,
                 symbols_per_task: int = 1) -> Iterator[tuple[int, SymbolResult]]:
    """One future per symbol (or per `symbols_per_task` consecutive symbols), at most `in_flight`
    futures at a time; yields (symbol index, result) as they complete.

    Keys are ("scan", run_id, first symbol) so the dashboard shows one "scan" task group. Futures
    are submitted in batches of in_flight // 2 (one client.map call each: per call, not per task,
    the scheduler pays for a graph update). Finished results are fetched in batches too, with one
    client.gather for up to in_flight // 4 of them: a fetch per future costs the scheduler, the
    worker and this process a round trip each, about a fifth of Dask's CPU per task (BENCHMARKS.md).
    A finished result waits at most GATHER_WAIT_SECONDS, or until the next future completes, for
    others to join its batch; an error is handled at once. Futures are released as soon as their
    result is here, so neither futures nor results pile up in the driver. Closing the generator
    early (a failure, Ctrl-C) cancels every pending future.

    KilledWorker blame is checked here: Dask blames every task a dying worker held, and by default
    it sends each single-threaded worker a second task ahead (worker-saturation 1.1), so an innocent
    symbol queued behind the one that kills the worker can be blamed too. A unit blamed by
    KilledWorker is therefore run once more, under a new key, one such unit at a time; only a
    second KilledWorker is reported. A unit that really kills its worker kills it 8 times, not 4.
    """
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    todo = (tuple(range(start, min(start + symbols_per_task, len(symbols))))
            for start in range(first, len(symbols), symbols_per_task))
    pending: dict[Any, tuple[tuple[int, ...], Any]] = {}  # key -> (symbol indices, future)
    resubmitted: dict[int, int] = {}
    suspects: deque[tuple[int, ...]] = deque()  # units blamed once by KilledWorker, to run again alone
    rechecked: set[int] = set()
    recheck_key: Any = None
    batch, gather_size = max(in_flight // 2, 1), max(in_flight // 4, 1)
    queue = as_completed(raise_errors=False)

    def submit(units: list[tuple[int, ...]], tag: str = run_id) -> list[Any]:
        keys = [("scan", tag, symbols[unit[0]]) for unit in units]
        if symbols_per_task == 1:
            futures = client.map(scan_symbol, [symbols[unit[0]] for unit in units], task=task, key=keys)
        else:
            futures = client.map(scan_symbols, [[symbols[i] for i in unit] for unit in units], task=task, key=keys)
        pending.update((f.key, (unit, f)) for f, unit in zip(futures, units))
        queue.update(futures)
        return futures

    def top_up() -> None:
        while len(pending) <= in_flight - batch:
            units = list(islice(todo, batch))
            if not units:
                return
            submit(units)

    def recheck() -> None:
        nonlocal recheck_key
        if suspects and recheck_key not in pending:
            unit = suspects.popleft()
            rechecked.add(unit[0])
            recheck_key = submit([unit], tag=f"{run_id}-recheck")[0].key

    def collect(done: list[Any]) -> Iterator[tuple[int, SymbolResult]]:
        finished = {str(i): f for i, f in enumerate(done) if f.status == "finished"}
        # errors="skip": a future that errs or is cancelled meanwhile comes back as None; one whose
        # data was lost with its worker is recomputed by Dask before gather returns.
        values = client.gather(finished, errors="skip") if finished else {}
        for i, future in enumerate(done):
            unit, _ = pending.pop(future.key)
            status, value = future.status, values.get(str(i))
            results = [value] if symbols_per_task == 1 else value
            if status == "finished" and isinstance(results, list) and all(isinstance(r, SymbolResult) for r in results):
                pass
            elif status == "error":  # scan_symbol returns its own errors: this is Dask's, e.g. KilledWorker
                exc = future.exception()
                killed = type(exc).__name__ == "KilledWorker"
                if killed and unit[0] not in rechecked:
                    future.release()
                    suspects.append(unit)
                    continue
                which = "this symbol" if len(unit) == 1 else f"this task's {len(unit)} symbols (symbols_per_task)"
                message = (f"its worker process died each time it ran {which} ({exc})"
                           if killed else f"{type(exc).__name__}: {exc}")
                results = [SymbolResult(symbols[i], error=SymbolError(None, message)) for i in unit]
            elif resubmitted.get(unit[0], 0) < MAX_RESUBMITS:
                # Finished on a worker that died before its result was fetched (the data is lost),
                # or cancelled by the cluster: run it again; tasks are safe to run twice.
                resubmitted[unit[0]] = resubmitted.get(unit[0], 0) + 1
                log.warning("Resubmitting %s (its result was lost: %s)", symbols[unit[0]], status)
                future.release()
                submit([unit], tag=f"{run_id}-retry{resubmitted[unit[0]]}")
                continue
            else:
                results = [SymbolResult(symbols[i], error=SymbolError(
                    None, f"its result was lost {MAX_RESUBMITS + 1} times (status {status})")) for i in unit]
            future.release()
            yield from zip(unit, results)

    top_up()
    try:
        done: list[Any] = []
        oldest = 0.0
        for future in queue:
            if not done:
                oldest = time.monotonic()
            done.append(future)
            if (future.status == "finished" and len(done) < min(gather_size, len(pending))
                    and time.monotonic() - oldest < GATHER_WAIT_SECONDS):
                continue
            ready, done = done, []
            yield from collect(ready)
            top_up()
            recheck()
    finally:
        if pending:
            client.cancel([f for _, f in pending.values()])


class Progress:
    """Logs `Processed N/M symbols` with rate and ETA."""

    def __init__(self, total: int, already: int):
        self.total, self.already, self.started = total, already, time.monotonic()

    def report(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        rate = (done - self.already) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        log.info("Processed %d/%d symbols (%.1f symbols/s, ETA %.0fs)", done, self.total, rate, eta)


def versions() -> dict[str, str]:
    import dask
    import distributed
    import numpy
    import pyarrow
    return {"python": platform.python_version(), "pandas": pd.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "dask": dask.__version__, "distributed": distributed.__version__}


@contextlib.contextmanager
def execute(cfg: ScanConfig, symbols: Sequence[str], first: int, task: ScanTask,
            info: dict[str, Any]) -> Iterator[Iterator[tuple[int, SymbolResult]]]:
    """Where the tasks run: in this process for workers 1 without a scheduler, else on Dask.

    Yields an iterator of (symbol index, result) for symbols[first:], in completion order; records
    cluster facts in `info`; on the way out cancels what is pending and closes the cluster.
    """
    if cfg.workers == 1 and not cfg.scheduler_address:
        yield serial_results(symbols, first, task)
        return
    with execute_on_dask(cfg, symbols, first, task, info) as results:
        yield results


@contextlib.contextmanager
def execute_on_dask(cfg: ScanConfig, symbols: Sequence[str], first: int, task: ScanTask,
                    info: dict[str, Any]) -> Iterator[Iterator[tuple[int, SymbolResult]]]:
    """execute() on a Dask cluster, whatever `workers` says (the benchmark's one-worker LocalCluster)."""
    from cluster import connect
    t0 = time.time()
    with connect(cfg) as client:
        info["cluster_start_seconds"] = round(time.time() - t0, 3)
        info["dashboard"] = client.dashboard_link
        threads = sum(w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values())
        results = dask_results(client, symbols, first, task, in_flight=max(8 * threads, 32),
                               symbols_per_task=cfg.symbols_per_task)
        try:
            yield results
        finally:
            results.close()


def run_scan(cfg: ScanConfig, resume: bool = False, open_results=execute) -> dict[str, Any]:
    """Run the whole scan; returns the run.json content. Raises ScanError subclasses.

    open_results: the execute() of this module, or a stand-in with the same signature (the
    benchmark plugs in a ProcessPoolExecutor there to compare like with like).
    """
    started = time.time()
    symbols, invalid, ignored = select_symbols(cfg)
    for name in invalid:
        log.warning("Skipping folder symbol=%s: not a valid symbol name", name)
    specs = resolve_detectors(cfg.detectors, cfg.params)
    task = ScanTask.from_config(cfg, specs)
    writer = OutputWriter(cfg.out_dir, specs, cfg.forward_windows, run_key(cfg, symbols), resume)
    first = writer.flushed
    if first:
        log.info("Resuming: %d/%d symbols already flushed", first, len(symbols))
    if ignored:
        log.warning("Ignored %d entries under %s that are not symbol=XXX folders: %s",
                    len(ignored), cfg.ohlcv_path, ", ".join(ignored[:5]))
    log.info("Scanning %d symbols with %d detectors", len(symbols), len(specs))

    progress = Progress(len(symbols), first)
    info: dict[str, Any] = {"workers": cfg.workers, "scheduler_address": cfg.scheduler_address,
                            "dashboard": None, "cluster_start_seconds": 0.0}

    def consume(results: Iterator[tuple[int, SymbolResult]]) -> None:
        buffer: dict[int, SymbolResult] = {}
        for i, result in results:
            if result.error is not None:
                error = result.error
                if cfg.on_error == "fail":
                    raise SymbolFailed(result.symbol, error.detector, error.message, error.traceback)
                log.warning("Skipping symbol %s: %s", result.symbol,
                            (f"detector {error.detector!r}: " if error.detector else "") + error.message)
            buffer[i] = result
            while True:  # flush whole chunks in symbol order, so files never depend on completion order
                start = writer.flushed
                size = min(cfg.flush_every, len(symbols) - start)
                if size == 0 or any(j not in buffer for j in range(start, start + size)):
                    break
                writer.flush([buffer.pop(j) for j in range(start, start + size)])
                progress.report(writer.flushed)

    with open_results(cfg, symbols, first, task, info) as results:
        consume(results)

    failed = [{"symbol": name, "detector": None, "error": "invalid symbol name (folder left out)"}
              for name in invalid] + writer.state["failed"]
    forward = {spec.name: writer.read_forward(spec) for spec in specs}
    summary = summarize(forward, cfg.forward_windows, {s.name: s.baseline for s in specs},
                        symbols=len(symbols) + len(invalid) - len(failed), failed_symbols=len(failed))
    info.update({
        "config": cfg.as_dict(),
        "symbols": {"total": len(symbols) + len(invalid), "done": len(symbols) + len(invalid) - len(failed),
                    "failed": len(failed)},
        "failed": failed,
        "events": {name: len(frame) for name, frame in forward.items()},
        "bars_read": writer.state["bars"],
        "repairs": writer.state["repairs"],
        "symbols_without_bars": writer.state["no_bars"],
        "ignored_entries": ignored,
        "cpu_seconds": {k: round(v, 3) for k, v in sorted(writer.state["cpu_seconds"].items())},
        "wall_seconds": round(time.time() - started, 3),
        "resumed_from": first,
        "versions": versions(),
    })
    writer.finalize(info, {"summary.csv": summary.to_csv(index=False).encode(),
                           "report.html": build_report(summary, forward, info).encode()})
    print(format_summary(summary))
    if failed:
        print(f"\n{len(failed)} symbol(s) failed and were skipped: "
              + ", ".join(f["symbol"] for f in failed[:10]) + (" ..." if len(failed) > 10 else ""))
    log.info("Wrote %s (%.1fs); report: %s", cfg.out_dir, info["wall_seconds"], Path(cfg.out_dir) / "report.html")
    return info


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)  # the scan's own messages only: Dask's INFO chatter stays out
    log.setLevel(logging.INFO)
    log.propagate = False
    signal.signal(signal.SIGTERM, _raise_interrupted)
    args = parse_args(argv)
    try:
        try:
            cfg = config_from_args(args)
            with hold_output_folder(cfg.out_dir):  # before any process starts; a second run stops here
                run_scan(cfg, resume=args.resume)
        except KeyboardInterrupt:
            raise Interrupted("interrupted; flushed symbols are kept, rerun with --resume to continue") from None
    except ScanError as exc:  # the one place user errors are reported
        if isinstance(exc, SymbolFailed) and exc.traceback_text:
            print(exc.traceback_text, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

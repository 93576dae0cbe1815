"""The driver: `python -m harness.run [--config config.yaml] [flags]`, and harness.api's scan().

A run is run_scan(): a short list of named steps over typed records (RunPlan, Execution), each a
function of this module but finish_outputs (harness.finish); none holds detector or statistics logic:

    prepare_run        config -> RunPlan: the universe (harness.io), the detectors, the staging
                       folder (harness.staging; a resumed run's checked first)
    execute            where the tasks run: the run's executor (harness.executors: this process, a
                       LocalCluster, a remote scheduler or a caller's Client)
    stage_results      each symbol's result (harness.task) into its chunk; a whole chunk staged
    finish_outputs     the market index, market-adjusted returns, every detector's final files'
                       bytes (harness.finish, run by the executor: on the cluster's workers when
                       there are some)
    write_statistics   summary.csv, paths.csv, quantiles.csv (harness.stats.summary)
    run_facts          run.json's content; then report.html (harness.report) and run.json

The driver alone writes files (harness.staging, harness.final_files) and logs; workers compute and
return data.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence


if __name__ == "__main__":
    # a Ctrl-C during the imports below (~1 s): the exit of a later one, without their traceback
    from harness.signals import exit_quietly_while_importing
    exit_quietly_while_importing()

import psutil

import pandas as pd

from harness.stats.benchmark import market_membership
from harness import __version__
from harness.config import ScanConfig, load_config, params_json, read_yaml
from harness.detectors import DetectorSpec, resolve_detectors
from harness.errors import ConfigError, Interrupted, LookAheadError, ScanError, SymbolFailed
from harness.executors import Executor, executor_for
from harness.finish import Evaluated, finish_outputs
from harness.fingerprint import changed_inputs, run_fingerprint, source_digest, versions
from harness.io import Universe, invalid_folder_error, list_partitions, remote_call_running, repair_totals
from harness.progress import Progress
from harness.logs import show_messages
from harness.redact import redact
from harness.signals import INTERRUPTED, ignore_interrupts, stop_on_signals
from harness.detector_files import file_names
from harness.outdir import REUSE_RECORD, hold_output_folder
from harness.reuse import (Reuse, ReuseAbandoned, abandoned, base_key, detector_key, kept_statistics, plan_reuse,
                           record_entry, record_text)
from harness.final_files import FinalFiles
from harness.staging import StagingFolder, staged_detectors
from harness.stats.summary import format_summary, summarize
from harness.task import CANNOT_CUT, LOOKAHEAD_MIN_BARS, ScanSettings, SymbolResult

log = logging.getLogger("scan")



def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="symbol-scan",
                                     description="Run every detector over every symbol and summarise forward returns.")
    parser.add_argument("--config", help="YAML config (default: ./config.yaml when there is one, else the "
                        "documented defaults)")
    parser.add_argument("--workers", type=int, help="worker processes (1 = in-process, no Dask)")
    parser.add_argument("--scheduler", dest="scheduler_address", help="remote scheduler, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("--symbols", help="comma-separated symbols to scan (default: all)")
    parser.add_argument("--out", dest="out_dir", help="output folder")
    parser.add_argument("--data", dest="ohlcv_path", help="dataset root holding symbol=XXX/ folders")
    parser.add_argument("--on-error", dest="on_error", choices=("fail", "skip"), help="what a failing symbol does")
    parser.add_argument("--detectors", help="comma-separated detector names, instead of the config's `detectors`")
    parser.add_argument("--params", help="JSON parameters, instead of the config's `params`: "
                        "'{\"volume_spike\": {\"multiple\": 4}}'")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false", default=None,
                        help="scan every detector again, even those unchanged since the run in --out (reuse: false)")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="no progress and no log lines: the summary, warnings and errors only")
    loudness.add_argument("-v", "--verbose", action="store_true", help="Dask's own log lines too")
    parser.add_argument("--version", action="version", version=f"symbol-scan {__version__}")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ScanConfig:
    overrides = {key: getattr(args, key) for key in
                 ("workers", "scheduler_address", "symbols", "out_dir", "ohlcv_path", "on_error", "detectors", "reuse")}
    overrides["params"] = params_json("--params", args.params)
    path = args.config or ("config.yaml" if Path("config.yaml").is_file() else None)
    return load_config(read_yaml(path) if path else {}, overrides)


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


def code_version() -> dict[str, str | None]:
    """This tool's version, and the git commit of its code when it runs from a checkout (with
    "+changes" when files differ from it); None outside one."""
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        where = Path(__file__).resolve().parent.parent
        run = functools.partial(subprocess.run, cwd=where, capture_output=True, text=True, timeout=5)
        head = run(["git", "rev-parse", "--short=12", "HEAD"])
        if head.returncode == 0:
            dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
            commit = head.stdout.strip() + ("+changes" if dirty else "")
    return {"symbol_scan": __version__, "git": commit}


class Timings(dict):
    """Seconds per step of a run, for run.json: each lap() records the time since the previous one."""

    def __init__(self, imports: float = 0.0):
        super().__init__(imports=round(imports, 3))
        self.mark = time.time()

    def lap(self, step: str, less: float = 0.0) -> None:
        now = time.time()
        self[step] = round(now - self.mark - less, 3)
        self.mark = now


LOOKAHEAD_SYMBOLS = 3  # the universe's first symbols are checked for look-ahead (lookahead_check)


def refuse_lookahead(result: SymbolResult) -> None:
    """lookahead_check: fail: a LookAheadError, at once, when a checked symbol's result shows a
    detector that looks ahead (the check runs on the first symbols scanned: within seconds)."""
    for detector, change in sorted((result.lookahead or {}).items()):
        if change and not change.startswith(CANNOT_CUT):
            raise LookAheadError(f"detector {detector!r} looks ahead: on symbol {result.symbol!r} {change}; fix it, "
                                 "or set lookahead_check: warn")


def lookahead_findings(checked: Mapping[str, Mapping[str, str]], specs: Sequence[DetectorSpec]) -> dict[str, str]:
    """Per detector what the check found, from the staged findings of the checked symbols
    (StagedFacts.lookahead: symbol -> detector -> finding, a resumed run's included), the first
    symbol's in symbol order that says something: "ok", "not checked" (no symbol checked: off,
    or fewer bars than harness.task.LOOKAHEAD_MIN_BARS), the line saying how it looks ahead, or
    that it could not be checked (CANNOT_CUT). The same whatever order the tasks finished in."""
    found = {}
    for spec in specs:
        said = [(symbol, checked[symbol].get(spec.name, "")) for symbol in sorted(checked)]
        symbol, change = next(((sym, c) for sym, c in said if c), (None, ""))
        found[spec.name] = ("not checked" if not checked else "ok" if not change
                            else f"detector {spec.name!r} on symbol {symbol!r}: {change}" if change.startswith(CANNOT_CUT)
                            else f"detector {spec.name!r} looks ahead: on symbol {symbol!r} {change}")
    return found


def looks_ahead(findings: Mapping[str, str]) -> set[str]:
    """The detectors lookahead_findings() found looking ahead."""
    return {name for name, line in findings.items() if " looks ahead: " in line}


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run is about to do (prepare_run): its universe, detectors and staging folder."""

    cfg: ScanConfig
    symbols: list[str]          # the universe, sorted
    invalid: list[str]          # symbol= folders with an invalid name (left out: on_error skip)
    ignored: list[str]          # entries of the data root that are not symbol= folders
    specs: list[DetectorSpec]   # every detector of the run, in run order
    scanned: list[DetectorSpec]  # those scanned (the others are kept from the previous run: harness.reuse)
    reuse: Reuse | None         # what is kept from the previous run
    keys: tuple[str, dict[str, str]]  # harness.reuse's base key, and each detector's key
    codes: dict[str, str]       # detector -> the digest of its code (harness.fingerprint.source_digest)
    settings: ScanSettings      # what scanning a symbol needs besides the symbol (harness.task)
    staging: StagingFolder
    todo: list[int]             # indices into symbols of those to scan (not staged by a resumed run)
    resumed_from: int           # symbols already staged by the run resumed


def prepare_run(cfg: ScanConfig, resume: bool, reuse: bool = True) -> RunPlan:
    """The universe, the detectors (those the previous run left unchanged kept, with reuse and
    cfg.reuse: harness.reuse) and the staging folder (new, or the resumed run's after checking that
    nothing it staged has changed); logs what the run will do."""
    symbols, invalid, ignored = select_symbols(cfg)
    for name in invalid:
        log.warning("Skipping folder symbol=%s: not a valid symbol name", name)
    specs = resolve_detectors(cfg.detectors, cfg.params, cfg.detector_entries)
    codes = {spec.name: source_digest(spec.func)[0] for spec in specs}
    keys = base_key(cfg.as_dict(), symbols), {spec.name: detector_key(spec, codes[spec.name]) for spec in specs}
    # a resumed run keeps what the run it resumes kept (it staged only the others)
    staged = staged_detectors(Path(cfg.out_dir)) if resume else None
    if staged is not None and not set(staged) <= {spec.name for spec in specs}:
        staged = None  # another list of detectors: StagingFolder refuses the resume, naming it
    if staged is not None and not cfg.reuse and len(staged) < len(specs):
        log.warning("--no-reuse is ignored by --resume: the run it continues kept %d detector(s) of the previous run",
                    len(specs) - len(staged))
    kept = plan_reuse(Path(cfg.out_dir), *keys, specs, staged) if reuse and (cfg.reuse or staged is not None) else None
    scanned = [spec for spec in specs if kept is None or spec.name not in kept.kept]
    staging = StagingFolder(cfg.out_dir, scanned, cfg.forward_windows, run_fingerprint(cfg, symbols, scanned, codes), resume,
                            len(symbols), cfg.flush_every, cfg.market_outlier_move)
    moved = changed_inputs(staging.facts.inputs, cfg.ohlcv_path, cfg.storage_options) if staging.resumed else []
    if moved:  # their staged rows came from other bars
        raise ScanError(f"--resume: the input files of {len(moved)} staged symbol(s) changed since the unfinished "
                        f"run staged them ({', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}: files added, "
                        "removed, rewritten or touched); rerun without --resume to start over")
    if resume and not staging.resumed:  # said, so that a mistyped --out is not taken for a resumed run
        log.warning("--resume: no interrupted run in %s to continue; scanning every symbol", cfg.out_dir)
    elif staging.flushed:
        log.info("Resuming: %d/%d symbols already flushed", staging.flushed, len(symbols))
    if ignored:
        log.warning("Ignored %d entries under %s that are not symbol=XXX folders: %s",
                    len(ignored), cfg.ohlcv_path, ", ".join(ignored[:5]))
    if scanned:
        log.info("Scanning %d symbols with %d detectors", len(symbols), len(scanned))
    else:
        log.info("Reading %d symbols (every detector kept: the reads check the inputs and make the market index)",
                 len(symbols))
    todo = [i for c in range(staging.chunks) if c not in staging.done_chunks for i in staging.chunk_range(c)]
    # the universe's first symbols, whoever runs them and whether or not a run is resumed (those an
    # interrupted run staged have their findings in state.json): the same symbols, serially and on Dask
    checked = frozenset() if cfg.lookahead_check == "off" else frozenset(symbols[i] for i in todo
                                                                          if i < LOOKAHEAD_SYMBOLS)
    settings = dataclasses.replace(ScanSettings.from_config(cfg, scanned), lookahead_symbols=checked)
    return RunPlan(cfg, symbols, invalid, ignored, specs, scanned, kept, keys, codes, settings, staging, todo,
                   staging.flushed)


@dataclasses.dataclass
class Execution:
    """A run's executor at work (harness.executors): the scan's results, and what the rest of the
    run reads of it."""

    executor: Executor                           # how the work runs; its attributes say where
    results: Iterator[tuple[int, SymbolResult]]  # (symbol index, result), in completion order


@contextlib.contextmanager
def execute(plan: RunPlan, client: Any = None) -> Iterator[Execution]:
    """The run's executor (harness.executors.executor_for: this process for workers 1 without a
    scheduler or a client, else Dask; `client`: a caller's own distributed.Client, used and left
    open) at work on plan.todo. On the way out cancels what is pending and closes the cluster (if
    it is ours). A caller's client closed during the run (in a notebook's other cell, or its
    cluster shut down) is one ScanError, whatever Dask raised then (ClosedClientError,
    CancelledError, ...).
    """
    executor = executor_for(plan.cfg, client)
    try:
        with executor:
            yield Execution(executor, executor.run_scan(plan.symbols, plan.todo, plan.settings))
    except Exception as exc:
        if isinstance(exc, ScanError) or not executor.client_closed():
            raise
        flushed = plan.staging.flushed
        raise ScanError("the Dask client was closed during the run; " + (
            f"the {flushed} symbols flushed so far are kept: run again with resume=True to continue" if flushed
            else "no symbol was flushed yet, so there is nothing to resume")) from None


def stage_results(plan: RunPlan, results: Iterator[tuple[int, SymbolResult]], progress: Progress) -> None:
    """Stage every chunk as its last symbol's result comes in; a failing symbol stops the run
    (on_error: fail) or is logged and staged as failed (skip)."""
    cfg, staging = plan.cfg, plan.staging
    chunks: dict[int, dict[int, SymbolResult]] = {}  # chunk -> its results so far
    progress.start()
    try:
        for i, result in results:
            if cfg.lookahead_check == "fail" and result.error is None:
                refuse_lookahead(result)
            if result.error is not None:
                error = result.error
                if cfg.on_error == "fail":
                    raise SymbolFailed(result.symbol, error.detector, error.message, error.traceback, error.exit_code)
                log.warning("Skipping symbol %s: %s", result.symbol,
                            (f"detector {error.detector!r}: " if error.detector else "") + error.message)
            chunk = i // cfg.flush_every
            if chunk in staging.done_chunks:
                continue  # a task that ran twice (its worker died after finishing it)
            buffer = chunks.setdefault(chunk, {})
            buffer[i] = result
            progress.advance()
            if len(buffer) == len(staging.chunk_range(chunk)):
                # a chunk's part holds its symbols in order, so files never depend on completion order
                staging.write_chunk(chunk, [buffer[j] for j in staging.chunk_range(chunk)])
                del chunks[chunk]
                progress.report()
    finally:
        progress.close()
    missing = [plan.symbols[i] for c in range(staging.chunks) if c not in staging.done_chunks
               for i in staging.chunk_range(c)]
    if missing:  # never expected: every task yields each of its symbols, or the run stopped
        raise ScanError(f"no result came back for {len(missing)} symbol(s) ({', '.join(missing[:5])}); "
                        "rerun with --resume to scan them")


def run_findings(plan: RunPlan) -> dict[str, str]:
    """Per detector, in run order, what the look-ahead check found (lookahead_findings): a kept
    detector's as the previous run found it."""
    found = lookahead_findings(plan.staging.facts.lookahead, plan.scanned)
    kept = plan.reuse.kept if plan.reuse else {}
    return {spec.name: kept[spec.name]["lookahead"] if spec.name in kept else found[spec.name] for spec in plan.specs}


def with_kept(plan: RunPlan, evaluated: Evaluated) -> Evaluated:
    """`evaluated` (the scanned detectors') with the kept detectors' statistics added
    (harness.reuse.kept_statistics), every detector in run order."""
    if plan.reuse is None:
        return evaluated
    cfg = plan.cfg
    kept = {spec.name: kept_statistics(Path(cfg.out_dir), spec, plan.reuse.kept[spec.name], cfg.forward_windows,
                                       plan.symbols, cfg.exclude_flagged)
            for spec in plan.specs if spec.name in plan.reuse.kept}
    names = [spec.name for spec in plan.specs]

    def pick(scanned: Mapping[str, Any], field: str) -> dict[str, Any]:
        return {name: getattr(kept[name], field) if name in kept else scanned[name] for name in names}

    paths = evaluated.paths
    return dataclasses.replace(
        evaluated, events=pick(evaluated.events, "events"), summaries=pick(evaluated.summaries, "summary"),
        quantiles=pick(evaluated.quantiles, "quantiles"),
        paths=pd.concat([kept[name].paths if name in kept else paths[paths["detector"] == name] for name in names],
                        ignore_index=True))


def reuse_record(plan: RunPlan, files: FinalFiles, evaluated: Evaluated) -> str:
    """REUSE_RECORD's text: what the next run may keep of this one (harness.reuse)."""
    cfg, (base, keys) = plan.cfg, plan.keys
    findings = run_findings(plan)
    kept = plan.reuse.kept if plan.reuse else {}
    paths = evaluated.paths
    entries = {}
    for spec in plan.specs:
        names = {name: kept[spec.name]["files"][name] if spec.name in kept else files.sha256[f"{spec.out_name}/{name}"]
                 for name in file_names()}
        entries[spec.name] = record_entry(keys[spec.name], names, findings[spec.name], evaluated.summaries[spec.name],
                                          evaluated.quantiles[spec.name],
                                          paths[paths["detector"] == spec.name].reset_index(drop=True),
                                          evaluated.events[spec.name], cfg.forward_windows, cfg.exclude_flagged)
    return record_text(base, plan.staging.facts.inputs, plan.staging.facts.contents, evaluated.null_hit_rates,
                       [f["symbol"] for f in plan.staging.facts.failed], entries)


def failed_symbols(plan: RunPlan) -> list[dict[str, Any]]:
    """Every symbol left out of the results: invalid folder names, then failures, by symbol."""
    return ([{"symbol": name, "detector": None, "error": "invalid symbol name (folder left out)"}
             for name in plan.invalid] + sorted(plan.staging.facts.failed, key=lambda f: f["symbol"]))


def write_statistics(plan: RunPlan, files: FinalFiles, evaluated: Evaluated) -> pd.DataFrame:
    """summary.csv, paths.csv and quantiles.csv; returns the summary."""
    cfg, specs = plan.cfg, plan.specs
    failed = len(failed_symbols(plan))
    summary = summarize(evaluated.events, cfg.forward_windows, {s.name: s.baseline for s in specs},
                        symbols=len(plan.symbols) + len(plan.invalid) - failed, failed_symbols=failed,
                        null_hit_rates=evaluated.null_hit_rates, detector_tables=evaluated.summaries,
                        lookahead=looks_ahead(run_findings(plan)))
    files.text("summary.csv", summary.to_csv(index=False))
    files.text("paths.csv", evaluated.paths.to_csv(index=False))
    files.text("quantiles.csv", pd.concat([evaluated.quantiles[s.name] for s in specs],
                                          ignore_index=True).to_csv(index=False))
    return summary


def run_facts(plan: RunPlan, executor: Executor, evaluated: Evaluated, started: float,
              timings: Timings) -> dict[str, Any]:
    """run.json's content (but the files list and the driver's peak memory, known at the very end)."""
    cfg, staged = plan.cfg, plan.staging.facts
    failed = failed_symbols(plan)
    total = len(plan.symbols) + len(plan.invalid)
    return {
        # the worker processes that ran, whoever started them (a caller's Client: its own); 1: this process
        "workers": executor.worker_processes or 1, **executor.facts(),
        "config": cfg.as_dict(),
        "symbols": {"total": total, "done": total - len(failed), "failed": len(failed)},
        "failed": failed,
        "run_id": uuid.uuid4().hex,  # what a ScanResult is bound to (harness.api)
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "version": code_version(),
        "detector_params": {spec.name: spec.params for spec in plan.specs},  # defaults included
        # the digest of the code each detector ran (harness.fingerprint; a user's imported afresh)
        "detector_code": dict(plan.codes),
        "events": {name: len(frame) for name, frame in evaluated.events.items()},
        "market": market_membership(evaluated.market, cfg.min_market_symbols),
        # sorted: chunks are staged in the order their tasks finish (the list stops at 1,000)
        "market_outliers": {"count": staged.market_outlier_count,
                            "bars": sorted(staged.market_outliers, key=lambda b: (b["symbol"], b["date"]))},
        "lookahead": {"check": cfg.lookahead_check, "symbols": sorted(staged.lookahead),
                      "detectors": run_findings(plan)},
        "null_hit_rates": {str(h): rate for h, rate in evaluated.null_hit_rates.items()},
        "bars_read": staged.bars,
        "repairs": dict(sorted(staged.repairs.items())),
        "symbols_without_bars": sorted(staged.no_bars),
        "ignored_entries": plan.ignored,
        "cpu_seconds": {k: round(v, 3) for k, v in sorted(staged.cpu_seconds.items())},
        "wall_seconds": round(time.time() - started, 3),
        "resumed_from": plan.resumed_from,
        # the detectors kept from the previous run (harness.reuse), and when it ran
        "reused": {"from": plan.reuse.since, "detectors": [s.name for s in plan.specs if s.name in plan.reuse.kept]}
                  if plan.reuse else None,
        "timings": timings,
        "finish_jobs": evaluated.jobs,  # within finalize: the detectors' jobs (harness.finish)
        "versions": versions(),
    }


def run_scan(cfg: ScanConfig, resume: bool = False, imports_seconds: float = 0.0, client: Any = None,
             console: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run the whole scan; returns the run.json content. Raises ScanError subclasses.

    imports_seconds: how long the process took to get here, for run.json's timings. client: a
    caller's distributed.Client to run on (left open). console: print the summary table and the
    closing notes to stdout (the CLI); else the notes go to the log. progress: show progress.
    A run that kept detectors of the previous one and then finds it should not have (a symbol's
    files changed, a symbol failed: harness.reuse) starts again, every detector scanned.
    """
    try:
        return _run_scan(cfg, resume, imports_seconds, client, console, progress, reuse=True)
    except ReuseAbandoned as exc:
        log.warning("Not reusing the previous run after all: %s; scanning every detector%s", exc,
                    " (the resumed run's staged symbols are scanned again)" if resume else "")
        return _run_scan(cfg, False, imports_seconds, client, console, progress, reuse=False)


def _run_scan(cfg: ScanConfig, resume: bool, imports_seconds: float, client: Any, console: bool, progress: bool,
              reuse: bool) -> dict[str, Any]:
    started = time.time()
    timings = Timings(imports_seconds)
    plan = prepare_run(cfg, resume, reuse)
    timings.lap("prepare")
    # The final files' block ends after the cluster's: the end's jobs on the workers are over (or
    # cancelled) before its temp files are committed or removed.
    with contextlib.ExitStack() as finishing, execute(plan, client) as execution:
        stage_results(plan, execution.results, Progress(len(plan.symbols), plan.resumed_from, enabled=progress))
        if plan.reuse is not None:
            why = abandoned(plan.reuse, plan.staging.facts.inputs, plan.staging.facts.contents,
                            plan.staging.facts.failed)
            if why:
                raise ReuseAbandoned(why)
        timings["cluster_start"] = execution.executor.start_seconds
        timings.lap("scan", less=execution.executor.start_seconds)
        files = finishing.enter_context(plan.staging.final_files())
        evaluated = finish_outputs(plan.staging, files, plan.scanned, cfg.forward_windows,
                                   range(cfg.path_offsets[0], cfg.path_offsets[1] + 1),
                                   cfg.benchmark_settings(), plan.symbols, execution.executor.run_jobs,
                                   execution.executor.processes,
                                   plan.reuse.null_hit_rates if plan.reuse else None)
        evaluated = with_kept(plan, evaluated)
        summary = write_statistics(plan, files, evaluated)
        timings.lap("finalize")
        info = run_facts(plan, execution.executor, evaluated, started, timings)
        from harness.report import build_report  # imported when needed: a mistake exits before it
        files.text("report.html", build_report(summary, evaluated.events, evaluated.paths, info,
                                               evaluated.quantiles))
        timings.lap("report")
        timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 3)
        info["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        info["files"] = [*files.names, *(f"{spec.out_name}/{name}" for spec in plan.specs
                                           if plan.reuse and spec.name in plan.reuse.kept
                                           for name in plan.reuse.kept[spec.name]["files"]), "run.json", REUSE_RECORD]
        files.text("run.json", json.dumps(info, indent=2, default=str) + "\n")
        # last: renamed into place after every other file, the record says what the folder holds
        files.text(REUSE_RECORD, reuse_record(plan, files, evaluated))
    if console:
        print(format_summary(summary))
    for note in closing_notes(info, cfg):
        if console:
            print(f"\n{note}")
        else:
            log.warning(note)
    log.info("Wrote %s (%.1fs); report: %s", cfg.out_dir, info["wall_seconds"], Path(cfg.out_dir) / "report.html")
    return info


def closing_notes(info: Mapping[str, Any], cfg: ScanConfig) -> list[str]:
    """What a researcher must know about a finished run besides its summary: detectors that look
    ahead (lookahead_check: warn), failed symbols, repairs of the data, market outliers, a thin
    market, symbols without bars (each a line)."""
    findings = info["lookahead"]["detectors"]
    notes = [f"warning: {findings[name]}; its rows get no star (lookahead_check: warn)"
             for name in sorted(looks_ahead(findings))]
    notes += [f"note: {line}" for line in findings.values() if CANNOT_CUT in line]
    everything_kept = info["reused"] and len(info["reused"]["detectors"]) == len(info["detector_params"])
    if info["lookahead"]["check"] != "off" and not info["lookahead"]["symbols"] and not everything_kept:
        notes.append(f"note: the look-ahead check ran on no symbol (the first {LOOKAHEAD_SYMBOLS} have fewer than "
                     f"{LOOKAHEAD_MIN_BARS} bars, or were staged by a run without the check)")
    failed = info["failed"]
    if failed:
        notes.append(f"{len(failed)} symbol(s) failed and were skipped: "
                     + ", ".join(f["symbol"] for f in failed[:10]) + (" ..." if len(failed) > 10 else ""))
    repaired = repair_totals(info["repairs"])
    if repaired:  # each changes what the detectors see: said here, not only in run.json
        notes.append("Repairs and flags of the data (rows; run.json repairs; README, \"The dataset\"): " + "; ".join(
            f"{kind} {total:,} in {len(names)} symbol(s) ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"
            for kind, (total, names) in repaired.items()))
    outliers = info["market_outliers"]
    if outliers["count"]:  # real splits and relistings must not pass silently
        move = cfg.market_outlier_move
        shown = ", ".join(f"{b['symbol']} {b['date']} {100 * b['return']:+.1f}%" for b in outliers["bars"][:5])
        notes.append(f"{outliers['count']} bar return(s) beyond +{100 * move:.0f}% / {100 * (1 / (1 + move) - 1):.0f}% "
                     f"were left out of the market index (market_outlier_move): {shown}"
                     + (" ..." if outliers["count"] > 5 else "") + "; unadjusted splits, relistings or bad prints? "
                     "Those symbols' own forward returns still hold them (run.json market_outliers)")
    market = info["market"]
    if market["thin_dates"]:  # not an error, but it changes which abnormal returns exist
        notes.append(f"{market['thin_dates']} of the market's {market['dates'] - 1} dates had fewer than "
                     f"{market['min_market_symbols']} symbols with a return (smallest: {market['smallest']['symbols']} "
                     f"on {market['smallest']['date']}); abnormal returns across them are NaN (min_market_symbols; "
                     "summary.csv valid - abn_valid)")
    empty = info["symbols_without_bars"]
    if empty:  # not an error (a symbol listed before it traded), but a misnamed file looks the same
        notes.append(f"{len(empty)} symbol(s) had no bars to scan (no *.parquet file, every row dropped, or none in "
                     "the lookback): " + ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
                     + "; run.json has their repairs and ignored_files")
    return notes


def seconds_since_start() -> float:
    """How long this process has existed. From the kernel's start time in clock ticks (10 ms) on
    Linux: psutil's create_time() adds the boot time in whole seconds, up to a second off."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return time.time() - psutil.Process().create_time()


def current_folder_importable() -> None:
    """Put the current folder first on sys.path, as `python -m harness.run` has it: the installed
    `symbol-scan` script's sys.path starts with its own bin folder instead, and a user's
    `mydetectors.py` beside the config was not found (issue 35)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: harness.api's scan with flags, the summary printed, one line per error."""
    stop_on_signals()
    current_folder_importable()
    imports = seconds_since_start()  # interpreter start and imports so far
    args = parse_args(argv)
    show_messages(logging.WARNING if args.quiet else logging.INFO, dask=args.verbose)
    try:
        try:
            cfg = config_from_args(args)
            with hold_output_folder(cfg.out_dir):  # before any process starts; a second run stops here
                run_scan(cfg, resume=args.resume, imports_seconds=imports, progress=not args.quiet)
        except KeyboardInterrupt:
            raise Interrupted(INTERRUPTED) from None
    except ScanError as exc:  # the one place user errors are reported
        if isinstance(exc, SymbolFailed) and exc.traceback_text:
            print(exc.traceback_text, file=sys.stderr)
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        if remote_call_running():
            # A remote listing abandoned by Ctrl-C or its timeout: pyarrow's exit handler would wait
            # up to a minute for its S3 request. Nothing else is open yet (listing comes first).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        return exc.exit_code
    return 0


def cli() -> None:
    """The `symbol-scan` console script (and `python -m harness.run`)."""
    code = main()
    ignore_interrupts()  # the run is over
    # The interpreter's exit would collect garbage over every object of the run (pandas, Dask,
    # the run's frames): 0.2-0.7 s at 20-year histories. Frozen, they are simply left to the
    # process's end; every file is written and closed by now.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    cli()

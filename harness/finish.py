"""The end of a run: from the staged chunks to the market, market-adjusted returns, statistics and files.

Everything here needs the whole universe (the market index is known only when every symbol is
in), so it runs after the scan. The driver builds the market index from the chunks' market sums;
then each detector is finished on its own: its staged chunks, streamed in chunk order, become its
final events.parquet and forward.parquet (abn_<h> added), the columns the summary needs and its
event-time paths. Detectors are independent, so the driver splits them into jobs of about equal
cost (finish_detectors; a job reads each chunk once for its detectors) and hands the jobs to
whatever runs them: its own loop (one job), or a LocalCluster's workers (one job per worker),
which see the same disk; the driver writes every other file and moves them all into place.
Memory per detector grows with its events and the market dates (the paths' sums), not with the
number of bars. The arithmetic lives
in harness.market and harness.summary; this module moves arrays between them and the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.cpuslots import cpu_slot
from harness.detectors import DetectorSpec
from harness.eval import abnormal_column, forward_column, market_column
from harness.market import event_returns, level_grid, market_index
from harness.outdir import os_reason
from harness.output import BAR, FinalFiles, OutputWriter, StagedChunk, read_staged_chunk, temp_name
from harness.summary import PathSums

# A detector's fixed cost per staged chunk, counted in events (measured at 20-year histories:
# ~9 us per event, ~10 ms per chunk), for splitting detectors into jobs of equal cost.
EVENTS_PER_CHUNK_COST = 1200


@dataclasses.dataclass
class Evaluated:
    """What finish_outputs() computed, for the summary and the report."""

    market: pd.DataFrame               # harness.market.MARKET_COLUMNS
    events: dict[str, pd.DataFrame]    # detector -> date, fwd_<h>, abn_<h>, mkt_<h> of every event
    paths: pd.DataFrame                # harness.summary.PATH_COLUMNS, detectors in run order
    jobs: dict[str, Any]               # for run.json: jobs run, their seconds, each detector's cost


@dataclasses.dataclass(frozen=True)
class DetectorFiles:
    """One detector to finish: which it is, its final schemas (OutputWriter.schemas()) and files."""

    code: int                          # its number in the run (its staged rows' code)
    name: str
    events_schema: pa.Schema
    forward_schema: pa.Schema
    events_file: Path                  # final paths: the job writes temp_name() of each
    forward_file: Path


@dataclasses.dataclass(frozen=True)
class FinishJob:
    """Everything finishing some detectors needs, for any process that sees the staging folder."""

    staging: Path
    chunks: int                        # staged chunks 0 .. chunks - 1
    detectors: tuple[DetectorFiles, ...]
    windows: tuple[int, ...]
    offsets: tuple[int, ...]           # the paths' offsets
    market: pd.DataFrame               # market_index()
    cpu_slots: int | None = None       # harness.cpuslots semaphore of the LocalCluster, if any


def detector_groups(costs: Sequence[float], groups: int) -> list[list[int]]:
    """Detector numbers split into at most `groups` groups of about equal total cost (largest
    first, each to the cheapest group so far; ties to the smaller, then the lower-numbered group).
    Each group is sorted; no group is empty; the same costs always give the same groups. No
    detectors: no groups."""
    loads = [0.0] * max(1, min(groups, len(costs)))
    members: list[list[int]] = [[] for _ in loads]
    for code in sorted(range(len(costs)), key=lambda c: (-costs[c], c)):
        cheapest = min(range(len(loads)), key=lambda g: (loads[g], len(members[g]), g))
        loads[cheapest] += costs[code]
        members[cheapest].append(code)
    return [sorted(group) for group in members if group]


def _adjust(chunk: StagedChunk, name: str, windows: Sequence[int], offsets: Sequence[int], levels: np.ndarray
            ) -> tuple[pa.Table, pd.DataFrame, np.ndarray, np.ndarray]:
    """Detector `name`'s staged forward rows of one chunk, market-adjusted.

    Returns the final forward table (abn_<h> added, the bar number dropped), the in-memory columns
    for the summary (date, fwd_<h>, abn_<h>, mkt_<h>), and the event-time (ret, mkt) arrays.
    """
    staged = chunk.forward[name]
    first, length = chunk.spans_of(staged.column("symbol"))
    bars = staged.column(BAR).to_numpy()
    # one gather for the paths' offsets and the windows (usually among them)
    extra = [h for h in windows if h not in offsets]
    ret, market = event_returns(chunk.days, chunk.close, levels, first, length, bars, [*offsets, *extra])
    at = {k: n for n, k in enumerate([*offsets, *extra])}
    columns = {"date": staged.column("date").to_numpy()}
    table = staged.drop_columns([BAR])
    for h in windows:
        raw = staged.column(forward_column(h)).to_numpy()
        mkt = np.where(np.isnan(raw), np.nan, market[:, at[h]])
        abn = raw - mkt
        table = table.append_column(abnormal_column(h), pa.array(abn, pa.float64()))
        columns.update({forward_column(h): raw, abnormal_column(h): abn, market_column(h): mkt})
    return table, pd.DataFrame(columns), ret[:, :len(offsets)], market[:, :len(offsets)]


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError while writing `path` (at its temp name) gets `path` as its filename."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, os_reason(exc), str(path)) from None


def finish_detectors(job: FinishJob) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """For each of the job's detectors: write its events and forward files (temp names; one row
    group per chunk that has events) and return its events' (date, fwd_<h>, abn_<h>, mkt_<h>) and
    its PATH_COLUMNS paths, in the job's order.

    Reads each staged chunk once for all the job's detectors. Raises OSError with the final file's
    path as filename when a write fails. A detector's bytes depend only on the staged chunks and
    the market, not on the other detectors of the job or on the process.
    """
    writers: list[tuple[Path, pq.ParquetWriter]] = []  # (final path, its writer), two per detector
    try:
        with cpu_slot(job.cpu_slots):
            levels = level_grid(job.market)
            dates = job.market["date"].to_numpy()
            for d in job.detectors:
                for path, schema in ((d.events_file, d.events_schema), (d.forward_file, d.forward_schema)):
                    with _naming(path):
                        writers.append((path, pq.ParquetWriter(temp_name(path), schema)))
            wanted = [(d.code, d.name, d.events_schema, d.forward_schema) for d in job.detectors]
            sums = {d.name: PathSums(job.offsets, dates) for d in job.detectors}
            frames: dict[str, list[pd.DataFrame]] = {d.name: [] for d in job.detectors}
            for number in range(job.chunks):
                chunk = read_staged_chunk(job.staging, number, wanted)
                for n, d in enumerate(job.detectors):
                    table, frame, path_ret, path_mkt = _adjust(chunk, d.name, job.windows, job.offsets, levels)
                    if table.num_rows:  # as many as its events
                        for (path, writer), part in zip(writers[2 * n:2 * n + 2],
                                                        (chunk.events[d.name], table.cast(d.forward_schema))):
                            with _naming(path):
                                writer.write_table(part, row_group_size=part.num_rows)
                    frames[d.name].append(frame)
                    sums[d.name].add(frame["date"].to_numpy(), path_ret, path_mkt)
            while writers:
                path, writer = writers.pop(0)
                with _naming(path):
                    writer.close()
    finally:
        for _, writer in writers:  # after a failure: the driver removes the temp files
            with contextlib.suppress(Exception):
                writer.close()
    return [(pd.concat(frames[d.name], ignore_index=True), sums[d.name].paths(d.name)) for d in job.detectors]


# How the driver runs the jobs: a function applied to each job, the results in job order.
RunAll = Callable[[Callable[[FinishJob], Any], Sequence[FinishJob]], list[Any]]


def in_this_process(function: Callable[[FinishJob], Any], jobs: Sequence[FinishJob]) -> list[Any]:
    """RunAll in the driver, one job after the other."""
    return [function(job) for job in jobs]


def finish_outputs(writer: OutputWriter, files: FinalFiles, detectors: Sequence[DetectorSpec],
                   windows: Sequence[int], offsets: Sequence[int], run_all: RunAll = in_this_process,
                   processes: int = 1, cpu_slots: int | None = None) -> Evaluated:
    """Write market.parquet and each detector's final events.parquet and forward.parquet
    (abn_<h> added) into `files`; return the market, the events' returns and the paths.

    run_all runs the jobs: in_this_process, or on `processes` workers that see the staging folder
    (the detectors are split into that many jobs of about equal cost). A failed write is the
    writer's OutputError naming the file.
    """
    market = market_index(writer.market_parts())
    files.table("market.parquet", pa.Table.from_pandas(market, preserve_index=False))
    described = []
    for code, spec in enumerate(detectors):
        events_schema, forward_schema = writer.schemas(spec)
        described.append(DetectorFiles(code, spec.name, events_schema, forward_schema,
                                       files.reserve(f"{spec.out_name}/events.parquet"),
                                       files.reserve(f"{spec.out_name}/forward.parquet")))
    # what a detector costs: its events, and a fixed part per chunk (reading, writing, path sums)
    costs = writer.event_counts() + EVENTS_PER_CHUNK_COST * writer.chunks
    jobs = [FinishJob(writer.staging, writer.chunks, tuple(described[c] for c in group), tuple(windows),
                      tuple(offsets), market, cpu_slots) for group in detector_groups(costs.tolist(), processes)]
    started = time.perf_counter()
    try:
        done = run_all(finish_detectors, jobs)
    except OSError as exc:
        reason = exc.strerror or os_reason(exc)  # _naming keeps an errno-less message as strerror
        raise writer.cannot_write(Path(exc.filename) if exc.filename else writer.out_dir, reason) from None
    finished = {d.name: result for job, results in zip(jobs, done) for d, result in zip(job.detectors, results)}
    events = {spec.name: finished[spec.name][0] for spec in detectors}
    paths = pd.concat([finished[spec.name][1] for spec in detectors], ignore_index=True)
    facts = {"jobs": len(jobs), "seconds": round(time.perf_counter() - started, 3), "costs": costs.tolist()}
    return Evaluated(market, events, paths, facts)

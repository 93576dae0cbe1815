"""The end of a run: from the staged chunks to the market, market-adjusted returns, statistics and files.

Everything here needs the whole universe (the market index is known only when every symbol is
in), so it runs after the scan. The driver builds the market index from the chunks' market sums;
then each detector's staged chunks, in chunk order, become its final files (harness.detector_files:
events.parquet, forward.parquet with abn_<h> added), the columns the summary needs and its
event-time paths.

Units and pieces (sized by cluster.plan, which says how). A detector is cut into units, runs of
consecutive chunks; a unit's path sums are added up from zero, and a detector's units in unit
order, so the paths have the same bits whatever the workers. The units go into one job per
process: whole detectors where that balances the jobs, else a detector's consecutive units split
into pieces in several jobs, so that no single detector bounds the end of a run on many cores. A
job reads each staged chunk once for all its pieces.

Jobs write nothing: a piece returns each of its detector's files as parquet bytes (one row group
per chunk with events) and its numbers (PieceResult): a detector's only piece its statistics too.
The driver writes each file: an only piece's bytes as they are, a split detector's pieces joined
into the bytes one writer would have written (harness.parquet_parts; the joined footer is a
FooterJob's).
A split detector's statistics need all its events: they are more jobs, run side by side
(split_statistics): its paths (PathsJob, its units' path sums added up in unit order) and each
window's summary and quantile rows (WindowJob: window_statistics(), as an only piece computes
them per window). So the files are the same whatever the pieces.

The steps (finish_outputs): market index -> null jobs (the sign test's share of positive
abnormal returns over every bar, which the statistics need) -> plan_finish -> finish jobs ->
summary jobs (a split detector's statistics and footers) -> files written. run.json's
finish_jobs times each step and each job.

The jobs run wherever the run's executor says (a RunAll: its run_jobs, harness.executors): in
this process, or one job per worker of a Dask cluster, local (the workers read the staging
folder) or remote (the staged chunks of a job that reads some, its `chunks`, are sent to them:
harness.executors.dispatch.ShippedChunks). Memory per piece grows with its events and the market
dates (the paths' sums), not with the number of bars. The arithmetic lives in harness.stats.market,
harness.stats.benchmark and harness.stats.summary; this module moves arrays between them and the files.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import cluster.plan
from harness import detector_files
from harness.detectors import DetectorSpec
from harness.errors import ScanError
from harness.eval import abnormal_column, flagged_column, forward_column, market_column
from harness.stats.benchmark import Benchmark, BenchmarkReturns
from harness.stats.market import market_index
from harness.final_files import FinalFiles
from harness.parquet_parts import joined_tail, part_footer
from harness.staged_chunk import BAR, Staged, StagedChunk, read_staged_chunk, read_staged_series, staged_schema
from harness.staging import StagingFolder
from harness.stats.summary import (PATH_COLUMNS, PathSums, score_buckets, statistics_tables, window_columns,
                                   window_statistics)

@dataclasses.dataclass
class Evaluated:
    """What finish_outputs() computed, for the summary and the report."""

    market: pd.DataFrame               # harness.stats.market.MARKET_COLUMNS
    # detector -> date, symbol, score, fwd_<h>, abn_<h>, mkt_<h>, flagged_<h> of every event, as the
    # statistics take them (exclude_flagged: the returns of a window that crosses a flagged bar NaN)
    events: dict[str, pd.DataFrame]
    summaries: dict[str, pd.DataFrame] # detector -> its detector_summary()
    quantiles: dict[str, pd.DataFrame] # detector -> its score_quantiles()
    paths: pd.DataFrame                # harness.stats.summary.PATH_COLUMNS, detectors in run order
    null_hit_rates: dict[int, float]   # window -> share of positive abnormal returns over all symbol-days
    jobs: dict[str, Any]               # for run.json: jobs run, their seconds, the driver's writing, costs


@dataclasses.dataclass(frozen=True)
class DetectorFiles:
    """One detector to finish: which it is and its files' schemas (StagingFolder.schemas())."""

    code: int                          # its number in the run (its staged rows' code)
    name: str
    schemas: dict[str, pa.Schema]      # file name -> its schema, in harness.detector_files.DETECTOR_FILES order


@dataclasses.dataclass(frozen=True)
class FinishPiece:
    """Consecutive units of one detector, finished by one job: its staged chunks first .. last - 1."""

    detector: DetectorFiles
    units: tuple[tuple[int, int], ...]  # the units' chunk ranges (first, last + 1), consecutive
    part: int                          # its number among the detector's pieces
    parts: int                         # how many pieces the detector has
    detector_units: int                # how many units the detector has

    @property
    def first(self) -> int:
        return self.units[0][0]

    @property
    def last(self) -> int:
        return self.units[-1][1]


@dataclasses.dataclass(frozen=True)
class FinishJob:
    """Everything finishing some pieces needs but the staged chunks (Staged)."""

    staging: Path                      # the staging folder, for a process that sees it
    pieces: tuple[FinishPiece, ...]
    windows: tuple[int, ...]
    offsets: tuple[int, ...]           # the paths' offsets
    market: pd.DataFrame               # market_index()
    benchmark: Benchmark
    symbols: tuple[str, ...]           # the run's symbols: an event's symbol code is its number here
    null_hit_rates: tuple[tuple[int, float], ...]  # (window, the sign test's null share) pairs

    @property
    def chunks(self) -> tuple[int, ...]:
        """The staged chunks it reads, in order."""
        return tuple(sorted({c for piece in self.pieces for c in range(piece.first, piece.last)}))


@dataclasses.dataclass(frozen=True)
class NullJob:
    """Counting, over every bar of some staged chunks, the abnormal returns at each window and the
    positive ones: the generalized sign test's null (harness.stats.summary.detector_summary)."""

    staging: Path
    chunks: tuple[int, ...]
    windows: tuple[int, ...]
    market: pd.DataFrame
    benchmark: Benchmark


@dataclasses.dataclass
class PieceResult:
    """What finish_pieces() returns for one piece: the bytes of its rows and its numbers."""

    files: dict[str, pa.Buffer]        # file name -> that file of its rows (a row group per chunk with events)
    columns: dict[str, np.ndarray]     # date, symbol (code), score, fwd_<h>, abn_<h>, mkt_<h> of its events
    unit_sums: list[dict[str, np.ndarray]]  # its units' PathSums.arrays(), in order (a piece of several)
    paths: pd.DataFrame | None         # a detector's only piece: PATH_COLUMNS, its summary, its quantiles
    summary: pd.DataFrame | None
    quantiles: pd.DataFrame | None

    @property
    def nbytes(self) -> int:
        """The bytes of its files and arrays (the small tables aside): what sending it back costs."""
        return (sum(buffer.size for buffer in self.files.values()) + sum(a.nbytes for a in self.columns.values())
                + sum(a.nbytes for sums in self.unit_sums for a in sums.values()))


def _adjust(chunk: StagedChunk, name: str, windows: Sequence[int], offsets: Sequence[int],
            benchmark: BenchmarkReturns, codes: Mapping[str, int]
            ) -> tuple[pa.Table, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Detector `name`'s staged rows of one chunk, against the benchmark.

    Returns its final rows (every column of its files, harness.detector_files.final_columns:
    abn_<h> added, BAR dropped), the columns for the statistics (date, symbol: its code in `codes`,
    score, fwd_<h>, abn_<h>, mkt_<h>, flagged_<h>: whether its h bars cross a flagged outlier
    bar), and the event-time (ret, abn) arrays [event, offset]. With benchmark.exclude_flagged, the statistics' returns over a span that crosses a
    flagged bar are NaN (left out); the final rows keep them: the files' bytes never depend on it.
    """
    staged = chunk.rows[name]
    first, length = chunk.spans_of(staged.column("symbol"))
    bars = staged.column(BAR).to_numpy()
    # one gather for the paths' offsets and the windows (usually among them)
    extra = [h for h in windows if h not in offsets]
    spans, every = chunk.symbol_spans(), [*offsets, *extra]
    ret, market, expected = benchmark.returns(chunk.days, chunk.close, spans, first, length, bars, every)
    crossed = benchmark.crossings(chunk.close, spans, first, length, bars, every)
    at = {k: n for n, k in enumerate(every)}
    columns = {"date": staged.column("date").to_numpy(), "symbol": chunk.codes_of(staged.column("symbol"), codes),
               "score": staged.column("score").to_numpy()}
    table = staged.drop_columns([BAR])
    left_out = crossed if benchmark.benchmark.exclude_flagged else np.zeros_like(crossed)
    for h in windows:
        raw = staged.column(forward_column(h)).to_numpy()
        missing = np.isnan(raw)
        abn = raw - np.where(missing, np.nan, expected[:, at[h]])
        table = table.append_column(abnormal_column(h), pa.array(abn, pa.float64()))
        out = left_out[:, at[h]]
        columns.update({forward_column(h): np.where(out, np.nan, raw), abnormal_column(h): np.where(out, np.nan, abn),
                        market_column(h): np.where(missing | out, np.nan, market[:, at[h]]),
                        flagged_column(h): crossed[:, at[h]] & ~missing})
    width = len(offsets)
    path_ret = np.where(left_out[:, :width], np.nan, ret[:, :width])
    return table, columns, path_ret, path_ret - expected[:, :width]


def null_counts(job: NullJob, staged: Staged | None = None) -> tuple[list[int], list[int]]:
    """(positive, valid) per window: over every bar of the job's chunks, how many h-bar abnormal
    returns exist and how many of those are above 0. Counts, so their totals do not depend on how
    the chunks are cut into jobs. staged: the chunks' files as sent through Dask (harness.staged_chunk.
    staged_files), else they are read from job.staging."""
    positive, valid = np.zeros(len(job.windows), np.int64), np.zeros(len(job.windows), np.int64)
    benchmark = BenchmarkReturns(job.market, job.benchmark)
    for number in job.chunks:
        chunk = read_staged_series(job.staging if staged is None else staged, number)
        abn = benchmark.every_bar(chunk.days, chunk.close, chunk.symbol_spans(), job.windows)
        exists = ~np.isnan(abn)
        valid += exists.sum(axis=0)
        positive += (exists & (abn > 0)).sum(axis=0)
    return positive.tolist(), valid.tolist()


class PieceFinisher:
    """One piece being finished, chunk after chunk: a parquet writer (into memory) per file of its
    detector, its events' columns and its units' path sums. add() each of its chunks in order, then
    result()."""

    def __init__(self, piece: FinishPiece, job: FinishJob):
        self.piece, self.job = piece, job
        # The files grow in memory by reallocation: from the system allocator (glibc's mremap for large
        # blocks) the old blocks are returned at once, while pyarrow's default pool (mimalloc) kept
        # them, and a worker's end-of-run peak grew by more than the bytes (make load at 5,000
        # symbols: workers' peak PSS 362 MB with the default pool, 335 with this, 310 writing files).
        self.writers = {name: pq.ParquetWriter(pa.BufferOutputStream(memory_pool=pa.system_memory_pool()), schema)
                        for name, schema in piece.detector.schemas.items()}
        self.columns: dict[str, list[np.ndarray]] = {}
        self.unit: PathSums | None = None                  # the current unit's sums
        self.done_units: list[dict[str, np.ndarray]] = []  # a piece of several: its units' sums, in order
        # a detector's only piece: its units' sums added up so far (of one unit: that unit's own)
        self.total = self._new_sums() if piece.parts == 1 and piece.detector_units > 1 else None

    def _new_sums(self) -> PathSums:
        return PathSums(self.job.offsets, self.job.market["date"].to_numpy(), len(self.job.symbols))

    def _close_unit(self) -> None:
        if self.unit is None:
            return
        if self.piece.parts > 1:
            self.done_units.append(self.unit.arrays())  # the driver adds them up
        elif self.total is None:
            self.total = self.unit
        else:
            self.total.add_sums(**self.unit.arrays())
        self.unit = None

    def add(self, number: int, chunk: StagedChunk, benchmark: BenchmarkReturns, codes: Mapping[str, int]) -> None:
        """Staged chunk `number` (read into `chunk`): its rows adjusted, written and summed."""
        d = self.piece.detector
        if any(number == first for first, _ in self.piece.units):
            self._close_unit()
            self.unit = self._new_sums()  # each unit's sums from zero
        table, frame, path_ret, path_abn = _adjust(chunk, d.name, self.job.windows, self.job.offsets, benchmark, codes)
        if table.num_rows:  # a row group per chunk with events
            for file in detector_files.DETECTOR_FILES:
                part = file.rows(table, d.schemas[file.name])
                self.writers[file.name].write_table(part, row_group_size=part.num_rows)
        for key, values in frame.items():
            self.columns.setdefault(key, []).append(values)
        self.unit.add(frame["date"], frame["symbol"], path_ret, path_abn)

    def result(self) -> PieceResult:
        """The piece's PieceResult, once its last chunk is added; a detector's only piece also gets
        its paths, summary and quantiles."""
        self._close_unit()
        for writer in self.writers.values():
            writer.close()
        files = {name: writer.where.getvalue() for name, writer in self.writers.items()}  # no copy
        events = {key: np.concatenate(values) for key, values in self.columns.items()}
        if self.piece.parts > 1:
            return PieceResult(files, events, self.done_units, None, None, None)
        frame, name, nulls = pd.DataFrame(events, copy=False), self.piece.detector.name, dict(self.job.null_hit_rates)
        bucket = score_buckets(frame["score"].to_numpy(dtype="float64"))
        summary, quantiles = statistics_tables([window_statistics(frame, bucket, h, nulls.get(h, math.nan), name)
                                                for h in self.job.windows])  # as a split detector's WindowJobs
        return PieceResult(files, events, [], self.total.paths(name), summary, quantiles)


def finish_pieces(job: FinishJob, staged: Staged | None = None) -> list[PieceResult]:
    """For each of the job's pieces, in the job's order, its PieceResult: the parquet bytes of each
    of its detector's files, its rows of its chunks (one row group per chunk that has events; the
    driver writes or joins them: harness.parquet_parts), the events' columns (numpy arrays, which
    Dask sends several times faster than a DataFrame) and, for a detector's only piece, its
    PATH_COLUMNS paths, its detector_summary() and its score_quantiles() from window_statistics()
    (else its units' path sums, for the driver to add up). (The statistics are computed here
    because the jobs run side by side.) Writes no file.

    staged: the chunks' files as sent through Dask (harness.staged_chunk.staged_files), else they are
    read from job.staging. Path sums are summed per unit, each from zero, and a detector's units
    are added up in unit order (PathSums.add_sums; a detector of one unit keeps its unit's sums),
    whichever pieces and jobs hold them: the same bits in every mode. Reads each staged chunk once
    for all the job's pieces, in chunk order; a piece's writers and sums exist only from its first
    chunk to its last. A piece's bytes depend only on the staged chunks and the market, not on the
    other pieces or the process.
    """
    source = job.staging if staged is None else staged
    open_pieces: dict[int, PieceFinisher] = {}
    results: dict[int, PieceResult] = {}
    benchmark = BenchmarkReturns(job.market, job.benchmark)
    codes = {name: code for code, name in enumerate(job.symbols)}
    for number in job.chunks:
        here = [n for n, piece in enumerate(job.pieces) if piece.first <= number < piece.last]
        wanted = {job.pieces[n].detector.code: job.pieces[n].detector for n in here}.values()
        chunk = read_staged_chunk(source, number, [(d.code, d.name, staged_schema(d.schemas)) for d in wanted])
        for n in here:
            if number == job.pieces[n].first:
                open_pieces[n] = PieceFinisher(job.pieces[n], job)
            open_pieces[n].add(number, chunk, benchmark, codes)
            if number == job.pieces[n].last - 1:
                results[n] = open_pieces.pop(n).result()
    return [results[n] for n in range(len(job.pieces))]


@dataclasses.dataclass(frozen=True)
class PathsJob:
    """The event-time paths of a detector finished in several pieces (finish_outputs)."""

    name: str
    unit_sums: tuple[dict[str, np.ndarray], ...]  # its units' PathSums.arrays(), in unit order
    offsets: tuple[int, ...]
    dates: np.ndarray                  # the market's dates
    symbols: int                       # how many symbols the run has

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays: what sending it costs."""
        return sum(a.nbytes for sums in self.unit_sums for a in sums.values())

    def compute(self) -> pd.DataFrame:
        """PATH_COLUMNS: its units' path sums added up from zero in unit order (the bits do not
        depend on the pieces)."""
        total = PathSums(self.offsets, self.dates, self.symbols)
        for sums in self.unit_sums:
            total.add_sums(**sums)
        return total.paths(self.name)


@dataclasses.dataclass(frozen=True)
class WindowJob:
    """One window's statistics of a detector finished in several pieces (finish_outputs): its rows
    of detector_summary() and of score_quantiles(). The windows of a busy detector run side by side."""

    name: str
    columns: Mapping[str, np.ndarray]  # window_columns(window) of all its events
    window: int
    null_hit_rate: float

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())

    def compute(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Its window_statistics(), as a detector's only piece computes them."""
        frame = pd.DataFrame(self.columns, copy=False)
        bucket = score_buckets(frame["score"].to_numpy(dtype="float64"))
        return window_statistics(frame, bucket, self.window, self.null_hit_rate, self.name)


@dataclasses.dataclass(frozen=True)
class FooterJob:
    """The footer of a split detector's file, joined from its pieces' parts' footers
    (harness.parquet_parts.joined_tail): decoding and encoding footers is the costly part of a join
    (~1.4 s for the driver alone at 64 workers, 5,000 x 20 years), and needs none of the bodies."""

    file: str                          # its name in the output folder
    footers: tuple[tuple[int, bytes], ...]  # its parts' part_footer(), in order

    @property
    def nbytes(self) -> int:
        return sum(len(footer) for _, footer in self.footers)

    def compute(self) -> bytes:
        """What follows the parts' bodies in the joined file."""
        return joined_tail(self.footers)


def split_statistics(name: str, columns: Mapping[str, np.ndarray], unit_sums: Sequence[dict[str, np.ndarray]],
                     windows: Sequence[int], offsets: Sequence[int], dates: np.ndarray, symbols: int,
                     null_hit_rates: Mapping[int, float]) -> list[PathsJob | WindowJob]:
    """The statistics jobs of a detector finished in several pieces: its paths, then one per window,
    sent the columns its window's statistics read (window_columns()). columns: all its events'
    columns (PieceResult.columns, pieces in order); unit_sums: its units'."""
    return [PathsJob(name, tuple(unit_sums), tuple(offsets), dates, symbols),
            *(WindowJob(name, {column: columns[column] for column in window_columns(h)},
                        h, null_hit_rates.get(h, math.nan)) for h in windows)]


def compute_job(job: PathsJob | WindowJob | FooterJob) -> Any:
    """job.compute() (a summary job's): a top-level function, which Dask sends by reference."""
    return job.compute()


def assemble_statistics(jobs: Sequence[PathsJob | WindowJob | FooterJob], results: Sequence[Any]
                        ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """detector -> (paths, detector_summary(), score_quantiles()) from its split_statistics() jobs'
    results, the windows' rows in window order: the same tables one process would have made."""
    paths: dict[str, pd.DataFrame] = {}
    rows: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for job, result in zip(jobs, results):
        if isinstance(job, PathsJob):
            paths[job.name] = result
        elif isinstance(job, WindowJob):
            rows.setdefault(job.name, []).append(result)
    return {name: (paths[name], *statistics_tables(rows[name])) for name in paths}


# How the driver runs the jobs (an executor's run_jobs): a function applied to each job, the
# results in job order.
RunAll = Callable[[Callable[..., Any], Sequence[Any]], list[Any]]


def in_this_process(function: Callable[..., Any], jobs: Sequence[Any]) -> list[Any]:
    """RunAll in the driver, one job after the other, reading the staging folder."""
    return [function(job) for job in jobs]


def timed(function: Callable[..., Any], job: Any, *args: Any) -> tuple[Any, float]:
    """function(job, *args), and the seconds it took where it ran (for run.json's finish_jobs)."""
    started = time.perf_counter()
    result = function(job, *args)
    return result, round(time.perf_counter() - started, 3)


def _run_timed(run_all: RunAll, function: Callable[..., Any], jobs: Sequence[Any]) -> tuple[list[Any], list[float]]:
    """run_all(function, jobs) and each job's seconds; an OSError (a staged chunk gone or
    unreadable) is a ScanError. No jobs (every detector kept: harness.reuse): nothing is run."""
    if not jobs:
        return [], []
    try:
        done = run_all(functools.partial(timed, function), jobs)
    except OSError as exc:
        raise ScanError(f"cannot read the run's staged chunks ({exc}); rerun without --resume") from None
    return [result for result, _ in done], [seconds for _, seconds in done]


@dataclasses.dataclass(frozen=True)
class FinishPlan:
    """How the detectors are finished (plan_finish): their units, and the jobs that hold them."""

    jobs: list[FinishJob]
    parts: list[int]                   # detector number -> how many pieces it is in
    units: list[list[tuple[int, int]]]  # detector number -> its units' chunk ranges
    unit_costs: list[list[int]]
    costs: list[int]                   # detector number -> its total cost


def null_hit_rates(windows: Sequence[int], counted: Sequence[tuple[list[int], list[int]]]) -> dict[int, float]:
    """window -> the share of positive abnormal returns over every bar, from null_counts() of every
    chunk (NaN when no bar has one)."""
    positive = np.sum([p for p, _ in counted], axis=0, dtype=np.int64).tolist()
    valid = np.sum([v for _, v in counted], axis=0, dtype=np.int64).tolist()
    return {h: float(p / v) if v else math.nan for h, p, v in zip(windows, positive, valid)}


def plan_finish(staging: StagingFolder, detectors: Sequence[DetectorFiles], processes: int,
                job: Callable[[tuple[FinishPiece, ...]], FinishJob]) -> FinishPlan:
    """Each detector cut into units from its staged events (cluster.plan.chunk_ranges; the same
    whatever the workers), the units into `processes` jobs of about equal cost
    (cluster.plan.plan_pieces); job(pieces) makes a job of its pieces."""
    # what a unit costs: its events, and a fixed part per chunk (reading, writing, path sums)
    chunk_costs = staging.event_counts() + cluster.plan.EVENTS_PER_CHUNK_COST  # [chunk, detector]
    units = [cluster.plan.chunk_ranges(chunk_costs[:, d.code].tolist(), cluster.plan.FINISH_UNIT_COST) for d in detectors]
    unit_costs = [[int(chunk_costs[first:last, d.code].sum()) for first, last in ranges]
                  for d, ranges in zip(detectors, units)]
    planned = cluster.plan.plan_pieces(unit_costs, processes)
    starts = {d: sorted(first for pieces in planned for e, first, _ in pieces if e == d) for d in range(len(detectors))}
    jobs = [job(tuple(FinishPiece(detectors[d], tuple(units[d][first:last]), starts[d].index(first), len(starts[d]),
                                  len(units[d])) for d, first, last in pieces)) for pieces in planned]
    return FinishPlan(jobs, [len(starts[d]) for d in range(len(detectors))], units, unit_costs,
                      chunk_costs.sum(axis=0).tolist())


def finish_outputs(staging: StagingFolder, files: FinalFiles, detectors: Sequence[DetectorSpec],
                   windows: Sequence[int], offsets: Sequence[int], benchmark: Benchmark, symbols: Sequence[str],
                   run_all: RunAll = in_this_process, processes: int = 1,
                   known_null_hit_rates: Mapping[int, float] | None = None) -> Evaluated:
    """Write market.parquet and each detector's final files (harness.detector_files: events.parquet,
    forward.parquet with abn_<h> added) into `files`; return the market, the events' returns, their
    statistics.

    Steps: the market index (here); the sign test's null counts over every bar (null jobs of
    consecutive chunks); the detectors' pieces (finish jobs, planned by plan_finish); the
    statistics and the files' footers of a detector of several pieces (summary jobs:
    split_statistics, FooterJob); each detector's files written here, a detector of several pieces
    joined (harness.parquet_parts). run_all runs the jobs: in_this_process, or on `processes`
    workers. A failed write is the staging folder's OutputError naming the file.
    known_null_hit_rates: the sign test's null when it is known already (an earlier run's over the
    same market: harness.reuse); no null job runs then. `detectors` may be none (all reused).
    """
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return round(clock[-1] - clock[-2], 3)

    market = market_index(staging.market_parts())
    files.table("market.parquet", pa.Table.from_pandas(market, preserve_index=False))
    chunks = np.array_split(np.arange(staging.chunks), max(1, min(processes, staging.chunks)))
    nulls = [NullJob(staging.path, tuple(c.tolist()), tuple(windows), market, benchmark)
             for c in chunks if len(c) and known_null_hit_rates is None]
    market_seconds = lap()
    counted, null_job_seconds = _run_timed(run_all, null_counts, nulls)
    rates = dict(known_null_hit_rates) if known_null_hit_rates is not None else null_hit_rates(windows, counted)
    null_seconds = lap()
    described = [DetectorFiles(code, spec.name, staging.schemas(spec)) for code, spec in enumerate(detectors)]
    plan = plan_finish(staging, described, processes, lambda pieces: FinishJob(
        staging.path, pieces, tuple(windows), tuple(offsets), market, benchmark, tuple(symbols),
        tuple(rates.items())))
    plan_seconds = lap()
    done, job_seconds = _run_timed(run_all, finish_pieces, plan.jobs)
    jobs_seconds = lap()
    by_piece = {(piece.detector.code, piece.part): result for job, results in zip(plan.jobs, done)
                for piece, result in zip(job.pieces, results)}
    pieces = {d.code: [by_piece.pop((d.code, part)) for part in range(plan.parts[d.code])] for d in described}
    events, statistics, summary_jobs = {}, {}, []
    for d, spec in zip(described, detectors):
        mine = pieces[d.code]  # in order
        # no copy of an only piece's arrays: 13 columns of every event (0.3 s at 5,000 x 20 years)
        columns = {key: mine[0].columns[key] if len(mine) == 1 else np.concatenate([piece.columns[key] for piece in mine])
                   for key in mine[0].columns}
        events[d.name] = pd.DataFrame(columns, copy=False)
        if len(mine) == 1:
            statistics[d.name] = mine[0].paths, mine[0].summary, mine[0].quantiles
        else:  # its statistics need all its events, and its files their parts' footers joined: more jobs
            summary_jobs += split_statistics(d.name, columns, [sums for piece in mine for sums in piece.unit_sums],
                                             windows, offsets, market["date"].to_numpy(), len(symbols), rates)
            summary_jobs += [FooterJob(f"{spec.out_name}/{file}",
                                       tuple(part_footer(piece.files[file], n) for n, piece in enumerate(mine)))
                             for file in d.schemas]
    computed, summary_job_seconds = _run_timed(run_all, compute_job, summary_jobs)
    statistics.update(assemble_statistics(summary_jobs, computed))
    tails = {job.file: tail for job, tail in zip(summary_jobs, computed) if isinstance(job, FooterJob)}
    summary_seconds = lap()
    for d, spec in zip(described, detectors):  # every detector's files, in run order
        for file in d.schemas:
            name = f"{spec.out_name}/{file}"
            files.parquet_parts(name, [piece.files[file] for piece in pieces[d.code]], tails.get(name))
    write_seconds = lap()
    facts = {"jobs": len(plan.jobs), "units": sum(map(len, plan.units)), "pieces": sum(plan.parts),
             "joins": sum(1 for parts in plan.parts if parts > 1),
             # the driver's steps: the market index, the null jobs, planning, the finish jobs, the summary
             # jobs (a split detector's statistics and footers), its writes
             "market_seconds": market_seconds, "null_seconds": null_seconds, "plan_seconds": plan_seconds,
             "seconds": jobs_seconds, "write_seconds": write_seconds, "summary_seconds": summary_seconds,
             # each job's own seconds, where it ran
             "null_job_seconds": null_job_seconds, "job_seconds": job_seconds, "summary_job_seconds": summary_job_seconds,
             # between the driver and where the jobs ran: the finish jobs' results, the summary jobs'
             # inputs (the staged chunks a remote cluster gets are run.json's bytes_shipped)
             "bytes_returned": sum(piece.nbytes for pieces in done for piece in pieces),
             "bytes_sent": sum(job.nbytes for job in summary_jobs),
             "costs": plan.costs, "unit_costs": plan.unit_costs}
    return Evaluated(market, events, {d.name: statistics[d.name][1] for d in described},
                     {d.name: statistics[d.name][2] for d in described},
                     pd.concat([statistics[d.name][0] for d in described], ignore_index=True) if described
                     else pd.DataFrame(columns=PATH_COLUMNS), rates, facts)

"""The end of a run: from the staged chunks to the market, market-adjusted returns, statistics and files.

Everything here needs the whole universe (the market index is known only when every symbol is
in), so it runs after the scan. The driver builds the market index from the chunks' market sums;
then each detector's staged chunks, in chunk order, become its final events.parquet and
forward.parquet (abn_<h> added), the columns the summary needs and its event-time paths.

Units. A detector is cut into units, runs of consecutive chunks of about FINISH_UNIT_COST
(chunk_ranges; a rare detector is one unit, the busiest several), so that no single detector
bounds the end of a run on many cores. A unit writes its detector's row groups (one per chunk
with events) and sums its paths over its own chunks. A detector of one unit writes its final
files directly; one of several units writes a part file per unit into the staging folder, and a
join (join_detector_parts, harness.parquet_parts) puts the parts together into the file one
writer would have written and adds up the units' path sums in unit order. The units depend only on
the data and the config, never on the number of workers, so the bytes are the same in every mode.

The driver splits the units into jobs of about equal cost (a job reads each chunk once for its
units) and hands the jobs to whatever runs them: its own loop (one job), or a LocalCluster's
workers (one job per worker), which see the same disk; the driver writes every other file and
moves them all into place. Memory per unit grows with its events and the market dates (the
paths' sums), not with the number of bars. The arithmetic lives in harness.market and
harness.summary; this module moves arrays between them and the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import zipfile
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
from harness.parquet_parts import join_parquet_parts
from harness.output import BAR, FinalFiles, OutputWriter, StagedChunk, read_staged_chunk, temp_name
from harness.summary import PathSums

# A detector's fixed cost per staged chunk, counted in events (measured at 20-year histories:
# ~9 us per event, ~10 ms per chunk), for cutting detectors into units and units into jobs.
EVENTS_PER_CHUNK_COST = 1200
# The cost of a unit (~1.8 s at ~9 us per event): small enough that the busiest detector of a
# 5,000-symbol run is several units, large enough that a unit's fixed costs (its writers, its
# paths' sums: dates x offsets numbers) stay small. A constant, not derived from the number of
# workers: the units decide how the paths' sums are added up, so they must not depend on it.
FINISH_UNIT_COST = 200_000


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
class FinishUnit:
    """Part of one detector's finish: its staged chunks first .. last - 1."""

    detector: DetectorFiles
    first: int
    last: int
    part: int                          # its number among the detector's units
    parts: int                         # how many units the detector has

    def files(self, staging: Path) -> tuple[Path, Path]:
        """Where the unit writes its (events, forward) rows: the final files' temp names when it is
        the detector's only unit, else part files in the staging folder."""
        d = self.detector
        if self.parts == 1:
            return temp_name(d.events_file), temp_name(d.forward_file)
        return tuple(part_file(staging, d.code, self.part, kind) for kind in ("events", "forward"))


def part_file(staging: Path, code: int, part: int, kind: str) -> Path:
    """The staging file of unit `part` of detector `code`: kind events, forward (parquet) or sums (npz)."""
    return staging / f"part-{code:03d}-{part:04d}-{kind}.{'npz' if kind == 'sums' else 'parquet'}"


@dataclasses.dataclass(frozen=True)
class FinishJob:
    """Everything finishing some units needs, for any process that sees the staging folder."""

    staging: Path
    units: tuple[FinishUnit, ...]
    windows: tuple[int, ...]
    offsets: tuple[int, ...]           # the paths' offsets
    market: pd.DataFrame               # market_index()
    cpu_slots: int | None = None       # harness.cpuslots semaphore of the LocalCluster, if any


@dataclasses.dataclass(frozen=True)
class JoinJob:
    """Putting together one kind of part of a detector of several units: its events or forward
    part files, or its path sums (three jobs, so that the largest detector's is not one job)."""

    staging: Path
    detector: DetectorFiles
    kind: str                          # events, forward or sums (part_file's kinds)
    parts: int
    offsets: tuple[int, ...]
    dates: np.ndarray                  # the market's dates (PathSums)
    cpu_slots: int | None = None


def chunk_ranges(chunk_costs: Sequence[int], unit_cost: int) -> list[tuple[int, int]]:
    """Chunks 0 .. len(chunk_costs) - 1 cut into consecutive ranges (first, last + 1) of about
    `unit_cost` each: ceil(total / unit_cost) ranges, at least one and at most one per chunk, cut
    after the first chunk at which the running cost reaches each multiple of total / ranges (in
    integers: the same cuts on every machine). No chunks: no ranges."""
    if not len(chunk_costs):
        return []
    running = np.cumsum(np.asarray(chunk_costs, dtype=np.int64))
    total = int(running[-1])
    count = min(len(chunk_costs), max(1, -(-total // max(1, unit_cost))))
    cuts = np.searchsorted(running * count, total * np.arange(1, count, dtype=np.int64)) + 1
    edges = [0, *np.unique(np.clip(cuts, 1, len(chunk_costs) - 1)).tolist(), len(chunk_costs)]
    return list(zip(edges, edges[1:]))


def balanced_groups(costs: Sequence[float], groups: int) -> list[list[int]]:
    """Item numbers split into at most `groups` groups of about equal total cost (largest first,
    each to the cheapest group so far; ties to the smaller, then the lower-numbered group). Each
    group is sorted; no group is empty; the same costs always give the same groups. No items: no
    groups."""
    loads = [0.0] * max(1, min(groups, len(costs)))
    members: list[list[int]] = [[] for _ in loads]
    for item in sorted(range(len(costs)), key=lambda c: (-costs[c], c)):
        cheapest = min(range(len(loads)), key=lambda g: (loads[g], len(members[g]), g))
        loads[cheapest] += costs[item]
        members[cheapest].append(item)
    return [sorted(group) for group in members if group]


def _adjust(chunk: StagedChunk, name: str, windows: Sequence[int], offsets: Sequence[int], levels: np.ndarray
            ) -> tuple[pa.Table, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Detector `name`'s staged forward rows of one chunk, market-adjusted.

    Returns the final forward table (abn_<h> added, the bar number dropped), the columns for the
    summary (date, fwd_<h>, abn_<h>, mkt_<h>), and the event-time (ret, mkt) arrays.
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
    return table, columns, ret[:, :len(offsets)], market[:, :len(offsets)]


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError while writing `path` (at its temp name, or a part of it) gets `path` as its filename."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, os_reason(exc), str(path)) from None


def finish_units(job: FinishJob) -> list[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """For each of the job's units: write its detector's rows of its chunks (FinishUnit.files: one
    row group per chunk that has events) and return the events' (date, fwd_<h>, abn_<h>, mkt_<h>)
    and, for a detector's only unit, its PATH_COLUMNS paths (else None: the unit's path sums are
    saved for join_detector_parts), in the job's order.

    Reads each staged chunk once for all the job's units, in chunk order; a unit's writers and sums
    exist only from its first chunk to its last, so memory and open files do not grow with the
    number of units. Raises OSError with the final file's path as filename when a write fails. A
    unit's bytes depend only on the staged chunks and the market, not on the other units of the
    job or on the process.
    """
    writers: dict[int, list[tuple[Path, pq.ParquetWriter]]] = {}  # unit -> (final path, its writer) x 2
    results: dict[int, tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    try:
        with cpu_slot(job.cpu_slots):
            levels = level_grid(job.market)
            dates = job.market["date"].to_numpy()
            sums: dict[int, PathSums] = {}
            columns: dict[int, dict[str, list[np.ndarray]]] = {}
            for number in sorted({c for unit in job.units for c in range(unit.first, unit.last)}):
                here = [n for n, unit in enumerate(job.units) if unit.first <= number < unit.last]
                wanted = {job.units[n].detector.code: job.units[n].detector for n in here}.values()
                chunk = read_staged_chunk(job.staging, number, [(d.code, d.name, d.events_schema, d.forward_schema)
                                                                for d in wanted])
                for n in here:
                    unit, d = job.units[n], job.units[n].detector
                    if number == unit.first:
                        writers[n] = []
                        for path, tmp, schema in zip((d.events_file, d.forward_file), unit.files(job.staging),
                                                     (d.events_schema, d.forward_schema)):
                            with _naming(path):
                                writers[n].append((path, pq.ParquetWriter(tmp, schema)))
                        sums[n], columns[n] = PathSums(job.offsets, dates), {}
                    table, frame, path_ret, path_mkt = _adjust(chunk, d.name, job.windows, job.offsets, levels)
                    if table.num_rows:  # as many as its events
                        for (path, writer), part in zip(writers[n], (chunk.events[d.name], table.cast(d.forward_schema))):
                            with _naming(path):
                                writer.write_table(part, row_group_size=part.num_rows)
                    for key, values in frame.items():
                        columns[n].setdefault(key, []).append(values)
                    sums[n].add(frame["date"], path_ret, path_mkt)
                    if number == unit.last - 1:
                        while writers[n]:
                            path, writer = writers[n].pop(0)
                            with _naming(path):
                                writer.close()
                        del writers[n]
                        results[n] = (pd.DataFrame({k: np.concatenate(v) for k, v in columns.pop(n).items()}),
                                      _finish_sums(job, unit, sums.pop(n)))
    finally:
        for _, writer in (w for unit_writers in writers.values() for w in unit_writers):
            with contextlib.suppress(Exception):  # after a failure: the driver removes the temp files
                writer.close()
    return [results[n] for n in range(len(job.units))]


def _finish_sums(job: FinishJob, unit: FinishUnit, sums: PathSums) -> pd.DataFrame | None:
    """A detector's only unit: its paths; else the unit's sums saved for join_detector_parts, None."""
    if unit.parts == 1:
        return sums.paths(unit.detector.name)
    with _naming(unit.detector.forward_file):
        np.savez(part_file(job.staging, unit.detector.code, unit.part, "sums"), ret=sums.ret, abn=sums.abn,
                 count=sums.count)
    return None


def join_detector_parts(job: JoinJob) -> tuple[pd.DataFrame | None, float]:
    """A detector of several units: its final events or forward file from its units' part files,
    or its PATH_COLUMNS paths from their path sums added up in unit order (else None); the parts
    are removed. Returns (paths or None, the seconds it took). Any failure, a part damaged from
    outside included, is an OSError naming the final file (for the sums, the detector's folder)."""
    started = time.perf_counter()
    d = job.detector
    named = {"events": d.events_file, "forward": d.forward_file}.get(job.kind, d.forward_file.parent)
    parts = [part_file(job.staging, d.code, p, job.kind) for p in range(job.parts)]
    paths = None
    with cpu_slot(job.cpu_slots), _naming(named):
        try:
            if job.kind == "sums":
                total = PathSums(job.offsets, job.dates)
                for path in parts:
                    with np.load(path) as saved:
                        total.add_sums(saved["ret"], saved["abn"], saved["count"])
                paths = total.paths(d.name)
            else:
                join_parquet_parts(parts, temp_name(named))
        except (ValueError, KeyError, zipfile.BadZipFile) as exc:  # not written by this run's units
            raise OSError(f"a part file in the staging folder is damaged ({exc})") from None
        for path in parts:
            path.unlink()
    return paths, time.perf_counter() - started


# How the driver runs the jobs: a function applied to each job, the results in job order.
RunAll = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def in_this_process(function: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
    """RunAll in the driver, one job after the other."""
    return [function(job) for job in jobs]


def finish_outputs(writer: OutputWriter, files: FinalFiles, detectors: Sequence[DetectorSpec],
                   windows: Sequence[int], offsets: Sequence[int], run_all: RunAll = in_this_process,
                   processes: int = 1, cpu_slots: int | None = None) -> Evaluated:
    """Write market.parquet and each detector's final events.parquet and forward.parquet
    (abn_<h> added) into `files`; return the market, the events' returns and the paths.

    run_all runs the jobs: in_this_process, or on `processes` workers that see the staging folder
    (the units are split into that many jobs of about equal cost, then the joins of detectors of
    several units run). A failed write is the writer's OutputError naming the file.
    """
    market = market_index(writer.market_parts())
    files.table("market.parquet", pa.Table.from_pandas(market, preserve_index=False))
    described = []
    for code, spec in enumerate(detectors):
        events_schema, forward_schema = writer.schemas(spec)
        described.append(DetectorFiles(code, spec.name, events_schema, forward_schema,
                                       files.reserve(f"{spec.out_name}/events.parquet"),
                                       files.reserve(f"{spec.out_name}/forward.parquet")))
    # what a unit costs: its events, and a fixed part per chunk (reading, writing, path sums)
    chunk_costs = writer.event_counts() + EVENTS_PER_CHUNK_COST  # [chunk, detector]
    units, unit_costs = [], []
    for d in described:
        ranges = chunk_ranges(chunk_costs[:, d.code].tolist(), FINISH_UNIT_COST)
        for part, (first, last) in enumerate(ranges):
            units.append(FinishUnit(d, first, last, part, len(ranges)))
            unit_costs.append(int(chunk_costs[first:last, d.code].sum()))
    jobs = [FinishJob(writer.staging, tuple(units[u] for u in group), tuple(windows), tuple(offsets), market,
                      cpu_slots) for group in balanced_groups(unit_costs, processes)]
    joins = [JoinJob(writer.staging, unit.detector, kind, unit.parts, tuple(offsets), market["date"].to_numpy(),
                     cpu_slots)
             for unit in units if unit.part == 0 and unit.parts > 1 for kind in ("forward", "events", "sums")]
    started = time.perf_counter()
    try:
        done = run_all(finish_units, jobs)
        between = time.perf_counter()
        joined = run_all(join_detector_parts, joins) if joins else []
    except OSError as exc:
        reason = exc.strerror or os_reason(exc)  # _naming keeps an errno-less message as strerror
        raise writer.cannot_write(Path(exc.filename) if exc.filename else writer.out_dir, reason) from None
    by_unit = {(unit.detector.code, unit.part): result for job, results in zip(jobs, done)
               for unit, result in zip(job.units, results)}
    joined_paths = {job.detector.code: frame for job, (frame, _) in zip(joins, joined) if frame is not None}
    events, paths = {}, []
    for d in described:  # a detector's units in unit order
        mine = [result for (code, _), result in sorted(by_unit.items()) if code == d.code]
        events[d.name] = mine[0][0] if len(mine) == 1 else pd.concat([f for f, _ in mine], ignore_index=True)
        paths.append(mine[0][1] if len(mine) == 1 else joined_paths[d.code])
    facts = {"jobs": len(jobs), "units": len(units), "joins": len(joins),
             "seconds": round(between - started, 3), "join_seconds": round(time.perf_counter() - between, 3),
             "costs": chunk_costs.sum(axis=0).tolist(), "unit_costs": unit_costs,
             "join_job_seconds": [round(seconds, 3) for _, seconds in joined]}
    return Evaluated(market, events, pd.concat(paths, ignore_index=True), facts)

"""The staging folder: each chunk of symbols' results is written as it completes, and read back at the end.

One symbol's way: harness.task.scan_symbol returns its SymbolResult (events with their bar number,
score, close and forward returns; its bars' days and closes); the driver buffers it until its
chunk is whole, then StagingFolder.write_chunk stages the chunk's parts. At the end of the run
harness.finish's jobs read the chunk back (read_staged_chunk) and turn its rows into the final
files' bytes (harness.final_files writes them).

The run's symbols, sorted, are cut into chunks of `flush_every` consecutive symbols (the last one
may be shorter); chunk c is symbols[c * flush_every : (c + 1) * flush_every]. The driver writes a
chunk as soon as all its symbols' results are in, in whatever order chunks complete.

Layout while a run is going (all under <out_dir>/.symbol-scan-staging/):
    made-by-symbol-scan   the marker: only a staging folder holding it is ever deleted
    state.json            the commit point (StagedFacts): run key, chunks written, counts
    rows-00000.arrow      one part per chunk (named by chunk number): every detector's events with
                          their bar number, score, close and forward returns (and extra columns)
    series-00000.arrow    every bar's day and close of the chunk's symbols
    market-00000.arrow    the chunk's market sums (harness.stats.market.chunk_sums)
    final-NNN-<file>      at the end: the final files under their temp names (harness.final_files)
Parts are Arrow IPC files: staging is internal, and they write and read several times faster than
parquet (the driver writes them while the workers scan). Each part is written to a temp name, then
renamed; a chunk counts only once state.json lists it, so a crash keeps every listed chunk for
--resume. state.json also holds each part's sha256, checked by --resume: a part missing, cut short
or rewritten since (even at the same size) is refused, not resumed. The folder is removed when the final files are committed (final_files()).

A write that fails (no space, no permission, a read-only file system, a file too large, a path in
the way) is one OutputError naming the path and saying what --resume can still use. Nothing in
out_dir but the run's own paths (harness.outdir) is touched.

Determinism: a part always holds the results of one chunk's symbols in sorted order, so the parts,
and so the final bytes, depend only on the data and the config, not on task sizes or the order in
which tasks finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.detectors import DetectorSpec
from harness.errors import ConfigError, OutputError, ScanError
from harness import detector_files
from harness.fingerprint import changed
from harness.stats.market import chunk_sums, outlier_bars
from harness.final_files import FinalFiles, in_the_way, output_errors, write_synced
from harness.outdir import RUN_FILES, STAGING, STAGING_MARKER, os_reason
from harness.task import SymbolResult

STATE_FILE = "state.json"
MARKER_TEXT = ("symbol scan keeps the flushed results of an unfinished run here (for --resume); "
               "the next run into this folder deletes it.\n")
BAR = "bar"  # staged forward parts only: the event's row in its symbol's bars
MAX_LISTED_OUTLIERS = 1000  # market outliers listed in state.json and run.json (all are counted)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp name for `path`; os.replace it into place when the block succeeds, remove it when not."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@dataclasses.dataclass
class StagedChunk:
    """One staged chunk, read back: its symbols' bars and some detectors' rows."""

    days: np.ndarray                     # every bar's day number (int32), symbol after symbol
    close: np.ndarray                    # every bar's close
    spans: dict[str, tuple[int, int]]    # symbol -> (first row in days/close, number of bars)
    rows: dict[str, pa.Table]            # detector name -> its rows (staged_schema())

    def spans_of(self, symbols: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """(first row, number of bars) in days/close of each entry of `symbols` (symbols of this chunk)."""
        encoded = symbols.combine_chunks().dictionary_encode()
        names = encoded.dictionary.to_pylist()
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        first = np.array([self.spans[n][0] for n in names], dtype=np.int64)
        length = np.array([self.spans[n][1] for n in names], dtype=np.int64)
        return first[indices], length[indices]

    def codes_of(self, symbols: pa.ChunkedArray, codes: Mapping[str, int]) -> np.ndarray:
        """The code (int32) of each entry of `symbols` in `codes` (symbol -> its number in the run)."""
        encoded = symbols.combine_chunks().dictionary_encode()
        mine = np.array([codes[n] for n in encoded.dictionary.to_pylist()], dtype=np.int32)
        return mine[encoded.indices.to_numpy(zero_copy_only=False)]

    def symbol_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(first row, number of bars) of each of the chunk's symbols, in row order."""
        spans = sorted(self.spans.values())
        return (np.array([a for a, _ in spans], dtype=np.int64).reshape(-1),
                np.array([n for _, n in spans], dtype=np.int64).reshape(-1))


def write_arrow(table: pa.Table, path: Path) -> None:
    """`table` as an Arrow IPC file."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


# A run's staged chunks as the end of the run reads them: the staging folder, for a process that
# sees it, or chunk -> staged_files() of the chunks it needs, sent through Dask to one that may not.
Staged = Path | Mapping[int, Mapping[str, bytes]]


def staged_files(staging: Path, chunk: int) -> dict[str, bytes]:
    """The bytes of staged chunk `chunk`'s files that the end of the run reads: kind (rows,
    series) -> the file's bytes."""
    return {kind: (staging / f"{kind}-{chunk:05d}.arrow").read_bytes() for kind in ("rows", "series")}


def _read_staged(staged: Staged, kind: str, chunk: int) -> pa.Table:
    if isinstance(staged, Path):
        return read_arrow(staged / f"{kind}-{chunk:05d}.arrow")
    return pa.ipc.open_file(pa.py_buffer(staged[chunk][kind])).read_all()


def repeated_names(names: Sequence[str], counts: Sequence[int]) -> pa.DictionaryArray:
    """names[0] counts[0] times, then names[1] counts[1] times, ...: dictionary-encoded, without
    building a Python string per row (a chunk of 20-year histories has a million bars)."""
    indices = np.repeat(np.arange(len(names), dtype=np.int32), np.asarray(counts, dtype=np.int64))
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(list(names), pa.string()))


def staged_schema(file_schemas: Mapping[str, pa.Schema]) -> pa.Schema:
    """A detector's rows as read back (read_staged_chunk), from its files' schemas
    (StagingFolder.schemas()): every column of its files (harness.detector_files.final_columns) but
    abn_<h>, which the end of the run adds, and BAR."""
    staged = [field for field in detector_files.final_columns(file_schemas) if not field.name.startswith("abn_")]
    return pa.schema([*staged, (BAR, pa.int32())])


def read_staged_chunk(staged: Staged, chunk: int, detectors: Sequence[tuple[int, str, pa.Schema]]) -> StagedChunk:
    """Staged chunk `chunk` as StagingFolder.write_chunk laid it out, with the rows of `detectors`:
    (number in the run, name, staged_schema()) each.
    Reads only `staged` (the staging folder or the chunk's files' bytes), so any process can call this."""
    series = read_staged_series(staged, chunk)
    rows = _read_staged(staged, "rows", chunk)
    if rows.num_rows:  # one stable sort by detector, then a slice each (a filter each reads all rows)
        codes = rows.column("detector").to_numpy()
        rows = rows.take(pa.array(np.argsort(codes, kind="stable")))
        bounds = np.searchsorted(np.sort(codes), np.arange(max(code for code, *_ in detectors) + 2))
    for code, name, schema in detectors:
        mine = rows.slice(bounds[code], bounds[code + 1] - bounds[code]) if rows.num_rows else rows
        series.rows[name] = _detector_rows(mine, code, name, schema)
    return series


def read_staged_series(staged: Staged, chunk: int) -> StagedChunk:
    """Staged chunk `chunk`'s bars only (no detector's rows)."""
    table = _read_staged(staged, "series", chunk)
    symbol = table.column("symbol").combine_chunks()
    if not isinstance(symbol, pa.DictionaryArray):
        symbol = symbol.dictionary_encode()
    codes = symbol.indices.to_numpy(zero_copy_only=False)
    days, close = table.column("day").to_numpy(), table.column("close").to_numpy()
    edges = [0, *(np.flatnonzero(np.diff(codes)) + 1), len(codes)] if len(codes) else [0]
    names = symbol.dictionary.to_pylist()
    spans = {names[codes[a]]: (a, b - a) for a, b in zip(edges, edges[1:])}
    return StagedChunk(days, close, spans, {})


def _detector_rows(mine: pa.Table, code: int, name: str, schema: pa.Schema) -> pa.Table:
    """A detector's rows with the columns of `schema` (staged_schema()) from `mine`, its rows of a
    staged rows part: symbol as text, its name, its extra columns ("<code>:<column>"; NaN where a
    symbol had no events), the others as staged (date, score, close, fwd_<h>, BAR)."""
    if BAR not in mine.column_names:  # a chunk in which every symbol failed
        return schema.empty_table()
    columns = {"symbol": mine.column("symbol").cast(pa.string()),
               "detector": pa.array(np.full(mine.num_rows, name, dtype=object), pa.string())}
    nan = pa.array(np.full(mine.num_rows, np.nan), pa.float64())
    return pa.table({c: columns[c] if c in columns else mine.column(c) if c in mine.column_names
                     else mine.column(f"{code}:{c}") if f"{code}:{c}" in mine.column_names else nan
                     for c in schema.names})


def staged_rows(results: Sequence[SymbolResult], detectors: Sequence[DetectorSpec]) -> pa.Table:
    """Every detector's event rows of `results` (ok ones, in symbol order) as one table: symbol,
    then SymbolResult.rows' columns (detector code, bar, date, score, close, fwd_<h>), then each
    detector's extra columns as "<code>:<name>" (NaN on other detectors' rows)."""
    if not results:
        return pa.table({"symbol": pa.array([], pa.string()).dictionary_encode(), "detector": pa.array([], pa.int16())})
    counts = [len(r.rows["detector"]) for r in results]
    columns = {name: np.concatenate([r.rows[name] for r in results]) for name in results[0].rows}
    table = pa.table({"symbol": repeated_names([r.symbol for r in results], counts),
                      **{name: pa.array(values) for name, values in columns.items()}})
    starts = np.cumsum([0, *counts])
    for code, spec in enumerate(detectors):
        extras = [(n, r.extras[spec.name]) for n, r in enumerate(results) if spec.name in r.extras]
        if not extras:
            continue
        for name in extras[0][1]:
            values = np.full(table.num_rows, np.nan)
            for n, extra in extras:  # a result's rows of one detector are consecutive
                block = np.flatnonzero(columns["detector"][starts[n]:starts[n + 1]] == code) + starts[n]
                values[block] = extra[name]
            table = table.append_column(f"{code}:{name}", pa.array(values, pa.float64()))
    return table


@dataclasses.dataclass
class StagedFacts:
    """What state.json records besides the parts: which chunks are staged (the commit point of
    --resume) and what their symbols told, for run.json. Updated as each chunk is staged."""

    run_key: dict[str, str]            # harness.fingerprint.run_fingerprint() of the run that staged them
    chunks: list[int] = dataclasses.field(default_factory=list)       # staged, sorted
    extra_columns: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # detector -> its extras
    extra_columns_from: dict[str, str] = dataclasses.field(default_factory=dict)   # detector -> the symbol that fixed them
    failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)   # symbol, detector, error
    repairs: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # symbol -> harness.io repairs
    cpu_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # detector -> CPU seconds
    bars: int = 0                      # bars read, over every symbol
    no_bars: list[str] = dataclasses.field(default_factory=list)    # symbols with no bar to scan
    market_outliers: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the first MAX_LISTED_OUTLIERS
    market_outlier_count: int = 0
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)  # symbol -> harness.io.symbol_fingerprint
    parts: dict[str, str] = dataclasses.field(default_factory=dict)  # staged part's file name -> sha256 of its bytes
    lookahead: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # checked symbol -> its findings

    def to_json(self) -> bytes:
        return json.dumps(vars(self), sort_keys=True).encode()  # asdict() would deep-copy every field: 5x slower

    @classmethod
    def from_json(cls, saved: Any) -> StagedFacts | None:
        """The facts of a parsed state.json; None when it is not one this tool wrote (a key missing
        or of another type)."""
        fresh = dataclasses.asdict(cls({}))
        if not isinstance(saved, dict) or set(saved) != set(fresh) or any(
                type(saved[k]) is not type(v) for k, v in fresh.items()):
            return None
        return cls(**saved)


class StagingFolder:
    """Owns <out_dir>/.symbol-scan-staging: the staged chunks, state.json and --resume; hands over
    to the final files at the end (final_files())."""

    def __init__(self, out_dir: str, detectors: Sequence[DetectorSpec], windows: Sequence[int],
                 run_key: Mapping[str, str], resume: bool, symbols: int, chunk_size: int,
                 outlier_move: float | None = None):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / STAGING
        self.detectors = list(detectors)
        self.windows = list(windows)
        self.run_key = dict(run_key)  # harness.fingerprint.run_fingerprint()
        self.symbols, self.chunk_size = symbols, chunk_size
        self.outlier_move = outlier_move  # harness.stats.market.outlier_bars: bars left out of the market
        self.chunks = -(-symbols // chunk_size)
        self.facts = StagedFacts(self.run_key)
        self.kept = 0  # symbols in the staged chunks that state.json on disk records
        self.resumed = resume and self.path.exists()
        if self.resumed:
            self.facts = self._load_facts()
            self.kept = self.flushed
        self.check_paths()
        if not self.resumed:
            self._start_staging()

    # ---------------------------------------------------------------- the staging folder

    def _start_staging(self) -> None:
        """A new, empty staging folder with its marker, in place of an earlier one of ours."""
        with self.writing(self.path):
            self._remove_staging()
            self.path.mkdir(parents=True)  # out_dir too, for callers of run_scan without the lock
        try:
            with self.writing(self.path):
                write_synced(self.path / STAGING_MARKER, MARKER_TEXT.encode())
                self._save_state()
        except OutputError:
            shutil.rmtree(self.path, ignore_errors=True)  # made just now, holds nothing to resume
            raise

    def _load_facts(self) -> StagedFacts:
        """The saved state of the run to resume; "cannot resume" when the staging folder is damaged."""
        if not (self.path / STAGING_MARKER).is_file():
            raise self._not_ours()
        path = self.path / STATE_FILE
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise self._damaged(f"{path} is missing") from None
        except (OSError, ValueError) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else f"not valid JSON: {exc}"
            raise self._damaged(f"{path} is unreadable ({reason})") from None
        if isinstance(saved, dict) and isinstance(saved.get("run_key"), str):  # before run keys had parts
            raise self._damaged(f"{path} was written by an older version of this tool")
        facts = StagedFacts.from_json(saved)
        if facts is None:
            raise self._damaged(f"{path} is not a state file this tool wrote")
        if facts.run_key != self.run_key:
            what = changed(facts.run_key, self.run_key, self.detectors)
            raise ScanError(f"--resume: {what} changed since the unfinished run in {self.path} staged its "
                            "results; rerun without --resume to start over")
        if any(not isinstance(c, int) or not 0 <= c < self.chunks for c in facts.chunks):
            raise self._damaged(f"{path} lists chunks this run does not have")
        for chunk in facts.chunks:
            for part in self._part_paths(chunk):
                self._check_part(part, facts.parts.get(part.name))
        return facts

    def _check_part(self, path: Path, staged: str | None) -> None:
        """"cannot resume" unless `path` holds the bytes staged there (`staged`: their sha256)."""
        try:
            found = _sha256(path)
        except FileNotFoundError:
            raise self._damaged(f"the staged part {path} is missing") from None
        except OSError as exc:
            raise self._damaged(f"the staged part {path} is unreadable ({os_reason(exc)})") from None
        if found != staged:
            raise self._damaged(f"the staged part {path} is not the file that was staged (its checksum differs: "
                                "rewritten, cut short or replaced since)")

    def _not_ours(self) -> ConfigError:
        return ConfigError(f"config key 'out_dir': {self.path} was not made by this tool (it has no "
                           f"{STAGING_MARKER} file) and is left alone; move or rename it")

    def _damaged(self, problem: str) -> ScanError:
        return ScanError(f"cannot resume: {problem}; rerun without --resume to start over")

    def _remove_staging(self) -> None:
        """Delete the staging folder if it is ours (it holds the marker), the marker last."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        marker = self.path / STAGING_MARKER
        if self.path.is_symlink() or not marker.is_file():
            raise self._not_ours()
        for child in self.path.iterdir():
            if child.name != STAGING_MARKER:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        marker.unlink(missing_ok=True)
        self.path.rmdir()

    def writing(self, path: Path) -> contextlib.AbstractContextManager[None]:
        """Turn an OSError while writing `path` into one OutputError that says what --resume keeps."""
        return output_errors(path, self.cannot_write)

    def cannot_write(self, path: Path, reason: str) -> OutputError:
        kept = (f"the {self.kept} symbols flushed so far are kept: rerun with --resume once that is fixed"
                if self.kept else "no symbol was flushed yet, so there is nothing to resume")
        return OutputError(f"cannot write {path}: {reason}; {kept}")

    def check_paths(self) -> None:
        """OutputError if something of another kind occupies an output path of the run (checked up
        front, and by FinalFiles again before the final renames)."""
        found = in_the_way(self.out_dir, RUN_FILES, [spec.out_name for spec in self.detectors])
        if found:
            raise self.cannot_write(*found)

    # ---------------------------------------------------------------- chunks

    def chunk_range(self, chunk: int) -> range:
        """The indices (into the run's sorted symbols) of chunk `chunk`."""
        return range(chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.symbols))

    @property
    def done_chunks(self) -> set[int]:
        """The chunks already staged (kept by --resume)."""
        return set(self.facts.chunks)

    @property
    def flushed(self) -> int:
        """How many symbols are already in the staged parts."""
        return sum(len(self.chunk_range(c)) for c in self.facts.chunks)

    def _save_state(self) -> None:
        path = self.path / STATE_FILE
        with self.writing(path), replacing(path) as tmp:
            write_synced(tmp, self.facts.to_json())
        self.kept = self.flushed

    def _write_part(self, table: pa.Table, path: Path) -> None:
        """Write a part; its checksum goes into state.json with the chunk (the commit point)."""
        with self.writing(path), replacing(path) as tmp:
            write_arrow(table, tmp)
            self.facts.parts[path.name] = _sha256(tmp)

    def _part_paths(self, chunk: int) -> list[Path]:
        """Every staged file of chunk `chunk`."""
        return [self.path / f"{kind}-{chunk:05d}.arrow" for kind in ("rows", "series", "market")]

    def _read_part(self, path: Path) -> pa.Table:
        try:
            return read_arrow(path)
        except FileNotFoundError:
            raise self._damaged(f"the staged part {path} is missing") from None
        except (OSError, pa.ArrowException) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0]
            raise self._damaged(f"the staged part {path} is unreadable ({reason})") from None

    def schemas(self, spec: DetectorSpec, extras_seen: Sequence[tuple[str, dict[str, np.ndarray] | None]] = ()
                ) -> dict[str, pa.Schema]:
        """The detector's files' schemas by file name (harness.detector_files.schemas); its extra
        columns are fixed by the first symbol staged with events (extras_seen: (symbol,
        SymbolResult.extras) pairs), and a symbol whose columns differ is an error naming both
        symbols. It stops the run under on_error: skip too: which of the two is wrong cannot be
        told, and which one came first depends on the order tasks finished in."""
        for symbol, columns in extras_seen:
            names = list(columns) if columns is not None else []
            known = self.facts.extra_columns.setdefault(spec.name, names)
            first = self.facts.extra_columns_from.setdefault(spec.name, symbol)
            if names != known:
                raise ScanError(f"detector {spec.name!r} returned extra columns {names} for symbol {symbol!r} but "
                                f"{known} for symbol {first!r}; a detector must return the same extra columns for "
                                "every symbol (--on-error skip cannot tell which is wrong)")
        return detector_files.schemas(self.facts.extra_columns.get(spec.name, []), self.windows)

    def write_chunk(self, chunk: int, results: Sequence[SymbolResult]) -> None:
        """Stage chunk `chunk`: its symbols' results, in symbol order, as one part per staged file."""
        if len(results) != len(self.chunk_range(chunk)):
            raise ValueError(f"chunk {chunk} has {len(self.chunk_range(chunk))} symbols, got {len(results)} results")
        ok = [r for r in results if r.error is None]
        for result in results:
            if result.fingerprint:  # what --resume checks the files against (harness.fingerprint)
                self.facts.inputs[result.symbol] = result.fingerprint
            if result.error is not None:
                self.facts.failed.append({"symbol": result.symbol, "detector": result.error.detector,
                                             "error": result.error.message})
        for result in ok:
            for name, seconds in result.cpu_seconds.items():
                self.facts.cpu_seconds[name] = self.facts.cpu_seconds.get(name, 0.0) + seconds
            if result.repairs:
                self.facts.repairs[result.symbol] = result.repairs
            self.facts.bars += result.bars
            if not result.bars:
                self.facts.no_bars.append(result.symbol)
            if result.lookahead:  # harness.task.check_lookahead: kept for a resumed run's summary
                self.facts.lookahead[result.symbol] = result.lookahead
        with_events = [(set(np.unique(r.rows["detector"]).tolist()), r) for r in ok]
        for code, spec in enumerate(self.detectors):  # extra columns: the same for every symbol with events
            self.schemas(spec, [(r.symbol, r.extras.get(spec.name)) for codes, r in with_events if code in codes])
        self._write_part(staged_rows(ok, self.detectors), self.path / f"rows-{chunk:05d}.arrow")
        with_bars = [r for r in ok if r.bars]
        series = pa.table({
            "symbol": repeated_names([r.symbol for r in with_bars], [r.bars for r in with_bars]),
            "day": pa.array(np.concatenate([r.days for r in with_bars]) if with_bars else [], pa.int32()),
            "close": pa.array(np.concatenate([r.close for r in with_bars]) if with_bars else [], pa.float64())})
        self._write_part(series, self.path / f"series-{chunk:05d}.arrow")
        market = chunk_sums([(r.days, r.close) for r in with_bars], self.outlier_move)
        for r in with_bars:
            for bar in np.flatnonzero(outlier_bars(r.close, self.outlier_move)):
                self.facts.market_outlier_count += 1
                if len(self.facts.market_outliers) < MAX_LISTED_OUTLIERS:
                    self.facts.market_outliers.append(
                        {"symbol": r.symbol, "date": str(np.datetime64(int(r.days[bar]), "D")),
                         "return": float(r.close[bar] / r.close[bar - 1] - 1)})
        self._write_part(pa.Table.from_pandas(market, preserve_index=False), self.path / f"market-{chunk:05d}.arrow")
        self.facts.chunks = sorted({*self.facts.chunks, chunk})
        self._save_state()  # the commit point: parts of chunks not listed are ignored on resume

    # ---------------------------------------------------------------- the end

    def event_counts(self) -> np.ndarray:
        """How many events each detector has in each staged chunk: [chunk, detector number in the run]."""
        counts = np.zeros((self.chunks, len(self.detectors)), dtype=np.int64)
        for chunk in range(self.chunks):
            rows = self._read_part(self.path / f"rows-{chunk:05d}.arrow")
            if rows.num_rows:
                counts[chunk] = np.bincount(rows.column("detector").to_numpy(), minlength=len(self.detectors))
        return counts

    def market_parts(self) -> Iterator[pd.DataFrame]:
        """Every chunk's market sums, in chunk order."""
        for chunk in range(self.chunks):
            yield self._read_part(self.path / f"market-{chunk:05d}.arrow").to_pandas()

    def check_some_symbol_succeeded(self) -> None:
        """ScanError when no symbol gave results (all failed, or none had bars): such a run must not
        replace the previous results with empty files. Its staging folder is removed."""
        failed, empty = self.facts.failed, self.facts.no_bars
        if self.flushed > len(failed) + len(empty):
            return
        with self.writing(self.path):
            self._remove_staging()
        first = ""
        if failed:  # as the log line of a skipped symbol has it, without naming the symbol twice
            where = f"symbol {failed[0]['symbol']!r}" + (f", detector {failed[0]['detector']!r}"
                                                        if failed[0]["detector"] else "")
            error = failed[0]["error"]
            first = "; first failure: " + (error if error.startswith(where) else f"{where}: {error}")
        raise ScanError(f"no symbol was scanned ({len(failed)} failed, {len(empty)} had no bars in the "
                        f"lookback window{first}); the previous results in {self.out_dir} are left as they were")

    @contextlib.contextmanager
    def final_files(self) -> Iterator[FinalFiles]:
        """The new final files (harness.final_files), written under temp names in this folder:
        moved into place (and this folder removed) when the block ends without an error; on an
        error every temp file is removed, the previous files stay as they were and this folder is
        kept for --resume. A run in which no symbol succeeded stops here."""
        self.check_some_symbol_succeeded()
        files = FinalFiles(self.out_dir, self.path, self.cannot_write)
        try:
            yield files
            files.commit()
        except BaseException:
            files.discard()
            raise
        with self.writing(self.path):
            self._remove_staging()

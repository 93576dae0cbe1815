"""The format of a staged chunk: what StagingFolder (harness.staging) writes for a chunk of
symbols' results and how any process reads it back.

A staged chunk is three Arrow IPC files (parts), named by chunk number:
    rows-00000.arrow      every detector's events with their bar number (BAR), score, close and
                          forward returns, and each detector's extra columns ("<code>:<column>")
    series-00000.arrow    every bar's day and close of the chunk's symbols
    market-00000.arrow    the chunk's market sums (harness.stats.market.chunk_sums)
Arrow IPC, not parquet: staging is internal, and these write and read several times faster (the
driver writes them while the workers scan). A part always holds the results of one chunk's
symbols in sorted order, so the parts, and so the final bytes, depend only on the data and the
config, not on task sizes or the order in which tasks finished.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from harness import detector_files
from harness.detectors import DetectorSpec
from harness.stats.market import chunk_sums
from harness.task import SymbolResult

BAR = "bar"  # staged rows only: the event's row in its symbol's bars


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


def chunk_tables(results: Sequence[SymbolResult], detectors: Sequence[DetectorSpec],
                 outlier_move: float | None) -> dict[str, pa.Table]:
    """A chunk's parts: kind (rows, series, market) -> its table, from the chunk's ok results in
    symbol order. outlier_move: the bars left out of the market (harness.stats.market.outlier_bars)."""
    with_bars = [r for r in results if r.bars]
    series = pa.table({
        "symbol": repeated_names([r.symbol for r in with_bars], [r.bars for r in with_bars]),
        "day": pa.array(np.concatenate([r.days for r in with_bars]) if with_bars else [], pa.int32()),
        "close": pa.array(np.concatenate([r.close for r in with_bars]) if with_bars else [], pa.float64())})
    market = chunk_sums([(r.days, r.close) for r in with_bars], outlier_move)
    return {"rows": staged_rows(results, detectors), "series": series,
            "market": pa.Table.from_pandas(market, preserve_index=False)}

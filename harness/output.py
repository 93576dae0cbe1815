"""Writing the outputs: chunks are staged as they complete, the final files replace the old ones at the end.

The run's symbols, sorted, are cut into chunks of `flush_every` consecutive symbols (the last one
may be shorter); chunk c is symbols[c * flush_every : (c + 1) * flush_every]. The driver writes a
chunk as soon as all its symbols' results are in, in whatever order chunks complete.

Layout while a run is going (all under <out_dir>/.partial/):
    state.json                       the commit point: run key, chunks written, counts
    <detector>/events-00000.parquet  one part per chunk (named by chunk number): events, and forward
    <detector>/forward-00000.parquet returns with the event's bar number (for finalize)
    series-00000.parquet             every bar's day and close of the chunk's symbols
    market-00000.parquet             the chunk's market sums (harness.market.chunk_sums)
Each part is written to a temp name, then renamed. At the end, FinalFiles writes every final file
under a temp name: the driver streams the staged chunks (staged()), in chunk order, through the
market-adjusted statistics into <out_dir>/<detector>/{events,forward}.parquet (one row group per
chunk), then summary.csv, market.parquet, paths.csv, report.html and run.json; only then are they
all renamed into place (os.replace) and .partial removed. So a crash leaves every file at an
output path whole (the previous run's, or during the final renames possibly some new ones), and
every chunk recorded in state.json is kept for --resume.

Determinism: a part always holds the results of one chunk's symbols in sorted order, so the parts,
and so the final bytes, depend only on the data and the config, not on task sizes or the order in
which tasks finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.detectors import DetectorSpec
from harness.errors import ScanError
from harness.eval import abnormal_column, forward_column
from harness.market import chunk_sums
from harness.task import SymbolResult

STAGING = ".partial"
STATE_FILE = "state.json"
BAR = "bar"  # staged forward parts only: the event's row in its symbol's bars


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and os.replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    write_synced(tmp, data)
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@dataclasses.dataclass
class StagedChunk:
    """One staged chunk, read back: its symbols' bars and each detector's staged rows."""

    days: np.ndarray                     # every bar's day number (int32), symbol after symbol
    close: np.ndarray                    # every bar's close
    spans: dict[str, tuple[int, int]]    # symbol -> (first row in days/close, number of bars)
    events: dict[str, pa.Table]          # detector name -> events part
    forward: dict[str, pa.Table]         # detector name -> forward part, with BAR


class FinalFiles:
    """The new final files, each written under a temp name; commit() moves them all into place."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.moves: list[tuple[Path, Path]] = []
        self.writers: dict[Path, pq.ParquetWriter] = {}

    def _temp_for(self, name: str) -> Path:
        final = self.out_dir / name
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp")
        self.moves.append((tmp, final))
        return tmp

    def append(self, name: str, table: pa.Table) -> None:
        """Add `table` as one row group of parquet file `name` (a path relative to out_dir)."""
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(self._temp_for(name), table.schema)
        if table.num_rows:
            self.writers[name].write_table(table, row_group_size=table.num_rows)

    def table(self, name: str, table: pa.Table) -> None:
        """Write parquet file `name` whole."""
        pq.write_table(table, self._temp_for(name))

    def text(self, name: str, text: str) -> None:
        """Write text file `name`."""
        write_synced(self._temp_for(name), text.encode())

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def discard(self) -> None:
        """Remove every temp file written so far (a failure before commit)."""
        self.close()
        for tmp, _ in self.moves:
            tmp.unlink(missing_ok=True)

    def commit(self) -> None:
        """Move every file into place."""
        self.close()
        for tmp, final in self.moves:
            os.replace(tmp, final)


class OutputWriter:
    """Owns <out_dir>: staged chunks, resume state, and the final atomic replacement."""

    def __init__(self, out_dir: str, detectors: Sequence[DetectorSpec], windows: Sequence[int],
                 run_key: str, resume: bool, symbols: int, chunk_size: int):
        self.out_dir = Path(out_dir)
        self.staging = self.out_dir / STAGING
        self.detectors = list(detectors)
        self.windows = list(windows)
        self.run_key = run_key
        self.symbols, self.chunk_size = symbols, chunk_size
        self.chunks = -(-symbols // chunk_size)
        self.state: dict[str, Any] = {"run_key": run_key, "chunks": [], "extra_columns": {},
                                      "failed": [], "repairs": {}, "cpu_seconds": {}, "bars": 0,
                                      "no_bars": []}
        state_path = self.staging / STATE_FILE
        if resume and state_path.exists():
            saved = json.loads(state_path.read_text())
            if saved.get("run_key") != run_key:
                raise ScanError(f"--resume: the unfinished run in {self.staging} was started with a different "
                                "config or universe; rerun without --resume to start over")
            self.state = saved
        else:
            if self.staging.exists():
                shutil.rmtree(self.staging)
            for spec in self.detectors:
                (self.staging / spec.out_name).mkdir(parents=True)
            self._save_state()

    def chunk_range(self, chunk: int) -> range:
        """The indices (into the run's sorted symbols) of chunk `chunk`."""
        return range(chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.symbols))

    @property
    def done_chunks(self) -> set[int]:
        """The chunks already staged (kept by --resume)."""
        return set(self.state["chunks"])

    @property
    def flushed(self) -> int:
        """How many symbols are already in the staged parts."""
        return sum(len(self.chunk_range(c)) for c in self.state["chunks"])

    def _save_state(self) -> None:
        atomic_write_bytes(self.staging / STATE_FILE, json.dumps(self.state, sort_keys=True).encode())

    def schemas(self, spec: DetectorSpec, extras_seen: Sequence[pa.Table | None] = ()
                ) -> tuple[pa.Schema, pa.Schema]:
        """The detector's final (events, forward) schemas; extra event columns are fixed by the first
        symbol that returned them, and a detector that later returns other columns is an error."""
        for table in extras_seen:
            names = table.column_names if table is not None else []
            known = self.state["extra_columns"].setdefault(spec.name, names)
            if names != known:
                raise ScanError(f"detector {spec.name!r} returned extra columns {names} for one symbol "
                                f"but {known} for another; a detector must always return the same columns")
        extras = self.state["extra_columns"].get(spec.name, [])
        key = [("symbol", pa.string()), ("date", pa.timestamp("ns")), ("detector", pa.string())]
        events = pa.schema([*key, ("score", pa.float64()), *((c, pa.float64()) for c in extras)])
        forward = pa.schema([*key, ("close", pa.float64()),
                             *((forward_column(h), pa.float64()) for h in self.windows),
                             *((abnormal_column(h), pa.float64()) for h in self.windows)])
        return events, forward

    def _staged_forward_schema(self, spec: DetectorSpec) -> pa.Schema:
        _, forward = self.schemas(spec)
        staged = [f for f in forward if not f.name.startswith("abn_")]
        return pa.schema([*staged, (BAR, pa.int32())])

    def write_chunk(self, chunk: int, results: Sequence[SymbolResult]) -> None:
        """Stage chunk `chunk`: its symbols' results, in symbol order, as one part per staged file."""
        if len(results) != len(self.chunk_range(chunk)):
            raise ValueError(f"chunk {chunk} has {len(self.chunk_range(chunk))} symbols, got {len(results)} results")
        ok = [r for r in results if r.error is None]
        for result in results:
            if result.error is not None:
                self.state["failed"].append({"symbol": result.symbol, "detector": result.error.detector,
                                             "error": result.error.message})
        for result in ok:
            for name, seconds in result.cpu_seconds.items():
                self.state["cpu_seconds"][name] = self.state["cpu_seconds"].get(name, 0.0) + seconds
            if result.repairs:
                self.state["repairs"][result.symbol] = result.repairs
            self.state["bars"] += result.bars
            if not result.bars:
                self.state["no_bars"].append(result.symbol)
        rows_all = pa.concat_tables([r.rows for r in ok]) if ok else None
        symbol = pa.array(np.repeat([r.symbol for r in ok], [r.rows.num_rows for r in ok]), pa.string()) \
            if ok else None
        for code, spec in enumerate(self.detectors):
            events_schema, _ = self.schemas(spec, [r.extras.get(spec.name) for r in ok])
            forward_schema = self._staged_forward_schema(spec)
            if rows_all is None:
                events, forward = events_schema.empty_table(), forward_schema.empty_table()
            else:
                mask = pc.equal(rows_all.column("detector"), code)
                rows = rows_all.filter(mask)
                names = pa.array(np.full(rows.num_rows, spec.name, dtype=object), pa.string())
                columns = {"symbol": symbol.filter(mask), "date": rows.column("date"), "detector": names,
                           **{c: rows.column(c) for c in rows.column_names if c not in ("detector", "date")}}
                forward = pa.table({c: columns[c] for c in forward_schema.names}).cast(forward_schema)
                extras = [r.extras[spec.name] for r in ok if spec.name in r.extras]
                if extras:  # a detector's extra columns, whatever their names, go to events only
                    extra_table = pa.concat_tables(extras)
                    columns.update({c: extra_table.column(c) for c in extra_table.column_names})
                events = pa.table({c: columns[c] for c in events_schema.names}).cast(events_schema)
            _write_parquet(events, self.staging / spec.out_name / f"events-{chunk:05d}.parquet")
            _write_parquet(forward, self.staging / spec.out_name / f"forward-{chunk:05d}.parquet")
        with_bars = [r for r in ok if r.bars]
        series = pa.table({
            "symbol": pa.array(np.repeat([r.symbol for r in with_bars], [r.bars for r in with_bars]).astype(object),
                               pa.string()).dictionary_encode(),
            "day": pa.array(np.concatenate([r.days for r in with_bars]) if with_bars else [], pa.int32()),
            "close": pa.array(np.concatenate([r.close for r in with_bars]) if with_bars else [], pa.float64())})
        _write_parquet(series, self.staging / f"series-{chunk:05d}.parquet")
        market = chunk_sums([(r.days, r.close) for r in with_bars])
        _write_parquet(pa.Table.from_pandas(market, preserve_index=False), self.staging / f"market-{chunk:05d}.parquet")
        self.state["chunks"] = sorted({*self.state["chunks"], chunk})
        self._save_state()  # the commit point: parts of chunks not listed are ignored on resume

    def market_parts(self) -> Iterator[pd.DataFrame]:
        """Every chunk's market sums, in chunk order."""
        for chunk in range(self.chunks):
            yield pq.read_table(self.staging / f"market-{chunk:05d}.parquet").to_pandas()

    def staged(self) -> Iterator[StagedChunk]:
        """Every staged chunk, in chunk order."""
        for chunk in range(self.chunks):
            table = pq.read_table(self.staging / f"series-{chunk:05d}.parquet")
            symbol = table.column("symbol").combine_chunks()
            if not isinstance(symbol, pa.DictionaryArray):
                symbol = symbol.dictionary_encode()
            codes = symbol.indices.to_numpy(zero_copy_only=False)
            days, close = table.column("day").to_numpy(), table.column("close").to_numpy()
            edges = [0, *(np.flatnonzero(np.diff(codes)) + 1), len(codes)] if len(codes) else [0]
            names = symbol.dictionary.to_pylist()
            spans = {names[codes[a]]: (a, b - a) for a, b in zip(edges, edges[1:])}
            yield StagedChunk(
                days, close, spans,
                {s.name: pq.read_table(self.staging / s.out_name / f"events-{chunk:05d}.parquet") for s in self.detectors},
                {s.name: pq.read_table(self.staging / s.out_name / f"forward-{chunk:05d}.parquet") for s in self.detectors})

    @contextlib.contextmanager
    def final_files(self) -> Iterator[FinalFiles]:
        """The new final files: moved into place (and staging removed) when the block ends without an
        error; on an error every temp file is removed and the previous files stay as they were."""
        files = FinalFiles(self.out_dir)
        try:
            yield files
        except BaseException:
            files.discard()
            raise
        files.commit()
        shutil.rmtree(self.staging)


"""Writing the outputs: flushes go to a staging folder, the final files replace the old ones at the end.

Layout while a run is going (all under <out_dir>/.partial/):
    state.json                      the commit point: run key, symbols flushed, parts written
    <detector>/events-00000.parquet one part per flush, each written to a temp name, then renamed
    <detector>/forward-00000.parquet
At the end, finalize() joins each detector's parts into <out_dir>/<detector>/{events,forward}.parquet
(one row group per part) and writes summary.csv, report.html and run.json, all under temp names
first; then it renames them into place (os.replace) and removes .partial. So a crash leaves every
file at an output path whole (the previous run's, or during the final renames possibly some new
ones), and every flush recorded in state.json can be resumed from (--resume).

Determinism: a part always holds the results of `flush_every` consecutive symbols in sorted order
(the driver flushes in symbol order, whatever order tasks finished in), so the parts, and so the
final bytes, depend only on the data and the config.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.detectors import DetectorSpec
from harness.errors import ScanError
from harness.eval import forward_column
from harness.task import SymbolResult

STAGING = ".partial"
STATE_FILE = "state.json"


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


class OutputWriter:
    """Owns <out_dir>: staged flushes, resume state, and the final atomic replacement."""

    def __init__(self, out_dir: str, detectors: Sequence[DetectorSpec], windows: Sequence[int],
                 run_key: str, resume: bool):
        self.out_dir = Path(out_dir)
        self.staging = self.out_dir / STAGING
        self.detectors = list(detectors)
        self.windows = list(windows)
        self.run_key = run_key
        self.state: dict[str, Any] = {"run_key": run_key, "flushed": 0, "parts": 0, "extra_columns": {},
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

    @property
    def flushed(self) -> int:
        """How many symbols (in sorted order) are already in the staged parts."""
        return self.state["flushed"]

    def _save_state(self) -> None:
        atomic_write_bytes(self.staging / STATE_FILE, json.dumps(self.state, sort_keys=True).encode())

    def _schemas(self, spec: DetectorSpec, extras_seen: Sequence[pa.Table | None] = ()
                 ) -> tuple[pa.Schema, pa.Schema]:
        """The detector's (events, forward) schemas; extra event columns are fixed by the first symbol
        that returned them, and a detector that later returns other columns is an error."""
        for table in extras_seen:
            names = table.column_names if table is not None else []
            known = self.state["extra_columns"].setdefault(spec.name, names)
            if names != known:
                raise ScanError(f"detector {spec.name!r} returned extra columns {names} for one symbol "
                                f"but {known} for another; a detector must always return the same columns")
        extras = self.state["extra_columns"].get(spec.name, [])
        events = pa.schema([("symbol", pa.string()), ("date", pa.timestamp("ns")), ("detector", pa.string()),
                            ("score", pa.float64()), *((c, pa.float64()) for c in extras)])
        forward = pa.schema([("symbol", pa.string()), ("date", pa.timestamp("ns")), ("detector", pa.string()),
                             ("close", pa.float64()), *((forward_column(h), pa.float64()) for h in self.windows)])
        return events, forward

    def flush(self, results: Sequence[SymbolResult]) -> None:
        """Stage the next consecutive symbols' results (in symbol order) as one part per detector file."""
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
        chunk = pa.concat_tables([r.rows for r in ok]) if ok else None
        symbol = pa.array(np.repeat([r.symbol for r in ok], [r.rows.num_rows for r in ok]), pa.string()) \
            if ok else None
        part = self.state["parts"]
        for code, spec in enumerate(self.detectors):
            events_schema, forward_schema = self._schemas(spec, [r.extras.get(spec.name) for r in ok])
            if chunk is None:
                events, forward = events_schema.empty_table(), forward_schema.empty_table()
            else:
                mask = pc.equal(chunk.column("detector"), code)
                rows = chunk.filter(mask)
                names = pa.array(np.full(rows.num_rows, spec.name, dtype=object), pa.string())
                columns = {"symbol": symbol.filter(mask), "date": rows.column("date"), "detector": names,
                           **{c: rows.column(c) for c in rows.column_names if c not in ("detector", "date")}}
                extras = [r.extras[spec.name] for r in ok if spec.name in r.extras]
                if extras:
                    extra_table = pa.concat_tables(extras)
                    columns.update({c: extra_table.column(c) for c in extra_table.column_names})
                events = pa.table({c: columns[c] for c in events_schema.names}).cast(events_schema)
                forward = pa.table({c: columns[c] for c in forward_schema.names}).cast(forward_schema)
            _write_parquet(events, self.staging / spec.out_name / f"events-{part:05d}.parquet")
            _write_parquet(forward, self.staging / spec.out_name / f"forward-{part:05d}.parquet")
        self.state["parts"] = part + 1
        self.state["flushed"] += len(results)
        self._save_state()  # the commit point: parts beyond state["parts"] are ignored on resume

    def _parts(self, spec: DetectorSpec, kind: str) -> Iterable[pa.Table]:
        for part in range(self.state["parts"]):
            yield pq.read_table(self.staging / spec.out_name / f"{kind}-{part:05d}.parquet")

    def read_forward(self, spec: DetectorSpec) -> pd.DataFrame:
        """Every staged forward-return row of one detector, in (symbol, date) order."""
        _, schema = self._schemas(spec)
        tables = [t for t in self._parts(spec, "forward") if t.num_rows]
        return (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()

    def finalize(self, summary: pd.DataFrame, run_info: dict[str, Any], report_html: str) -> None:
        """Join the parts into the final files and replace the previous run's files.

        Every new file is first written completely under a temp name; only then are they all moved
        into place, so the window in which a crash could leave old and new files side by side is
        that of a few renames, not of the writing.
        """
        moves: list[tuple[Path, Path]] = []

        def temp_for(final: Path) -> Path:
            tmp = final.with_name(f".{final.name}.tmp")
            moves.append((tmp, final))
            return tmp

        for spec in self.detectors:
            folder = self.out_dir / spec.out_name
            folder.mkdir(parents=True, exist_ok=True)
            for kind, schema in zip(("events", "forward"), self._schemas(spec)):
                with pq.ParquetWriter(temp_for(folder / f"{kind}.parquet"), schema) as writer:
                    for table in self._parts(spec, kind):
                        if table.num_rows:
                            writer.write_table(table, row_group_size=max(table.num_rows, 1))
        write_synced(temp_for(self.out_dir / "summary.csv"), summary.to_csv(index=False).encode())
        write_synced(temp_for(self.out_dir / "report.html"), report_html.encode())
        write_synced(temp_for(self.out_dir / "run.json"), (json.dumps(run_info, indent=2, default=str) + "\n").encode())
        for tmp, final in moves:
            os.replace(tmp, final)
        shutil.rmtree(self.staging)


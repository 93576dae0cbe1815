"""Writing the outputs: flushes go to a staging folder, the final files replace the old ones at the end.

Layout while a run is going (all under <out_dir>/.symbol-scan-staging/):
    made-by-symbol-scan             the marker: only a staging folder holding it is ever deleted
    state.json                      the commit point: run key, symbols flushed, parts written
    <detector>/events-00000.parquet one part per flush, each written to a temp name, then renamed
    <detector>/forward-00000.parquet
At the end, finalize() joins each detector's parts into <out_dir>/<detector>/{events,forward}.parquet
(one row group per part) and writes the top-level files (summary.csv, report.html, ...) and run.json,
all under temp names first; then it renames them into place (os.replace) and removes the staging
folder. So a crash leaves every file at an output path whole (the previous run's, or during the
final renames possibly some new ones), and every flush recorded in state.json can be resumed from.

A write that fails (no space, no permission, a read-only file system, a file too large, a path in
the way) is one OutputError naming the path and saying what --resume can still use; the failed
write's temp files are removed and the previous run's files stay as they were. Nothing in out_dir
but the run's own paths (harness.outdir) is touched: other folders, such as those of detectors of
an earlier run, stay; run.json lists the files of the run.

Determinism: a part always holds the results of `flush_every` consecutive symbols in sorted order
(the driver flushes in symbol order, whatever order tasks finished in), so the parts, and so the
final bytes, depend only on the data and the config.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.detectors import DetectorSpec
from harness.errors import ConfigError, OutputError, ScanError
from harness.eval import forward_column
from harness.outdir import DETECTOR_FILES, RUN_FILES, STAGING, STAGING_MARKER, os_reason
from harness.task import SymbolResult

STATE_FILE = "state.json"
MARKER_TEXT = ("symbol scan keeps the flushed results of an unfinished run here (for --resume); "
               "the next run into this folder deletes it.\n")


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def temp_name(path: Path) -> Path:
    """The temp file a new `path` is written to before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp name for `path`; os.replace it into place when the block succeeds, remove it when not."""
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


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
        self.kept = 0  # symbols in the staged parts that state.json on disk records
        self.resumed = resume and self.staging.exists()
        if self.resumed:
            self.state = self._load_state()
            self.kept = self.flushed
        self._check_paths(RUN_FILES)
        if not self.resumed:
            self._start_staging()

    def _start_staging(self) -> None:
        """A new, empty staging folder with its marker, in place of an earlier one of ours."""
        with self._writing(self.staging):
            self._remove_staging()
            self.staging.mkdir(parents=True)  # out_dir too, for callers of run_scan without the lock
        try:
            with self._writing(self.staging):
                write_synced(self.staging / STAGING_MARKER, MARKER_TEXT.encode())
                for spec in self.detectors:
                    (self.staging / spec.out_name).mkdir()
                self._save_state()
        except OutputError:
            shutil.rmtree(self.staging, ignore_errors=True)  # made just now, holds nothing to resume
            raise

    def _load_state(self) -> dict[str, Any]:
        """The saved state of the run to resume; "cannot resume" when the staging folder is damaged."""
        if not (self.staging / STAGING_MARKER).is_file():
            raise self._not_ours()
        path = self.staging / STATE_FILE
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise self._damaged(f"{path} is missing") from None
        except (OSError, ValueError) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else f"not valid JSON: {exc}"
            raise self._damaged(f"{path} is unreadable ({reason})") from None
        if not isinstance(saved, dict) or any(type(saved.get(k)) is not type(v) for k, v in self.state.items()):
            raise self._damaged(f"{path} is not a state file this tool wrote")
        if saved["run_key"] != self.run_key:
            raise ScanError(f"--resume: the unfinished run in {self.staging} was started with a different "
                            "config or universe; rerun without --resume to start over")
        for spec in self.detectors:
            for kind in ("events", "forward"):
                for part in self._part_paths(spec, kind, saved["parts"]):
                    self._read_part(part, metadata_only=True)
        return saved

    def _not_ours(self) -> ConfigError:
        return ConfigError(f"config key 'out_dir': {self.staging} was not made by this tool (it has no "
                           f"{STAGING_MARKER} file) and is left alone; move or rename it")

    def _damaged(self, problem: str) -> ScanError:
        return ScanError(f"cannot resume: {problem}; rerun without --resume to start over")

    def _remove_staging(self) -> None:
        """Delete the staging folder if it is ours (it holds the marker), the marker last."""
        if not self.staging.exists() and not self.staging.is_symlink():
            return
        marker = self.staging / STAGING_MARKER
        if self.staging.is_symlink() or not marker.is_file():
            raise self._not_ours()
        for child in self.staging.iterdir():
            if child.name != STAGING_MARKER:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        marker.unlink(missing_ok=True)
        self.staging.rmdir()

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Turn an OSError while writing `path` into one OutputError that says what --resume keeps."""
        try:
            yield
        except OSError as exc:
            raise self._cannot_write(path, os_reason(exc)) from None

    def _cannot_write(self, path: Path, reason: str) -> OutputError:
        kept = (f"the {self.kept} symbols flushed so far are kept: rerun with --resume once that is fixed"
                if self.kept else "no symbol was flushed yet, so there is nothing to resume")
        return OutputError(f"cannot write {path}: {reason}; {kept}")

    def _check_paths(self, top_files: Iterable[str]) -> None:
        """OutputError if something of another kind occupies an output path: a file where a detector's
        folder goes, a folder where a file goes (checked up front, and again before the final renames)."""
        files = [self.out_dir / name for name in top_files]
        for spec in self.detectors:
            folder = self.out_dir / spec.out_name
            if folder.exists() and not folder.is_dir():
                raise self._cannot_write(folder, "a file is in the way (this scan writes a folder there)")
            files += [folder / name for name in DETECTOR_FILES]
        for path in files:
            if path.is_dir() and not path.is_symlink():
                raise self._cannot_write(path, "a folder is in the way (this scan writes a file there)")

    @property
    def flushed(self) -> int:
        """How many symbols (in sorted order) are already in the staged parts."""
        return self.state["flushed"]

    def _save_state(self) -> None:
        path = self.staging / STATE_FILE
        with self._writing(path), replacing(path) as tmp:
            write_synced(tmp, json.dumps(self.state, sort_keys=True).encode())
        self.kept = self.flushed

    def _write_part(self, table: pa.Table, path: Path) -> None:
        with self._writing(path), replacing(path) as tmp:
            pq.write_table(table, tmp)

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
            self._write_part(events, self.staging / spec.out_name / f"events-{part:05d}.parquet")
            self._write_part(forward, self.staging / spec.out_name / f"forward-{part:05d}.parquet")
        self.state["parts"] = part + 1
        self.state["flushed"] += len(results)
        self._save_state()  # the commit point: parts beyond state["parts"] are ignored on resume

    def _part_paths(self, spec: DetectorSpec, kind: str, parts: int) -> list[Path]:
        return [self.staging / spec.out_name / f"{kind}-{part:05d}.parquet" for part in range(parts)]

    def _read_part(self, path: Path, metadata_only: bool = False) -> Any:
        try:
            return pq.read_metadata(path) if metadata_only else pq.read_table(path)
        except FileNotFoundError:
            raise self._damaged(f"the staged part {path} is missing") from None
        except (OSError, pa.ArrowException) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0]
            raise self._damaged(f"the staged part {path} is unreadable ({reason})") from None

    def _parts(self, spec: DetectorSpec, kind: str) -> Iterable[pa.Table]:
        for path in self._part_paths(spec, kind, self.state["parts"]):
            yield self._read_part(path)

    def read_forward(self, spec: DetectorSpec) -> pd.DataFrame:
        """Every staged forward-return row of one detector, in (symbol, date) order."""
        _, schema = self._schemas(spec)
        tables = [t for t in self._parts(spec, "forward") if t.num_rows]
        return (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()

    def _check_some_symbol_succeeded(self) -> None:
        """ScanError when no symbol gave results (all failed, or none had bars): such a run must not
        replace the previous results with empty files. Its staging folder is removed."""
        failed, empty = self.state["failed"], self.state["no_bars"]
        if self.flushed > len(failed) + len(empty):
            return
        with self._writing(self.staging):
            self._remove_staging()
        first = ""
        if failed:  # as the log line of a skipped symbol has it, without naming the symbol twice
            where = f"symbol {failed[0]['symbol']!r}" + (f", detector {failed[0]['detector']!r}"
                                                        if failed[0]["detector"] else "")
            error = failed[0]["error"]
            first = "; first failure: " + (error if error.startswith(where) else f"{where}: {error}")
        raise ScanError(f"no symbol was scanned ({len(failed)} failed, {len(empty)} had no bars in the "
                        f"lookback window{first}); the previous results in {self.out_dir} are left as they were")

    def finalize(self, run_info: dict[str, Any], files: Mapping[str, bytes]) -> None:
        """Join the parts into the final files, write `files` and run.json, and replace the previous run's files.

        files: top-level file name (one of RUN_FILES) -> content. run.json is written last, with
        `files` set to every path of this run, relative to out_dir.
        Every new file is first written completely under a temp name; only then are they all moved
        into place, so the window in which a crash could leave old and new files side by side is
        that of a few renames, not of the writing. A failure removes the temp files and the folders
        made here, and keeps the staging folder for --resume.
        """
        if not set(files) <= set(RUN_FILES) - {"run.json"}:
            raise ValueError(f"{sorted(files)}: a new top-level file must be added to RUN_FILES first")
        self._check_some_symbol_succeeded()
        names = [*(f"{spec.out_name}/{kind}" for spec in self.detectors for kind in DETECTOR_FILES), *files, "run.json"]
        self._check_paths(names)  # again: something may have appeared there during the run
        run_json = (json.dumps({**run_info, "files": names}, indent=2, default=str) + "\n").encode()
        moves: list[tuple[Path, Path]] = []
        made: list[Path] = []

        def temp_for(final: Path) -> Path:
            moves.append((temp_name(final), final))
            return moves[-1][0]

        try:
            for spec in self.detectors:
                folder = self.out_dir / spec.out_name
                if not folder.is_dir():
                    with self._writing(folder):
                        folder.mkdir()
                    made.append(folder)
                for kind, schema in zip(("events", "forward"), self._schemas(spec)):
                    final = folder / f"{kind}.parquet"
                    with self._writing(final), pq.ParquetWriter(temp_for(final), schema) as writer:
                        for table in self._parts(spec, kind):
                            if table.num_rows:
                                writer.write_table(table, row_group_size=max(table.num_rows, 1))
            for name, data in [*files.items(), ("run.json", run_json)]:
                final = self.out_dir / name
                with self._writing(final):
                    write_synced(temp_for(final), data)
            for tmp, final in moves:
                with self._writing(final):
                    os.replace(tmp, final)
        except BaseException:
            for tmp, _ in moves:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only while it is empty
            raise
        with self._writing(self.staging):
            self._remove_staging()

"""The staging folder: each chunk of symbols' results is written as it completes, and read back at the end.

One symbol's way: harness.task.scan_symbol returns its SymbolResult (events with their bar number,
score, close and forward returns; its bars' days and closes); the driver buffers it until its
chunk is whole, then StagingFolder.write_chunk stages the chunk's parts (their format:
harness.staged_chunk) and records what the chunk told in state.json (harness.staged_facts). At the
end of the run harness.finish's jobs read the chunk back (harness.staged_chunk.read_staged_chunk)
and turn its rows into the final files' bytes (harness.final_files writes them). This module is
the folder's life: made, checked for --resume, written chunk by chunk, handed to the final files.

The run's symbols, sorted, are cut into chunks of `flush_every` consecutive symbols (the last one
may be shorter); chunk c is symbols[c * flush_every : (c + 1) * flush_every]. The driver writes a
chunk as soon as all its symbols' results are in, in whatever order chunks complete.

Layout while a run is going (all under <out_dir>/.symbol-scan-staging/):
    made-by-symbol-scan   the marker: only a staging folder holding it is ever deleted
    state.json            the commit point (StagedFacts): run key, chunks written, counts
    rows-, series-, market-00000.arrow   a chunk's parts (harness.staged_chunk)
    final-NNN-<file>      at the end: the final files under their temp names (harness.final_files)
Each part is written to a temp name, then
renamed; a chunk counts only once state.json lists it, so a crash keeps every listed chunk for
--resume. state.json also holds each part's sha256, checked by --resume: a part missing, cut short
or rewritten since (even at the same size) is refused, not resumed. The folder is removed when the final files are committed (final_files()).

A write that fails (no space, no permission, a read-only file system, a file too large, a path in
the way) is one OutputError naming the path and saying what --resume can still use. Nothing in
out_dir but the run's own paths (harness.outdir) is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from harness import detector_files
from harness.detectors import DetectorSpec
from harness.errors import ConfigError, OutputError, ScanError
from harness.fingerprint import changed
from harness.final_files import FinalFiles, in_the_way, output_errors, write_synced
from harness.outdir import RUN_FILES, STAGING, STAGING_MARKER, os_reason
from harness.staged_chunk import chunk_tables, read_arrow, write_arrow
from harness.staged_facts import StagedFacts
from harness.task import SymbolResult

STATE_FILE = "state.json"
MARKER_TEXT = ("symbol scan keeps the flushed results of an unfinished run here (for --resume); "
               "the next run into this folder deletes it.\n")


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


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


def staged_detectors(out_dir: Path) -> list[str] | None:
    """The detectors an unfinished run in out_dir staged (its state.json's run key), None when there
    is no staging folder with a readable state; StagingFolder checks the rest."""
    try:
        saved = json.loads((out_dir / STAGING / STATE_FILE).read_text())
        return [part.partition(":")[2] for part in saved["run_key"] if part.startswith("code:")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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

    def schemas(self, spec: DetectorSpec) -> dict[str, pa.Schema]:
        """The detector's files' schemas by file name (harness.detector_files.schemas), with the
        extra columns its staged symbols gave (StagedFacts.extra_columns)."""
        return detector_files.schemas(self.facts.extra_columns.get(spec.name, []), self.windows)

    def write_chunk(self, chunk: int, results: Sequence[SymbolResult]) -> None:
        """Stage chunk `chunk`: its symbols' results, in symbol order, as one part per staged file
        (harness.staged_chunk.chunk_tables), their facts in state.json (StagedFacts.record)."""
        if len(results) != len(self.chunk_range(chunk)):
            raise ValueError(f"chunk {chunk} has {len(self.chunk_range(chunk))} symbols, got {len(results)} results")
        self.facts.record(results, self.detectors, self.outlier_move)
        for kind, table in chunk_tables([r for r in results if r.error is None], self.detectors,
                                        self.outlier_move).items():
            self._write_part(table, self.path / f"{kind}-{chunk:05d}.arrow")
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

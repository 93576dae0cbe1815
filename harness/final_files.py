"""The run's final files: each written under a temp name, then all moved into place at once.

Every file the driver writes at the end of a run goes through a FinalFiles: market.parquet, each
detector's files (harness.detector_files: <out_dir>/<detector>/{events,forward}.parquet, the bytes
harness.finish's jobs returned, joined by harness.parquet_parts when a detector came in pieces),
summary.csv, paths.csv, quantiles.csv, report.html, run.json, and last the reuse record
(harness.reuse; FinalFiles keeps the sha256 of each parquet file it writes, for that record). Each is written under a temp name in a folder of the run's
own (the staging folder, inside out_dir, so that os.replace() moves it into place and a run
killed before its commit, SIGKILL included, leaves nothing beside the previous files); commit()
renames them all, after checking that nothing has appeared in their way; discard() removes them.
So a crash leaves every file at an output path whole: the previous run's, or during the final
renames possibly some new ones.

A write that fails (no space, no permission, a read-only file system, a path in the way) is one
OutputError made by the `cannot_write` the caller gives (it knows what --resume can still use).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from harness import detector_files
from harness.errors import OutputError
from harness.outdir import RUN_FILES, os_reason
from harness.parquet_parts import join_parquet_parts

CannotWrite = Callable[[Path, str], OutputError]  # (path, the system's reason) -> the error to raise


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def output_errors(path: Path, cannot_write: CannotWrite) -> Iterator[None]:
    """An OSError in the block is cannot_write's OutputError for `path`."""
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, os_reason(exc)) from None


def in_the_way(out_dir: Path, top_files: Iterable[str], detector_folders: Iterable[str]) -> tuple[Path, str] | None:
    """(path, why) of the first output path that something of another kind occupies: a file where
    a detector's folder goes, a folder where a file goes; None when every path is free or ours."""
    files = [out_dir / name for name in top_files]
    for name in detector_folders:
        folder = out_dir / name
        if folder.exists() and not folder.is_dir():
            return folder, "a file is in the way (this scan writes a folder there)"
        files += [folder / file for file in detector_files.file_names()]
    for path in files:
        if path.is_dir() and not path.is_symlink():
            return path, "a folder is in the way (this scan writes a file there)"
    return None


class _Hashing:
    """A file's write(), with the sha256 of everything written (the driver has the bytes at hand:
    hashing them costs less than reading the file back)."""

    def __init__(self, file: Any):
        self.file, self.hash = file, hashlib.sha256()

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return self.file.write(data)


class FinalFiles:
    """The new final files of a run, each written under a temp name in `temp_dir`; commit() moves
    them all into place.

    Names are relative to out_dir: a top-level one must be one of harness.outdir.RUN_FILES, a
    detector's one of harness.detector_files.DETECTOR_FILES in its folder (made by commit() when
    missing, just before its files move in: a run killed before its commit leaves no empty new
    folder; removed again by discard() while empty). temp_dir must be inside out_dir's file system
    (os.replace).
    """

    def __init__(self, out_dir: Path, temp_dir: Path, cannot_write: CannotWrite):
        self.out_dir, self.temp_dir, self.cannot_write = out_dir, temp_dir, cannot_write
        self.moves: list[tuple[Path, Path]] = []  # (temp name, final path), in the order begun
        self.made: list[Path] = []
        self.sha256: dict[str, str] = {}  # parquet file name -> the sha256 of its bytes (harness.reuse)

    @property
    def names(self) -> list[str]:
        """Every file of this run, relative to out_dir, in the order it was begun."""
        return [str(final.relative_to(self.out_dir)) for _, final in self.moves]

    def _temp_for(self, name: str) -> Path:
        folder, _, file = name.rpartition("/")
        if not (file in RUN_FILES if not folder else file in detector_files.file_names()):
            raise ValueError(f"{name}: a new output file must be added to harness.outdir (a detector's: "
                             "harness.detector_files) first")
        final = self.out_dir / name
        self.moves.append((self.temp_dir / f"final-{len(self.moves):03d}-{file}", final))
        return self.moves[-1][0]

    def parquet_parts(self, name: str, parts: Sequence[bytes | pa.Buffer], tail: bytes | None = None) -> None:
        """Write parquet file `name`: the one file a writer would have written with the row groups of
        `parts` (parquet files of the same schema and settings, in order; harness.parquet_parts).
        tail: the joined file's footer (parquet_parts.joined_tail of the parts), if computed elsewhere."""
        with output_errors(self.out_dir / name, self.cannot_write), open(self._temp_for(name), "wb") as file:
            sink = _Hashing(file)
            if len(parts) == 1:
                sink.write(parts[0])
            else:
                join_parquet_parts(parts, sink, tail)
        self.sha256[name] = sink.hash.hexdigest()

    def table(self, name: str, table: pa.Table) -> None:
        """Write parquet file `name` whole."""
        with output_errors(self.out_dir / name, self.cannot_write):
            pq.write_table(table, self._temp_for(name))

    def text(self, name: str, text: str) -> None:
        """Write text file `name`."""
        with output_errors(self.out_dir / name, self.cannot_write):
            write_synced(self._temp_for(name), text.encode())

    def discard(self) -> None:
        """Remove every temp file written so far, and the folders made for them (a failure before commit)."""
        for tmp, _ in self.moves:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only while it is empty

    def commit(self) -> None:
        """Move every file into place, after checking again that nothing is in the way (something
        may have appeared there during the run)."""
        folders = sorted({name.rpartition("/")[0] for name in self.names if "/" in name})
        found = in_the_way(self.out_dir, [name for name in self.names if "/" not in name], folders)
        if found:
            raise self.cannot_write(*found)
        for tmp, final in self.moves:
            if not final.parent.is_dir():
                with output_errors(final.parent, self.cannot_write):
                    final.parent.mkdir()
                self.made.append(final.parent)
            with output_errors(final, self.cannot_write):
                os.replace(tmp, final)

"""The files each detector writes into its folder, as records: a file's name, its columns (so its
schema) and how its rows are made from the detector's rows.

A detector's rows of a staged chunk, once harness.finish has adjusted their returns, hold every
column of every one of its files (final_columns): symbol, date, detector, score, close, fwd_<h>,
its extra columns, all staged by harness.staging, and abn_<h>, added at the end against the
market. Each file takes its rows from them (DetectorFile.rows: by default its columns, cast to its
schema), a row group per chunk with events; a finish piece returns each file's bytes by name and
the driver writes them all in one loop (harness.finish.finish_outputs, harness.final_files).

Adding a file per detector is one record in DETECTOR_FILES; a column that no file has yet also
needs its source: the staged rows (harness.staging) or the end's adjustment (harness.finish).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import pyarrow as pa

from harness.eval import abnormal_column, forward_column

# The columns every file of a detector starts with; any other column is a float64.
KEY = {"symbol": pa.string(), "date": pa.timestamp("ns"), "detector": pa.string()}


def selected(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """The columns of `schema` from a detector's rows, cast to it."""
    return rows.select(schema.names).cast(schema)


@dataclasses.dataclass(frozen=True)
class DetectorFile:
    """One file of every detector's folder."""

    name: str                          # in the detector's folder
    # (the detector's extra columns, the run's windows) -> its columns' names, in order
    columns: Callable[[Sequence[str], Sequence[int]], list[str]]
    # (a chunk's rows of the detector with final_columns(), its schema) -> its rows of that chunk
    rows: Callable[[pa.Table, pa.Schema], pa.Table] = selected

    def schema(self, extras: Sequence[str], windows: Sequence[int]) -> pa.Schema:
        return pa.schema([(column, KEY.get(column, pa.float64())) for column in self.columns(extras, windows)])


def events_columns(extras: Sequence[str], windows: Sequence[int]) -> list[str]:
    """events.parquet: the events as the detector gave them."""
    return [*KEY, "score", *extras]


def forward_columns(extras: Sequence[str], windows: Sequence[int]) -> list[str]:
    """forward.parquet: the events' forward returns, raw and abnormal."""
    return [*KEY, "close", *map(forward_column, windows), *map(abnormal_column, windows)]


DETECTOR_FILES = (DetectorFile("events.parquet", events_columns), DetectorFile("forward.parquet", forward_columns))


def file_names() -> list[str]:
    """The names of the files of a detector's folder."""
    return [file.name for file in DETECTOR_FILES]


def schemas(extras: Sequence[str], windows: Sequence[int]) -> dict[str, pa.Schema]:
    """A detector's files' schemas by file name, in DETECTOR_FILES order."""
    return {file.name: file.schema(extras, windows) for file in DETECTOR_FILES}


def final_columns(file_schemas: Mapping[str, pa.Schema]) -> list[pa.Field]:
    """Every column of a detector's files, once, in the order the files first have them."""
    fields: dict[str, pa.Field] = {}
    for schema in file_schemas.values():
        for field in schema:
            fields.setdefault(field.name, field)
    return list(fields.values())

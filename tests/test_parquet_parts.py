"""harness.parquet_parts: parquet files encoded in parts join into the bytes one writer would have written."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.parquet_parts import decode_footer, encode_footer, join_parquet_parts, joined_tail, part_footer


def frame(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"symbol": pa.array([f"S{i % 7}" for i in range(rows)], pa.string()),
                     "date": pa.array(np.arange(rows).astype("datetime64[D]").astype("datetime64[ns]")),
                     "score": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows)),
                     "n": pa.array(rng.integers(0, 5, rows), pa.int64())})


def write_groups(path: Path, tables: list[pa.Table], schema: pa.Schema) -> Path:
    with pq.ParquetWriter(path, schema) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=table.num_rows)
    return path


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3000), max_size=6), st.data())
def test_parts_join_into_the_bytes_one_writer_writes(tmp_path_factory, sizes, data):
    tmp = tmp_path_factory.mktemp("parts")
    tables = [frame(n, seed) for seed, n in enumerate(sizes)]
    schema = frame(1, 0).schema
    whole = write_groups(tmp / "whole.parquet", tables, schema).read_bytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(tables)), max_size=4)))  # parts may be empty
    bounds = [0, *cuts, len(tables)]
    parts = [write_groups(tmp / f"part{k}.parquet", tables[a:b], schema).read_bytes()
             for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    joined = io.BytesIO()
    join_parquet_parts(parts, joined)
    assert joined.getvalue() == whole
    elsewhere = io.BytesIO()  # the footer joined apart from the bodies (a worker's FooterJob), from buffers
    join_parquet_parts(parts, elsewhere, joined_tail([part_footer(pa.py_buffer(part)) for part in parts]))
    assert elsewhere.getvalue() == whole
    pd.testing.assert_frame_equal(pq.read_table(pa.py_buffer(joined.getvalue())).to_pandas(),
                                  pa.concat_tables([schema.empty_table(), *tables]).to_pandas())


def test_a_footer_decodes_and_encodes_to_the_same_bytes(tmp_path):
    data = write_groups(tmp_path / "f.parquet", [frame(100, 1), frame(20, 2)], frame(1, 0).schema).read_bytes()
    size = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - size:-8]
    assert encode_footer(decode_footer(footer)) == footer


@pytest.mark.parametrize("bad", [b"not parquet at all", b"PAR1 cut short", b""])
def test_a_part_that_is_not_parquet_is_refused(tmp_path, bad):
    good = write_groups(tmp_path / "f.parquet", [frame(5, 1)], frame(1, 0).schema).read_bytes()
    sink = io.BytesIO()
    with pytest.raises(ValueError, match="^part 1 is not a parquet file$"):
        join_parquet_parts([good, bad], sink)
    assert sink.getvalue() == b"", "nothing written"
    with pytest.raises(ValueError, match="^part 3 is not a parquet file$"):
        part_footer(bad, 3)

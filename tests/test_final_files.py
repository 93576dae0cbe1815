"""harness.final_files: temp names in the run's own folder, one commit, nothing left by a failure."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import OutputError
from harness.final_files import FinalFiles, in_the_way


def cannot_write(path: Path, reason: str) -> OutputError:
    return OutputError(f"cannot write {path}: {reason}")


@pytest.fixture
def files(tmp_path) -> FinalFiles:
    (tmp_path / "out" / "temp").mkdir(parents=True)
    return FinalFiles(tmp_path / "out", tmp_path / "out" / "temp", cannot_write)


def test_files_wait_under_temp_names_until_the_commit(files):
    out = files.out_dir
    files.text("summary.csv", "a,b\n1,2\n")
    files.table("market.parquet", pa.table({"x": [1.0, 2.0]}))
    files.parquet_parts("gap/events.parquet", [pq_bytes(pa.table({"x": [3]}))])
    assert files.names == ["summary.csv", "market.parquet", "gap/events.parquet"]
    assert sorted(p.name for p in files.temp_dir.iterdir()) == ["final-000-summary.csv", "final-001-market.parquet",
                                                                "final-002-events.parquet"]
    assert not (out / "summary.csv").exists() and not (out / "gap" / "events.parquet").exists()
    assert not (out / "gap").exists()  # a new detector's folder appears with its files: a kill before leaves none
    files.commit()
    assert (out / "summary.csv").read_text() == "a,b\n1,2\n"
    assert pq.read_table(out / "market.parquet").column("x").to_pylist() == [1.0, 2.0]
    assert pq.read_table(out / "gap" / "events.parquet").column("x").to_pylist() == [3]
    assert list(files.temp_dir.iterdir()) == []


def test_discard_removes_the_temp_files_and_the_folders_made_for_them(files):
    (files.out_dir / "kept").mkdir()
    files.text("run.json", "{}")
    files.parquet_parts("new/events.parquet", [pq_bytes(pa.table({"x": [1]}))])
    files.parquet_parts("kept/forward.parquet", [pq_bytes(pa.table({"x": [1]}))])
    files.discard()
    assert list(files.temp_dir.iterdir()) == []
    assert sorted(p.name for p in files.out_dir.iterdir()) == ["kept", "temp"]


def test_a_commit_that_fails_midway_keeps_what_it_moved_and_a_discard_makes_no_folder(files):
    files.parquet_parts("new/events.parquet", [pq_bytes(pa.table({"x": [1]}))])
    files.text("run.json", "{}")
    files.moves[-1] = (files.temp_dir / "gone", files.moves[-1][1])  # the second move fails
    with pytest.raises(OutputError):
        files.commit()
    files.discard()
    assert (files.out_dir / "new" / "events.parquet").exists()  # moved before the failure: whole
    files2 = FinalFiles(files.out_dir, files.temp_dir, cannot_write)
    files2.parquet_parts("other/events.parquet", [pq_bytes(pa.table({"x": [1]}))])
    files2.discard()
    assert not (files.out_dir / "other").exists()


def test_a_name_the_scan_does_not_know_is_refused(files):
    with pytest.raises(ValueError, match="must be added to harness.outdir"):
        files.text("notes.txt", "x")
    with pytest.raises(ValueError, match="must be added to harness.outdir"):
        files.text("gap/summary.csv", "x")


def test_a_folder_in_the_way_at_commit_moves_nothing(files):
    files.text("summary.csv", "x")
    files.text("paths.csv", "y")
    (files.out_dir / "paths.csv").mkdir()
    with pytest.raises(OutputError, match="paths.csv: a folder is in the way"):
        files.commit()
    assert not (files.out_dir / "summary.csv").exists()


def test_a_failing_write_is_the_callers_error(tmp_path):
    files = FinalFiles(tmp_path, tmp_path / "missing", cannot_write)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'run.json'}: No such file or directory"):
        files.text("run.json", "{}")


@pytest.mark.parametrize("setup, expected", [
    ({}, None),
    ({"gap": "file"}, ("gap", "a file is in the way (this scan writes a folder there)")),
    ({"summary.csv": "folder"}, ("summary.csv", "a folder is in the way (this scan writes a file there)")),
    ({"gap/events.parquet": "folder"}, ("gap/events.parquet", "a folder is in the way (this scan writes a file there)")),
    ({"gap": "folder", "summary.csv": "file"}, None),  # the scan's own kinds: overwritten at commit
])
def test_in_the_way(tmp_path, setup, expected):
    for name, kind in setup.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if kind == "folder" else path.write_text("x")
    found = in_the_way(tmp_path, ["summary.csv"], ["gap"])
    assert found == (None if expected is None else (tmp_path / expected[0], expected[1]))


def pq_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()

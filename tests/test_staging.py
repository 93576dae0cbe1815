"""harness.staging: chunks staged in symbol order, read back the same from disk or from bytes, and
state.json as the commit point of --resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conftest import bars, write_partition
from harness.config import load_config
from harness.detectors import resolve_detectors
from harness.errors import ScanError
from harness.staged_chunk import read_staged_chunk, staged_files, staged_schema, write_arrow
from harness.staged_facts import StagedFacts
from harness.staging import StagingFolder
from harness.task import ScanSettings, scan_symbol

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]


@pytest.fixture
def run(tmp_path):
    """Five symbols' results (gap) and a new staging folder for them, two symbols per chunk."""
    rng = np.random.default_rng(3)
    for symbol in SYMBOLS:
        write_partition(tmp_path / "ohlcv", symbol, bars(300, close=100 * np.exp(np.cumsum(rng.normal(0, 0.03, 300)))))
    cfg = load_config({"ohlcv_path": str(tmp_path / "ohlcv"), "detectors": ["gap"], "out_dir": str(tmp_path / "out"),
                       "flush_every": 2, "lookback_days": 10_000})
    specs = resolve_detectors(cfg.detectors, cfg.params)
    task = ScanSettings.from_config(cfg, specs)
    results = [scan_symbol(symbol, task) for symbol in SYMBOLS]
    staging = StagingFolder(cfg.out_dir, specs, cfg.forward_windows, {"k": "1"}, False, len(SYMBOLS), 2)
    return cfg, specs, results, staging


def test_chunks_are_runs_of_consecutive_symbols(run):
    *_, staging = run
    assert staging.chunks == 3
    assert [staging.chunk_range(c) for c in range(3)] == [range(0, 2), range(2, 4), range(4, 5)]
    assert staging.done_chunks == set() and staging.flushed == 0


def test_a_staged_chunk_reads_back_the_same_from_disk_and_from_its_bytes(run):
    _, specs, results, staging = run
    staging.write_chunk(1, results[2:4])
    assert staging.done_chunks == {1} and staging.flushed == 2
    wanted = [(0, "gap", staged_schema(staging.schemas(specs[0])))]
    from_disk = read_staged_chunk(staging.path, 1, wanted)
    from_bytes = read_staged_chunk({1: staged_files(staging.path, 1)}, 1, wanted)
    events = from_disk.rows["gap"]
    assert events.schema.equals(wanted[0][2]) and events.schema.equals(from_bytes.rows["gap"].schema)
    pd.testing.assert_frame_equal(events.to_pandas(), from_bytes.rows["gap"].to_pandas())  # NaN returns: not equals()
    assert events.num_rows == sum(len(r.rows["detector"]) for r in results[2:4]) > 0
    assert events.column("symbol").to_pylist() == sorted(events.column("symbol").to_pylist())
    assert set(events.column("symbol").to_pylist()) <= {"CCC", "DDD"}
    assert from_disk.spans == {"CCC": (0, results[2].bars), "DDD": (results[2].bars, results[3].bars)}
    np.testing.assert_array_equal(from_disk.close, np.concatenate([results[2].close, results[3].close]))


def test_a_chunk_needs_all_its_symbols(run):
    *_, results, staging = run
    with pytest.raises(ValueError, match="chunk 0 has 2 symbols, got 1 results"):
        staging.write_chunk(0, results[:1])


def test_state_json_is_the_commit_point_of_resume(run):
    cfg, specs, results, staging = run
    staging.write_chunk(2, results[4:])
    saved = json.loads((staging.path / "state.json").read_text())
    assert saved["chunks"] == [2] and saved["bars"] == results[4].bars
    resumed = StagingFolder(cfg.out_dir, specs, cfg.forward_windows, {"k": "1"}, True, len(SYMBOLS), 2)
    assert resumed.resumed and resumed.done_chunks == {2} and resumed.facts == staging.facts
    with pytest.raises(ScanError, match="^--resume: .* changed since the unfinished run"):
        StagingFolder(cfg.out_dir, specs, cfg.forward_windows, {"k": "2"}, True, len(SYMBOLS), 2)


@pytest.mark.parametrize("kind", ["rows", "series", "market"])
def test_a_part_rewritten_in_place_at_the_same_size_is_not_resumed(run, kind):
    # it was: a readable part of the right size passed, and summary, paths and forward files came
    # out of the new bytes
    cfg, specs, results, staging = run
    staging.write_chunk(0, results[:2])
    part = staging.path / f"{kind}-00000.arrow"
    table, size = pa.ipc.open_file(pa.py_buffer(part.read_bytes())).read_all(), part.stat().st_size
    column = "close" if kind != "market" else table.column_names[-1]
    changed = [pa.array(table.column(c).to_numpy() * 1.5) if c == column else table.column(c) for c in table.column_names]
    write_arrow(pa.Table.from_arrays(changed, schema=table.schema), part)
    assert part.stat().st_size == size
    with pytest.raises(ScanError) as info:
        StagingFolder(cfg.out_dir, specs, cfg.forward_windows, {"k": "1"}, True, len(SYMBOLS), 2)
    assert str(info.value) == (f"cannot resume: the staged part {part} is not the file that was staged (its "
                               "checksum differs: rewritten, cut short or replaced since); rerun without --resume "
                               "to start over")


def test_staged_facts_round_trip_through_json():
    facts = StagedFacts({"settings": "x"}, chunks=[0, 3], bars=12, no_bars=["ZZZ"], cpu_seconds={"gap": 0.5})
    assert StagedFacts.from_json(json.loads(facts.to_json())) == facts


@pytest.mark.parametrize("damage", [
    lambda saved: saved.pop("bars"),
    lambda saved: saved.update(bars="12"),
    lambda saved: saved.update(surprise=1),
])
def test_a_state_this_tool_did_not_write_is_none(damage):
    saved = json.loads(StagedFacts({"settings": "x"}).to_json())
    damage(saved)
    assert StagedFacts.from_json(saved) is None
    assert StagedFacts.from_json([1, 2]) is None

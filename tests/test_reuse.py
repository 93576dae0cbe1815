"""A rerun keeps the previous run's unchanged detectors (harness.reuse), through the real CLI.

Each test compares the folder a reusing run leaves with a fresh run's of the same config
(output_files: every file but run.json and report.html, the reuse record included)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DETECTORS, REPO, cli_env, output_files, run_cli, write_config
from harness.reuse import base_key, decode_table, encode_table

OTHERS = [name for name in DETECTORS if name != "volume_spike_trend"]


def scan(data: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    done = run_cli("--data", str(data), "--out", str(out), "--workers", "1", *flags)
    assert done.returncode == 0, done.stderr
    return done


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def identities(out: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """(inode, modification time) of each detector's files: the same only if never rewritten."""
    return {f"{name}/{file}": (os.stat(out / name / file).st_ino, os.stat(out / name / file).st_mtime_ns)
            for name in names for file in ("events.parquet", "forward.parquet")}


def test_a_changed_variant_is_the_only_detector_scanned_and_the_folder_is_a_fresh_runs(small_universe, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    scan(small_universe, out)
    kept_before = identities(out, OTHERS)
    changed = '{"volume_spike_trend": {"multiple": 4}}'
    # the rerun on two workers: what it keeps from a serial run is what a fresh serial run writes
    rerun = run_cli("--data", str(small_universe), "--out", str(out), "--workers", "2", "--params", changed)
    assert rerun.returncode == 0, rerun.stderr
    scan(small_universe, fresh, "--params", changed)
    assert output_files(out, record=True) == output_files(fresh, record=True)
    assert "Reusing 8 of 9 detectors from the run of" in rerun.stderr
    info = run_json(out)
    assert info["reused"]["detectors"] == OTHERS and info["reused"]["from"].startswith("the run of ")
    assert list(info["cpu_seconds"]) == ["volume_spike_trend"]  # no other detector ran
    assert identities(out, OTHERS) == kept_before  # their files were left where they were
    assert sorted(info["files"]) == sorted(run_json(fresh)["files"])
    assert run_json(fresh)["reused"] is None


def test_an_added_detector_under_the_market_model_with_flagged_bars_left_out(small_universe, tmp_path):
    keys = {"ohlcv_path": str(small_universe), "workers": 1, "benchmark": "market_model",
            "exclude_flagged": True, "market_outlier_move": 0.05}
    before = write_config(tmp_path / "before.yaml", **keys, detectors=["gap", "volume_spike"])
    entry = {"name": "gap_small", "detector": "gap", "params": {"min_gap": 0.01}, "baseline": "gap"}
    after = write_config(tmp_path / "after.yaml", **keys, detectors=["gap", entry, "volume_spike"])
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    run_cli("--config", str(before), "--out", str(out), check=True)
    rerun = run_cli("--config", str(after), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    run_cli("--config", str(after), "--out", str(fresh), check=True)
    assert output_files(out, record=True) == output_files(fresh, record=True)
    assert run_json(out)["reused"]["detectors"] == ["gap", "volume_spike"]
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["flagged"] > 0).any()  # the guard flagged bars, and kept detectors' rows leave them out too
    assert summary.loc[summary["detector"] == "gap_small", "vs_baseline_df"].gt(0).any()  # compared with a kept one


def test_nothing_changed_keeps_every_detector(small_universe, tmp_path):
    out = tmp_path / "out"
    scan(small_universe, out, "--detectors", "gap,rsi_oversold")
    first = output_files(out, record=True)
    rerun = scan(small_universe, out, "--detectors", "gap,rsi_oversold")
    assert "Reusing 2 of 2 detectors" in rerun.stderr
    assert output_files(out, record=True) == first and run_json(out)["cpu_seconds"] == {}


def rewrite_one_close(root: Path) -> str:
    """Changes one bar's close of the universe's fourth symbol; returns the symbol."""
    folder = sorted(root.iterdir())[3]
    path = next(folder.glob("*.parquet"))
    frame = pq.read_table(path).to_pandas()
    frame.loc[len(frame) // 2, "close"] *= 1.5
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return folder.name.split("=")[1]


def test_a_changed_input_file_means_every_detector_runs_again(small_universe, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_universe, data)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    scan(data, out, "--detectors", "gap,volume_spike")
    symbol = rewrite_one_close(data)
    rerun = scan(data, out, "--detectors", "gap,volume_spike,volume_spike_trend")
    assert "Not reusing the previous run after all: the input files of 1 symbol(s) changed since the run of" in rerun.stderr
    assert symbol in rerun.stderr
    scan(data, fresh, "--detectors", "gap,volume_spike,volume_spike_trend")
    assert output_files(out, record=True) == output_files(fresh, record=True)
    assert run_json(out)["reused"] is None


def test_a_kept_file_that_changed_since_is_scanned_again(small_universe, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    scan(small_universe, out, "--detectors", "gap,rsi_oversold")
    path = out / "gap" / "forward.parquet"
    data = bytearray(path.read_bytes())
    data[100] ^= 1  # a file edited, or left half-renamed by a crash: not the recorded bytes
    path.write_bytes(bytes(data))
    scan(small_universe, out, "--detectors", "gap,rsi_oversold")
    scan(small_universe, fresh, "--detectors", "gap,rsi_oversold")
    assert output_files(out, record=True) == output_files(fresh, record=True)
    assert run_json(out)["reused"]["detectors"] == ["rsi_oversold"]
    # a record edited (its seal no longer matches), cut short, or not a regular file is no record
    record = out / ".symbol-scan-reuse.json"
    edited = json.loads(record.read_text())
    edited["null_hit_rates"]["5"] = 0.99  # would make a scanned detector's sign test lie
    record.write_text(json.dumps(edited))
    for damage in ("edited", "cut short", "a FIFO"):
        if damage == "cut short":
            record.write_text(record.read_text()[:100])
        elif damage == "a FIFO":  # reading it would hang the run
            record.unlink()
            os.mkfifo(record)
        rerun = scan(small_universe, out, "--detectors", "gap,rsi_oversold")
        assert "left no record of its own" in rerun.stderr, damage
        assert run_json(out)["reused"] is None, damage
        assert output_files(out, record=True) == output_files(fresh, record=True), damage
        if damage == "a FIFO":
            assert record.is_file()  # replaced by the run's own record


def test_no_reuse_scans_everything(small_universe, tmp_path):
    out = tmp_path / "out"
    scan(small_universe, out, "--detectors", "gap")
    first = output_files(out, record=True)
    rerun = scan(small_universe, out, "--detectors", "gap", "--no-reuse")
    assert "Reusing" not in rerun.stderr and run_json(out)["reused"] is None
    assert list(run_json(out)["cpu_seconds"]) == ["gap"] and output_files(out, record=True) == first
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), workers=1, detectors=["gap"], reuse=False)
    run_cli("--config", str(config), "--out", str(out), check=True)
    assert run_json(out)["reused"] is None and run_json(out)["config"]["reuse"] is False


def test_a_symbol_failing_in_the_scanned_detector_runs_every_detector(marked_universe, tmp_path):
    """on_error skip: a symbol the new detector fails is left out of every detector's files."""
    data, victim = marked_universe
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    scan(data, out, "--detectors", "gap,volume_spike")
    detectors = "gap,volume_spike,user_detectors:explode_on_marker"
    rerun = scan(data, out, "--detectors", detectors, "--on-error", "skip")
    assert f"Not reusing the previous run after all: symbol {victim!r} failed" in rerun.stderr
    scan(data, fresh, "--detectors", detectors, "--on-error", "skip")
    assert output_files(out, record=True) == output_files(fresh, record=True)
    # and a run after one that skipped a symbol keeps nothing: which detectors failed it is not known
    again = scan(data, out, "--detectors", detectors, "--on-error", "skip")
    assert "Not reusing: the run of" in again.stderr and "skipped failed symbols" in again.stderr


def test_a_reusing_run_killed_leaves_the_previous_files_and_resumes(small_universe, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    gate = tmp_path / "gate"
    gate.touch()
    first = {"started": str(tmp_path / "s1"), "gate": str(gate)}
    scan(small_universe, out, "--detectors", "gap,user_detectors:gated_by",
         "--params", json.dumps({"user_detectors:gated_by": first}))
    before = output_files(out, record=True)
    held = {"started": str(tmp_path / "s2"), "gate": str(tmp_path / "gate2")}
    args = ["--data", str(small_universe), "--out", str(out), "--workers", "1", "-q",
            "--detectors", "gap,user_detectors:gated_by", "--params", json.dumps({"user_detectors:gated_by": held})]
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", *args], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not Path(held["started"]).exists():  # the scanned detector runs: the run is under way
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert output_files(out, record=True) == before  # nothing of the previous run was touched
    Path(held["gate"]).touch()
    record = out / ".symbol-scan-reuse.json"
    record.rename(tmp_path / "record")  # what the unfinished run kept can no longer be kept: said in one line
    refused = run_cli(*args, "--resume")
    assert refused.returncode == 1 and refused.stderr.startswith(
        "error: --resume: the unfinished run kept detector 'gap' from the previous run, but it can no longer be kept ("), \
        refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    (tmp_path / "record").rename(record)
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert run_json(out)["reused"]["detectors"] == ["gap"]
    scan(small_universe, fresh, "--detectors", "gap,user_detectors:gated_by",
         "--params", json.dumps({"user_detectors:gated_by": held}))
    assert output_files(out, record=True) == output_files(fresh, record=True)


@pytest.mark.parametrize("key, value", [("forward_windows", [5, 10]), ("lookback_days", 400),
                                        ("end_date", "2024-06-30"), ("benchmark", "market_model"),
                                        ("exclude_flagged", True), ("flush_every", 7), ("lookahead_check", "warn")])
def test_every_setting_that_decides_bytes_is_in_the_base_key(key, value, small_universe):
    from harness.config import load_config
    settings = load_config({"ohlcv_path": str(small_universe)}).as_dict()
    assert base_key({**settings, key: value}, ["A", "B"]) != base_key(settings, ["A", "B"])


@pytest.mark.parametrize("key, value", [("workers", 3), ("out_dir", "elsewhere"), ("on_error", "skip"),
                                        ("symbols_per_task", 4), ("reuse", False), ("detectors", ["gap"]),
                                        ("params", {"gap": {"min_gap": 0.1}})])
def test_where_and_how_fast_a_run_goes_and_its_detectors_are_not(key, value, small_universe):
    from harness.config import load_config
    settings = load_config({"ohlcv_path": str(small_universe)}).as_dict()
    assert base_key({**settings, key: value}, ["A", "B"]) == base_key(settings, ["A", "B"])
    assert base_key(settings, ["A", "C"]) != base_key(settings, ["A", "B"])  # the universe is


def test_a_table_reads_back_with_the_same_bytes():
    frame = pd.DataFrame({"window": np.array([5, 10], dtype=np.int64), "mean": [0.1 + 0.2, np.nan],
                          "note": ["", "no events"], "ok": [True, False], "df": [3.0, 0.0],
                          "label": ["x", np.nan]})  # a missing text stays missing, not "nan"
    back = decode_table(json.loads(json.dumps(encode_table(frame))))
    assert list(back.columns) == list(frame.columns) and (back.dtypes == frame.dtypes).all()
    assert back.to_csv(index=False) == frame.to_csv(index=False)


def test_an_entry_that_runs_another_function_is_scanned_again(small_universe, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    keys = {"ohlcv_path": str(small_universe), "workers": 1}
    before = write_config(tmp_path / "b.yaml", **keys, detectors=["gap", {"name": "x", "detector": "user_detectors:every_bar"}])
    after = write_config(tmp_path / "a.yaml", **keys, detectors=["gap", {"name": "x", "detector": "user_detectors:every_other_bar"}])
    run_cli("--config", str(before), "--out", str(out), check=True)
    run_cli("--config", str(after), "--out", str(out), check=True)
    run_cli("--config", str(after), "--out", str(fresh), check=True)
    assert run_json(out)["reused"]["detectors"] == ["gap"]
    assert output_files(out, record=True) == output_files(fresh, record=True)


def test_a_detector_without_a_source_file_is_never_kept():
    from harness.detectors import DetectorSpec, resolve_detectors
    from harness.reuse import has_source_files
    namespace: dict = {}
    exec("def typed_in_a_notebook(df, cfg):\n    return df.iloc[:0]", namespace)  # no file behind it
    assert not has_source_files(DetectorSpec("nb", namespace["typed_in_a_notebook"], {}))
    assert all(has_source_files(spec) for spec in resolve_detectors(("gap", "volume_spike_trend"), {}))


def test_an_input_rewritten_at_the_same_size_and_time_is_caught_by_its_bars(small_universe, tmp_path):
    """The inputs' fingerprints (names, sizes, times) cannot see it, nor the market (only volumes
    change); the digest of the bars read can."""
    data = tmp_path / "data"
    shutil.copytree(small_universe, data)
    path = next((sorted(data.iterdir())[2]).glob("*.parquet"))
    frame = pq.read_table(path).to_pandas()

    def write(volume_factor: float) -> None:  # uncompressed, plain: a changed volume keeps the size
        changed = frame.assign(volume=frame["volume"] * volume_factor)
        pq.write_table(pa.Table.from_pandas(changed, preserve_index=False), path, compression="none",
                       use_dictionary=False, write_statistics=False)
    write(1.0)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    scan(data, out, "--detectors", "gap,volume_spike")
    size, times = path.stat().st_size, (path.stat().st_atime_ns, path.stat().st_mtime_ns)
    write(3.0)
    os.utime(path, ns=times)
    assert path.stat().st_size == size
    rerun = scan(data, out, "--detectors", "gap,volume_spike")
    assert "Not reusing the previous run after all: the bars of 1 symbol(s) changed since the run of" in rerun.stderr
    scan(data, fresh, "--detectors", "gap,volume_spike")
    assert output_files(out, record=True) == output_files(fresh, record=True)


def test_resume_continues_what_the_unfinished_run_staged_whatever_reuse_says(small_universe, tmp_path):
    """A --no-reuse run killed, resumed with reuse on: it continues scanning every detector."""
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    gate = tmp_path / "gate"
    params = {"started": str(tmp_path / "s"), "gate": str(gate)}
    detectors = ["--detectors", "gap,user_detectors:gated_by", "--params", json.dumps({"user_detectors:gated_by": params})]
    gate.touch()
    scan(small_universe, out, *detectors)
    gate.unlink()
    args = ["--data", str(small_universe), "--out", str(out), "--workers", "1", "-q", *detectors]
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", *args, "--no-reuse"], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".symbol-scan-staging" / "state.json").exists() or not Path(params["started"]).exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    gate.touch()
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert run_json(out)["reused"] is None and sorted(run_json(out)["cpu_seconds"]) == ["gap", "user_detectors:gated_by"]
    scan(small_universe, fresh, *detectors)
    assert output_files(out, record=True) == output_files(fresh, record=True)

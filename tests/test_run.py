"""The driver end to end, through the real CLI: determinism across execution modes, failures, cleanup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import (DETECTORS, REPO, DaskProcesses, bars, cli_env, free_port, marked_processes, output_files,
                      run_cli, write_config, write_partition)
from harness.outdir import LOCK_FILE, STAGING

def scan(tmp_path: Path, data: Path, out: str, *flags: str, env: dict | None = None, **keys):
    keys = {"ohlcv_path": str(data), "detectors": DETECTORS, "out_dir": str(tmp_path / out),
            "flush_every": 3, "dashboard_address": "127.0.0.1:0", **keys}
    config = write_config(tmp_path / f"{out}.yaml", **keys)
    proc = run_cli("--config", str(config), *flags, env=cli_env(**(env or {})))
    return proc, tmp_path / out


@pytest.fixture(scope="module")
def serial(tmp_path_factory, small_universe):
    tmp = tmp_path_factory.mktemp("serial")
    proc, out = scan(tmp, small_universe, "out", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    return proc, out


def test_serial_run_writes_every_output(serial, small_universe):
    proc, out = serial
    for name in DETECTORS:
        events = pq.read_table(out / name / "events.parquet").to_pandas()
        forward = pq.read_table(out / name / "forward.parquet").to_pandas()
        assert list(events.columns) == ["symbol", "date", "detector", "score"]
        assert list(forward.columns) == ["symbol", "date", "detector", "close", "fwd_5", "fwd_10", "fwd_20", "fwd_40",
                                         "abn_5", "abn_10", "abn_20", "abn_40"]
        assert len(events) == len(forward) > 0
        assert events[["symbol", "date"]].equals(forward[["symbol", "date"]])
        assert list(events.itertuples(index=False, name=None)) == sorted(events.itertuples(index=False, name=None))
        assert (events["detector"] == name).all()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(DETECTORS) * 4
    assert {"market.parquet", "paths.csv", "summary.csv"} <= set(output_files(out))
    assert len(pd.read_csv(out / "paths.csv")) == len(DETECTORS) * 61
    assert summary.loc[summary.detector == "volume_spike_trend", "baseline"].eq("volume_spike").all()
    run = json.loads((out / "run.json").read_text())
    assert run["symbols"] == {"total": 20, "done": 20, "failed": 0}
    assert set(run["cpu_seconds"]) == set(DETECTORS) and all(v >= 0 for v in run["cpu_seconds"].values())
    assert run["events"]["gap"] == len(pq.read_table(out / "gap" / "events.parquet"))
    assert run["versions"]["pandas"] == pd.__version__ and run["workers"] == 1
    assert set(run["timings"]) == {"imports", "prepare", "cluster_start", "scan", "finalize", "report", "total"}
    assert run["timings"]["cluster_start"] == 0 and run["timings"]["scan"] > 0
    assert run["bytes_received"] == 0 and run["tasks"] == 0, "in this process: nothing travelled"
    assert run["finish_jobs"]["jobs"] == 1 and len(run["finish_jobs"]["costs"]) == len(DETECTORS)
    assert "Processed 20/20 symbols" in proc.stderr
    assert "volume_spike_trend" in proc.stdout and "vs baseline" in proc.stdout
    assert not (out / STAGING).exists() and not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("workers, per_task", [(2, "auto"), (8, "auto"), (2, 1)])
def test_local_cluster_outputs_are_byte_identical_to_serial(tmp_path, small_universe, serial, workers, per_task):
    proc, out = scan(tmp_path, small_universe, "out", "--workers", str(workers), symbols_per_task=per_task)
    assert proc.returncode == 0, proc.stderr
    assert output_files(out) == output_files(serial[1])
    assert "Dask dashboard: http://127.0.0.1:" in proc.stderr
    run = json.loads((out / "run.json").read_text())
    cores = len(os.sched_getaffinity(0))
    assert run["workers"] == run["worker_processes"] == min(workers, cores) and run["config"]["workers"] == workers
    assert run["finish_jobs"]["jobs"] == min(run["worker_processes"], len(DETECTORS)), "one job per worker"
    # what travelled: every symbol's arrays came back, and the end's files at least
    files = sum(len(b) for name, b in output_files(out).items() if "/" in name)
    assert run["bytes_received"] >= 12 * run["bars_read"], "each bar's day (int32) and close (float64)"
    assert run["finish_jobs"]["bytes_returned"] > files and run["bytes_shipped"] == 0
    assert (f"starting {cores} worker processes" in proc.stderr) == (workers > cores)


# A remote worker that cannot see the driver's disk and writes no file: reading a staged chunk
# from a path or writing a parquet file fails loudly on it.
NO_SHARED_DISK = """
import os
import pyarrow.parquet as pq
import harness.staged_chunk

def no_disk(path, *args, **kwargs):
    raise OSError(f"this worker cannot see the driver's disk ({path})")

class NoFiles(pq.ParquetWriter):
    def __init__(self, where, *args, **kwargs):
        if isinstance(where, (str, os.PathLike)):
            raise OSError(f"this worker may not write a file ({where})")
        super().__init__(where, *args, **kwargs)

harness.staged_chunk.read_arrow, pq.ParquetWriter = no_disk, NoFiles
"""


def test_remote_scheduler_outputs_are_byte_identical_to_serial(tmp_path, small_universe, serial):
    (tmp_path / "no_shared_disk.py").write_text(NO_SHARED_DISK)
    with DaskProcesses(workers=2, worker_flags=["--preload", str(tmp_path / "no_shared_disk.py")]) as cluster:
        cluster.wait()
        proc, out = scan(tmp_path, small_universe, "out", "--scheduler", cluster.address)
        assert proc.returncode == 0, proc.stderr
        assert output_files(out) == output_files(serial[1])
        assert "'workers' is ignored" in proc.stderr
        run = json.loads((out / "run.json").read_text())
        assert run["scheduler_address"] == cluster.address
        # the end of the run on the remote workers, its staged chunks sent through Dask
        assert run["finish_jobs"]["jobs"] == 2 and run["bytes_shipped"] > 0
        assert "Dask dashboard" not in proc.stderr and "; dashboard: http://127.0.0.1:" in proc.stderr
        assert "malloc thresholds for large arrays set on 2 of 2 workers" in proc.stderr
        assert cluster.alive(), "the remote cluster must survive the scan"


def test_unreachable_scheduler_is_a_clear_error(tmp_path, small_universe):
    proc, out = scan(tmp_path, small_universe, "out", "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert proc.returncode == 1 and "cannot reach the Dask scheduler" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_failing_symbol_stops_the_run_and_keeps_previous_results(tmp_path, marked_universe, workers):
    data, victim = marked_universe
    detectors = ["gap", "user_detectors:explode_on_marker"]
    marker = uuid.uuid4().hex
    # A first, successful run (without the failing detector) leaves results in place.
    proc, out = scan(tmp_path, data, "out", "--workers", str(workers), detectors=["gap"])
    assert proc.returncode == 0, proc.stderr
    before = output_files(out)
    started = time.monotonic()
    proc, out = scan(tmp_path, data, "out", "--workers", str(workers), detectors=detectors,
                     env={"SCAN_TEST_MARKER": marker})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"error: symbol {victim!r}, detector 'user_detectors:explode_on_marker' failed: "
                    "RuntimeError: marker bar found")
    assert "Traceback (most recent call last)" in proc.stderr and "raise RuntimeError" in proc.stderr
    assert time.monotonic() - started < 120
    assert output_files(out) == before, "a failed run must not touch the previous results"
    assert not [p for p in out.rglob("*.tmp")]
    time.sleep(1)
    assert marked_processes(marker) == [], "no process of the failed run may outlive it"


def test_skip_mode_completes_and_reports_the_failed_symbol(tmp_path, marked_universe):
    data, victim = marked_universe
    proc, out = scan(tmp_path, data, "out", "--workers", "2", "--on-error", "skip",
                     detectors=["gap", "user_detectors:explode_on_marker"])
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["symbols"] == {"total": 20, "done": 19, "failed": 1}
    assert run["failed"] == [{"symbol": victim, "detector": "user_detectors:explode_on_marker",
                              "error": "RuntimeError: marker bar found"}]
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["failed_symbols"] == 1).all() and (summary["symbols"] == 19).all()
    events = pq.read_table(out / "gap" / "events.parquet").to_pandas()
    assert victim not in set(events["symbol"]) and events["symbol"].nunique() > 10
    assert f"failed and were skipped: {victim}" in proc.stdout


def test_no_stray_processes_after_a_successful_cluster_run(tmp_path, small_universe):
    marker = uuid.uuid4().hex
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), detectors=DETECTORS,
                          out_dir=str(tmp_path / "out"), workers=2, dashboard_address="127.0.0.1:0")
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config)], cwd=REPO,
                            env=cli_env(SCAN_TEST_MARKER=marker), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    most = 0
    while proc.poll() is None:  # the check below must be able to see the cluster's processes
        most = max(most, len(marked_processes(marker)))
        time.sleep(0.2)
    assert proc.returncode == 0, proc.stderr.read()
    assert most >= 3, "the driver and its worker processes should have been visible while it ran"
    time.sleep(1)
    assert marked_processes(marker) == []


def test_user_detector_with_extra_column_and_declared_baseline(tmp_path, small_universe):
    proc, out = scan(tmp_path, small_universe, "out", "--workers", "1",
                     detectors=["gap", "user_detectors:with_range"])
    assert proc.returncode == 0, proc.stderr
    events = pq.read_table(out / "user_detectors.with_range" / "events.parquet").to_pandas()
    assert list(events.columns) == ["symbol", "date", "detector", "score", "range"]
    assert (events["range"] >= 0).all() and len(events) > 20
    summary = pd.read_csv(out / "summary.csv")
    assert (summary.loc[summary.detector == "user_detectors:with_range", "baseline"] == "gap").all()


def test_a_terminal_gets_a_live_progress_bar_instead_of_log_lines(tmp_path, small_universe):
    import pty
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), detectors=["gap"],
                          out_dir=str(tmp_path / "out"), flush_every=3)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config), "--workers", "1"],
                            cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "\r" in text and "20/20 [" in text and "symbol/s]" in text
    assert "Processed " not in text, "on a terminal the bar replaces the log lines"


def test_the_process_age_in_run_json_timings_is_not_more_than_the_process_lived():
    # run.json's imports is the driver's age when main() starts; psutil's create_time() was up to
    # a second off (whole-second boot time), which made imports look like 1.7 s instead of 0.8.
    code = "from harness.run import seconds_since_start; print(seconds_since_start(), flush=True); input()"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=cli_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    age = float(proc.stdout.readline())
    lived = time.monotonic() - started
    proc.communicate("\n", timeout=30)
    assert 0 < age <= lived + 0.011, (age, lived)  # the kernel counts a start in 10 ms ticks


@pytest.mark.parametrize("after", [0.4, 0.8])
def test_ctrl_c_while_the_cli_imports_prints_no_traceback(tmp_path, small_universe, after):
    # the imports take ~1 s here; on a faster machine the run's own handler answers, the same way
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config), "--workers", "1"],
                            cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr, stderr


def test_a_user_detector_that_changes_its_input_changes_no_other_detector(tmp_path, small_universe):
    outs = {}
    for name, detectors in {"alone": ["gap"], "after": ["user_detectors:doubles_close_in_place", "gap"]}.items():
        config = write_config(tmp_path / f"{name}.yaml", ohlcv_path=str(small_universe), detectors=detectors,
                              out_dir=str(tmp_path / name))
        proc = run_cli("--config", str(config), "--workers", "1")
        assert proc.returncode == 0, proc.stderr
        outs[name] = tmp_path / name
    for kind in ("events", "forward"):
        alone, after = (pq.read_table(outs[n] / "gap" / f"{kind}.parquet").to_pandas() for n in ("alone", "after"))
        assert len(alone) > 0
        pd.testing.assert_frame_equal(alone, after, check_exact=True)
    mutated = pq.read_table(outs["after"] / "user_detectors.doubles_close_in_place" / "forward.parquet").to_pandas()
    bars = pd.read_parquet(small_universe / f"symbol={mutated['symbol'].iloc[0]}")
    # its own events' close is the data's, not the doubled one
    assert mutated["close"].iloc[0] == bars.loc[bars["date"] == mutated["date"].iloc[0], "close"].iloc[0]


def test_a_one_symbol_universe_claims_no_abnormal_significance(tmp_path, small_universe):
    # its market is the symbol itself: abnormal returns are 0 but for rounding, and their t-statistics
    # (abn_t, vs_baseline_t) were any number, starred as significant
    symbol = sorted(p.name.split("=", 1)[1] for p in small_universe.iterdir())[0]
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          min_market_symbols=1)  # a market of one, to see what its rounding noise gives
    proc = run_cli("--config", str(config), "--workers", "1", "--symbols", symbol)
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    fired = summary[summary["valid"] > 2]
    assert len(fired) > 0 and fired["t_stat"].notna().all()  # the raw returns still have theirs
    assert (fired["abn_mean"].abs() < 1e-15).all()
    assert fired["abn_t"].isna().all() and summary["vs_baseline_t"].isna().all()


def test_symbols_without_bars_are_named_on_the_console(tmp_path, small_universe):
    data = tmp_path / "ohlcv"
    shutil.copytree(small_universe, data)
    renamed = sorted(data.iterdir())[0]
    for file in renamed.rglob("*.parquet"):
        file.rename(file.with_suffix(".pq"))  # a common slip: not read, so the symbol has no bars
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(data), detectors=["gap"], out_dir=str(tmp_path / "out"))
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    symbol = renamed.name.split("=", 1)[1]
    assert f"1 symbol(s) had no bars to scan (no *.parquet file, every row dropped, or none in the lookback): {symbol};" \
        in proc.stdout, proc.stdout
    assert json.loads((tmp_path / "out" / "run.json").read_text())["symbols_without_bars"] == [symbol]


def test_resume_with_nothing_to_resume_says_so_and_scans_everything(tmp_path, small_universe):
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), detectors=["gap"],
                          out_dir=str(tmp_path / "fresh"))
    proc = run_cli("--config", str(config), "--workers", "1", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"--resume: no interrupted run in {tmp_path / 'fresh'} to continue; scanning every symbol" in proc.stderr
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["symbols"]["done"] == 20


def test_repairs_that_change_bars_are_said_on_the_terminal(tmp_path):
    # naive-UTC timestamps of a Tokyo listing (every bar 15:00 the day before) shift every bar a day:
    # counted in run.json before, now said after the summary too
    data = tmp_path / "data"
    for symbol, n in (("A", 30), ("B", 25), ("C", 30)):
        frame = bars(n)
        if symbol != "C":
            frame["date"] = frame["date"] - pd.Timedelta(hours=9)
        write_partition(data, symbol, frame)
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(data), out_dir=str(tmp_path / "out"),
                          detectors=["gap"], min_market_symbols=1)
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert '\nRepairs and flags of the data (rows; run.json repairs; README, "The dataset"): time_of_day 55 in 2 symbol(s) (A, B)' \
        in proc.stdout, proc.stdout


def test_a_grid_and_a_named_variant_run_from_the_config(tmp_path, small_universe):
    """Issue 35: one function under several names, each a detector with its folder, summary rows and
    baseline; the point with the default parameters finds exactly the plain name's events."""
    grid = {"name": "vs_grid", "detector": "volume_spike", "grid": {"multiple": [2.0, 3.0]}, "baseline": "volume_spike"}
    named = {"name": "vs_m5", "detector": "volume_spike", "params": {"multiple": 5.0}, "baseline": "volume_spike"}
    proc, out = scan(tmp_path, small_universe, "out", "--workers", "2", detectors=["volume_spike", named, grid])
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(out / "summary.csv")
    names = ["volume_spike", "vs_m5", "vs_grid[multiple=2.0]", "vs_grid[multiple=3.0]"]
    assert list(dict.fromkeys(summary.detector)) == names
    assert (summary.loc[summary.detector != "volume_spike", "baseline"] == "volume_spike").all()
    plain, same = (pd.read_parquet(out / folder / "events.parquet") for folder in ("volume_spike", "vs_grid.multiple_3.0"))
    assert same.detector.astype(str).unique().tolist() == ["vs_grid[multiple=3.0]"]
    pd.testing.assert_frame_equal(plain.drop(columns="detector"), same.drop(columns="detector"))
    assert len(pd.read_parquet(out / "vs_grid.multiple_2.0" / "events.parquet")) > len(plain)
    run = json.loads((out / "run.json").read_text())
    assert run["detector_params"]["vs_m5"]["multiple"] == 5.0 and run["config"]["detectors"] == names


def test_detectors_and_params_flags_override_the_config(tmp_path, small_universe):
    proc, out = scan(tmp_path, small_universe, "out", "--workers", "1", "--detectors", "gap,volume_spike",
                     "--params", '{"volume_spike": {"multiple": 4}}', params={"gap": {"min_gap": 0.5}})
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["detectors"] == ["gap", "volume_spike"]
    assert run["detector_params"]["volume_spike"]["multiple"] == 4 and run["detector_params"]["gap"]["min_gap"] == 0.03


@pytest.mark.parametrize("flags, message", [
    (["--params", '{"volume_spike": {"multiple": 4'], "error: --params: not valid JSON ("),
    (["--params", "[1]"], "error: --params: must be a JSON object"),
    (["--detectors", "gap", "--params", '{"gap": {"min_gap": "big"}}'],
     "error: config key 'params.gap.min_gap': must be a finite number, got 'big'"),
])
def test_bad_flags_are_one_line_errors(tmp_path, small_universe, flags, message):
    proc, _ = scan(tmp_path, small_universe, "out", "--workers", "1", *flags)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


MY_DETECTOR = "def big_volume(df, cfg):\n    return df.loc[df.volume > df.volume.median() * 2, ['date']].assign(score=1.0)\n"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_current_folder_is_importable_as_for_python_m(tmp_path, small_universe, workers):
    """Issue 35: the installed `symbol-scan` has its bin folder, not the current one, first on
    sys.path; main() adds the current folder. The script drops '' (what `python -c` adds) to be
    the console script; PYTHONPATH holds the repo only."""
    (tmp_path / "mydetectors.py").write_text(MY_DETECTOR)
    script = ("import os, sys\nsys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]\n"
              "from harness.run import main\nsys.exit(main(sys.argv[1:]))\n")
    args = ["--data", str(small_universe), "--out", "out", "--workers", workers, "--detectors", "mydetectors:big_volume",
            "-q"]
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(tmp_path / "out" / "mydetectors.big_volume" / "events.parquet")) > 0


def test_a_module_not_found_hints_at_the_current_folder(tmp_path, small_universe):
    proc = run_cli("--data", str(small_universe), "--out", str(tmp_path / "out"), "--detectors", "mydetectors:f",
                   cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.endswith("No module named 'mydetectors' (is mydetectors.py in the current folder or on "
                                "PYTHONPATH?)\n")

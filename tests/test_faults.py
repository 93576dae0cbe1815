"""Faults, for real: killed workers, bad files on disk, SIGINT/SIGTERM with --resume, SIGKILL of the driver."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from conftest import (REPO, TESTS, bars, cli_env, marked_processes, output_files, run_cli, write_config,
                      write_partition)
from harness.signals import SAME_PRESS_SECONDS
from harness.outdir import STAGING

SLOW = ["gap", "user_detectors:slow"]


def config(tmp_path: Path, data: Path, name: str = "c", **keys) -> Path:
    keys = {"ohlcv_path": str(data), "detectors": SLOW, "out_dir": str(tmp_path / "out"), "flush_every": 3,
            "dashboard_address": "127.0.0.1:0", **keys}
    return write_config(tmp_path / f"{name}.yaml", **keys)


def start(cfg: Path, *flags: str, marker: str = "") -> subprocess.Popen:
    # its own process group, like a command started from a terminal (Ctrl-C signals the whole group)
    return subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(cfg), *flags], cwd=REPO,
                            env=cli_env(SCAN_TEST_MARKER=marker or "none"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def staged_symbols(out: Path, symbols: int = 20, flush_every: int = 3) -> int:
    """How many symbols the staged chunks of the run in `out` hold (0 while there is no state)."""
    chunks = json.loads((out / STAGING / "state.json").read_text())["chunks"]
    return sum(min(flush_every, symbols - c * flush_every) for c in chunks)


def wait_for_flushes(out: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if staged_symbols(out) >= count:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {count} symbols flushed in time; exit {proc.poll()}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_universe):
    """The uninterrupted serial run of the SLOW detectors: what every faulty run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = run_cli("--config", str(config(tmp, small_universe)), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    return output_files(tmp / "out")


# --- worker death ---

def test_worker_killed_mid_run_does_not_change_the_result(tmp_path, small_universe, reference):
    marker = os.urandom(8).hex()
    proc = start(config(tmp_path, small_universe, workers=2), marker=marker)
    wait_for_flushes(tmp_path / "out", 3, proc)
    driver = psutil.Process(proc.pid)
    # LocalCluster workers are forked by the driver's forkserver (harness/executors/local.py)
    [server] = [p for p in driver.children() if "forkserver" in " ".join(p.cmdline())]
    workers = server.children()
    assert len(workers) == 2
    workers[0].send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert output_files(tmp_path / "out") == reference


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_symbol_that_kills_its_worker_every_time(tmp_path, marked_universe, on_error):
    data, victim = marked_universe
    started = time.monotonic()
    proc = run_cli("--config", str(config(tmp_path, data, detectors=["gap", "user_detectors:kill_on_marker"],
                                          workers=2, on_error=on_error)), timeout=240)
    assert time.monotonic() - started < 200
    if on_error == "fail":
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].startswith(
            f"error: symbol {victim!r} failed: its worker process died each time it ran this symbol")
    else:
        assert proc.returncode == 0, proc.stderr
        run = json.loads((tmp_path / "out" / "run.json").read_text())
        assert [f["symbol"] for f in run["failed"]] == [victim]
        assert run["symbols"]["done"] == 19


# --- bad data ---

@pytest.fixture()
def bad_universe(tmp_path, small_universe):
    root = tmp_path / "bad"
    shutil.copytree(small_universe, root)
    good = bars(300, close=100 + np.arange(300.0))
    corrupt = write_partition(root, "CORRUPT", good)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    write_partition(root, "NOCOL", good.drop(columns=["low"]))
    write_partition(root, "STRPX", good.assign(close=good["close"].astype(str)))
    bad_prices = good.copy()
    bad_prices.loc[[10, 20, 30], ["close", "open", "high"]] = [np.nan, 0.0, -5.0]
    write_partition(root, "BADPX", bad_prices)
    write_partition(root, "UNSORTED", pd.concat([good.iloc[150:], good.iloc[:160]]))  # 10 duplicates
    (root / "symbol=EMPTY").mkdir()
    write_partition(root, "STRAY", good)
    (root / "symbol=STRAY" / "notes.txt").write_text("not parquet")
    (root / "not_a_partition").mkdir()
    (root / "symbol=BAD NAME").mkdir()
    return root


def test_bad_data_with_skip_completes_and_reports_everything(tmp_path, bad_universe):
    proc = run_cli("--config", str(config(tmp_path, bad_universe, detectors=["gap"], on_error="skip", workers=1)))
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    failed = {f["symbol"]: f["error"] for f in run["failed"]}
    assert set(failed) == {"BAD NAME", "CORRUPT", "NOCOL", "STRPX"}
    assert "cannot read file" in failed["CORRUPT"] and "part-0.parquet" in failed["CORRUPT"]
    assert "lacks column(s) low" in failed["NOCOL"]
    assert "column 'close' has type" in failed["STRPX"] and "expected numbers" in failed["STRPX"]
    assert run["repairs"]["BADPX"] == {"bad_price_rows": 3}
    assert run["repairs"]["UNSORTED"] == {"duplicate_dates": 10, "unsorted": 1}
    assert run["repairs"]["STRAY"] == {"ignored_files": 1}
    assert run["symbols_without_bars"] == ["EMPTY"]
    assert run["ignored_entries"] == ["not_a_partition"]
    assert run["symbols"] == {"total": 28, "done": 24, "failed": 4}
    events = pq.read_table(tmp_path / "out" / "gap" / "events.parquet").to_pandas()
    assert events["symbol"].nunique() > 10


def test_bad_data_with_fail_stops_at_the_first_bad_symbol(tmp_path, bad_universe):
    proc = run_cli("--config", str(config(tmp_path, bad_universe, detectors=["gap"], workers=1)))
    assert proc.returncode == 2 and "invalid symbol name 'BAD NAME'" in proc.stderr
    shutil.rmtree(bad_universe / "symbol=BAD NAME")
    proc = run_cli("--config", str(config(tmp_path, bad_universe, detectors=["gap"], workers=1)))
    assert proc.returncode == 2, "a data mistake found in a task exits like any other data mistake"
    assert proc.stderr.strip().splitlines()[-1].startswith("error: symbol 'CORRUPT' failed: symbol 'CORRUPT': cannot read file")
    assert "Traceback" not in proc.stderr


# --- interrupts and resume ---

@pytest.mark.parametrize("workers, sig", [(1, signal.SIGTERM), (2, signal.SIGINT)])
def test_interrupt_then_resume_gives_the_uninterrupted_result(tmp_path, small_universe, reference, workers, sig):
    """SIGTERM goes to the driver (as `kill` sends it); SIGINT to the whole process group, workers
    included, as Ctrl-C in a terminal does."""
    marker = os.urandom(8).hex()
    # one symbol per task, so that chunks are staged one after the other: with auto sizes the slow
    # detector's sleep is not CPU, the plan makes a few large tasks, and the chunks can all be
    # staged within one poll (the run was over before the signal came, once in a full suite run)
    cfg = config(tmp_path, small_universe, workers=workers, symbols_per_task=1)
    proc = start(cfg, marker=marker)
    wait_for_flushes(tmp_path / "out", 6, proc)
    sent = time.monotonic()
    if sig == signal.SIGINT:
        for _ in range(3):  # people press Ctrl-C more than once: the others land in the cleanup
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            time.sleep(0.05)
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 20
    assert "rerun with --resume" in stderr.strip().splitlines()[-1] and "Traceback" not in stderr, stderr
    time.sleep(1)
    assert marked_processes(marker) == []
    flushed = staged_symbols(tmp_path / "out")
    assert 6 <= flushed < 20
    resumed = run_cli("--config", str(cfg), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming: {flushed}/20 symbols already flushed" in resumed.stderr
    assert output_files(tmp_path / "out") == reference


def test_resume_refuses_a_different_config(tmp_path, small_universe):
    cfg = config(tmp_path, small_universe, workers=1)
    proc = start(cfg)
    wait_for_flushes(tmp_path / "out", 3, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    other = config(tmp_path, small_universe, name="other", workers=1, forward_windows=[5])
    resumed = run_cli("--config", str(other), "--resume")
    assert resumed.returncode == 1 and "error: --resume: the config changed since the unfinished run" in resumed.stderr


def test_sigkill_at_random_moments_never_damages_the_previous_results(tmp_path, small_universe):
    first = run_cli("--config", str(config(tmp_path, small_universe, workers=1)))
    assert first.returncode == 0, first.stderr
    old = output_files(tmp_path / "out")
    new_cfg = config(tmp_path, small_universe, name="new", workers=1, params={"gap": {"min_gap": 0.01}})
    rng = random.Random(5)
    for moment in sorted(rng.uniform(0.3, 6.0) for _ in range(3)):
        proc = start(new_cfg)
        time.sleep(moment)
        proc.kill()
        proc.communicate()
        now = output_files(tmp_path / "out")
        assert set(now) == set(old)
        for name, data in now.items():
            assert data == old[name] or data == new_files(tmp_path, new_cfg)[name], f"{name} damaged at {moment:.2f}s"


_NEW: dict = {}


def new_files(tmp_path: Path, cfg: Path) -> dict:
    """The complete outputs of `cfg`, computed once into a separate folder."""
    if "files" not in _NEW:
        other = tmp_path / "complete-new"
        proc = run_cli("--config", str(cfg), "--out", str(other))
        assert proc.returncode == 0, proc.stderr
        _NEW["files"] = output_files(other)
    return _NEW["files"]


STUBBORN = '''
import time

import pandas as pd


def stubborn(df, cfg):
    """Sleeps 0.3 s per symbol and swallows any interrupt, as a detector with a bare except: does."""
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except:  # noqa: E722
            pass
    return df.iloc[::50][["date"]].assign(score=1.0)
'''


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_ctrl_c_ends_a_run_whose_detector_swallows_the_first(tmp_path, small_universe, workers):
    (tmp_path / "stubborn_detector.py").write_text(STUBBORN)
    marker = os.urandom(8).hex()
    cfg = config(tmp_path, small_universe, workers=workers, detectors=["stubborn_detector:stubborn"],
                 symbols_per_task=1)
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(cfg)], cwd=REPO,
                            env=cli_env(PYTHONPATH=f"{REPO}:{TESTS}:{tmp_path}", SCAN_TEST_MARKER=marker),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_flushes(tmp_path / "out", 3, proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # the same impatient press: ignored
    time.sleep(SAME_PRESS_SECONDS + 0.5)
    os.killpg(proc.pid, signal.SIGINT)  # a second request, after no answer
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 5
    assert stderr.strip().splitlines()[-1] == "error: interrupted; flushed symbols are kept, rerun with --resume to continue"
    assert "Traceback" not in stderr, stderr
    time.sleep(1)
    assert marked_processes(marker) == []
    assert 3 <= staged_symbols(tmp_path / "out") < 20  # flushed chunks are kept

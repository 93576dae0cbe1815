"""Issue 27, through the real CLI: a detector's parameters are its own for each call, its output
contract is checked before the harness reads a column of it, and os._exit in a detector names it.

The detectors are in tests/bad_detectors.py; `bad_detectors:breaks` breaks its output as its `how`
parameter says (BREAKS), for every symbol or, with `marker_only`, for BBB only (its bars hold
MARKER_VOLUME). Runs are serial (--workers 1) unless the behaviour is about Dask.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bad_detectors import BREAKS, MARKER_VOLUME
from conftest import REPO, bars, cli_env, run_cli, write_config, write_partition

SYMBOLS = ("AAA", "BBB", "CCC")


@pytest.fixture(scope="module")
def universe(tmp_path_factory) -> Path:
    """Three 120-bar random walks from 2024-01-01; BBB's volume holds the marker once."""
    root = tmp_path_factory.mktemp("contract") / "ohlcv"
    for seed, symbol in enumerate(SYMBOLS):
        volume = np.full(120, 1000.0)
        volume[5] = MARKER_VOLUME if symbol == "BBB" else 1000.0
        close = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.02, 120)))
        write_partition(root, symbol, bars(120, close=close, volume=volume))
    return root


def scan(tmp_path: Path, data: Path, detector: str, params: dict | None = None, *flags: str,
         workers: str = "1", **keys) -> tuple[subprocess.CompletedProcess, Path]:
    """One CLI run of `detector` over `data` into tmp_path/out: (the process, the output folder)."""
    out = tmp_path / "out"
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(data), out_dir=str(out), detectors=[detector],
                          params={detector: params} if params else {}, forward_windows=[5],
                          dashboard_address="127.0.0.1:0", **keys)
    return run_cli("--config", str(config), "--workers", workers, *flags), out


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


# --- 1: parameters ---

def test_each_call_gets_its_own_parameters(tmp_path, universe):
    """A detector that counts its calls in its parameters (a new key, and a list held in its
    defaults, which a shallow copy would share) sees one call per symbol: every score is 1."""
    proc, out = scan(tmp_path, universe, "bad_detectors:counts_calls")
    assert proc.returncode == 0, proc.stderr
    events = pd.read_parquet(out / "bad_detectors.counts_calls" / "events.parquet")
    assert sorted(set(events["symbol"])) == list(SYMBOLS)
    assert (events["score"] == 1.0).all(), events.groupby("symbol")["score"].first()


def test_serial_and_dask_agree_for_a_detector_that_changes_its_parameters(tmp_path, small_universe):
    """Issue 27's detector: cfg.setdefault("threshold", <first symbol's median volume>). Serially
    every symbol shared the first one's threshold; on Dask, each task's first symbol's."""
    outputs = []
    for workers in ("1", "2"):
        proc, out = scan(tmp_path / workers, small_universe, "bad_detectors:remembers_threshold", workers=workers,
                         symbols_per_task=3)
        assert proc.returncode == 0, proc.stderr
        outputs.append([(out / "bad_detectors.remembers_threshold" / name).read_bytes()
                        for name in ("events.parquet", "forward.parquet")])
    assert outputs[0] == outputs[1]


def test_parameters_that_cannot_be_copied_fail_the_symbol_in_one_line(universe):
    """A lock in a detector's parameters (a user's `defaults` may hold anything) cannot be deep-copied."""
    import threading

    from harness.detectors import DetectorSpec
    from harness.task import ScanSettings, scan_symbol
    spec = DetectorSpec("bad_detectors:typed", lambda df, cfg: df.iloc[:0][["date"]].assign(score=1.0),
                        {"lock": threading.Lock()})
    result = scan_symbol("AAA", ScanSettings(str(universe), 3650, None, (spec,), (5,)))
    assert result.error.detector == spec.name and result.error.traceback == ""
    assert result.error.message.startswith("its parameters cannot be copied for each call (TypeError: cannot "
                                           "pickle '_thread.lock' object); parameters must be plain data")


# --- 2: the output contract ---

# how (a key of bad_detectors.BREAKS) -> the message that follows "failed: "; the score's and the
# extra column's types are pandas' names for them (`str`: pandas 3's text type)
CONTRACT = {
    # names the harness gives its own columns: `bar` crashed the end of the run; mkt_* passed
    "extra_bar": "returned an extra column named 'bar'; extra columns need distinct text names unlike the "
                 "harness's own (bar, symbol, date, detector, score, close, fwd_*, abn_*, mkt_*)",
    "extra_mkt": "returned an extra column named 'mkt_5'; ",
    # a column twice: ArrowInvalid in the driver (score), a numpy ValueError (date)
    "score_twice": "returned the column 'score' more than once; a detector returns each column once",
    "date_twice": "returned the column 'date' more than once; a detector returns each column once",
    "extra_twice": "returned the column 'x' more than once; ",
    # scores that are no numbers: a pandas traceback, or a silent cast ("1.5", a complex's real part)
    "score_text": "returned a score of type str ('high'); scores must be numbers (stored as float64)",
    "score_numeric_text": "returned a score of type str ('1.5'); scores must be numbers",
    "score_objects": "returned a score of type object ({'value': 1.0}); scores must be numbers",
    "score_complex": "returned a score of type complex128 ((1+2j)); scores must be numbers",
    "extra_objects": "returned extra column 'x' of type object (<object object at ",
    # dates with a time of day or a time zone: "date 2024-01-01, which is not a bar", or passed (UTC)
    "date_time_of_day": "returned date 2024-01-01 16:00:00, which has a time of day; events must be dates "
                        "of df['date'] (midnight)",
    "date_utc": "returned date 2024-01-01 00:00:00+00:00 with time zone UTC; event dates must be naive",
    "date_new_york": "returned date 2024-01-01 00:00:00-05:00 with time zone America/New_York; ",
}


@pytest.mark.parametrize("how", CONTRACT)
def test_a_broken_output_contract_fails_the_symbol_with_one_line(universe, how):
    """The symbol's task (in this process: the table is long) fails naming the detector, with the
    message and no traceback (the detector's code did not raise)."""
    from harness.detectors import resolve_detectors
    from harness.task import ScanSettings, scan_symbol
    specs = resolve_detectors(["bad_detectors:breaks"], {"bad_detectors:breaks": {"how": how}})
    result = scan_symbol("AAA", ScanSettings(str(universe), 3650, None, tuple(specs), (5,)))
    assert result.error is not None and result.error.detector == "bad_detectors:breaks"
    assert result.error.message.startswith(CONTRACT[how]) and "\n" not in result.error.message
    assert result.error.traceback == ""


@pytest.mark.parametrize("how", ["extra_bar", "date_utc"])
def test_a_broken_output_contract_is_one_line_naming_symbol_and_detector(tmp_path, universe, how):
    """Through the CLI: exit 1 at the first symbol, one line, no traceback."""
    proc, _ = scan(tmp_path, universe, "bad_detectors:breaks", {"how": how})
    assert proc.returncode == 1, proc.stderr
    assert last_line(proc).startswith("error: symbol 'AAA', detector 'bad_detectors:breaks' failed: "
                                      + CONTRACT[how]), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", ["extra_bar", "score_twice"])  # both crashed the run even with skip before
def test_on_error_skip_skips_a_symbol_that_breaks_the_contract(tmp_path, universe, how):
    """Only BBB breaks it: the run completes with AAA and CCC, BBB is in run.json `failed`."""
    proc, out = scan(tmp_path, universe, "bad_detectors:breaks", {"how": how, "marker_only": True},
                     "--on-error", "skip")
    assert proc.returncode == 0, proc.stderr
    failed = json.loads((out / "run.json").read_text())["failed"]
    assert [(f["symbol"], f["detector"]) for f in failed] == [("BBB", "bad_detectors:breaks")], failed
    assert failed[0]["error"].startswith(CONTRACT[how])
    events = pd.read_parquet(out / "bad_detectors.breaks" / "events.parquet")
    assert sorted(set(events["symbol"])) == ["AAA", "CCC"]


def test_every_break_is_in_the_table():
    assert set(CONTRACT) == set(BREAKS)


# --- 3: os._exit ---

EXITED = "called os._exit(7), which would end the whole run without a word; a detector returns its events"


@pytest.mark.parametrize("detector", ["exits_hard", "exits_hard_inside_try"])
def test_os_exit_in_a_serial_run_fails_the_symbol_naming_the_detector(tmp_path, universe, detector):
    """The CLI used to exit 7 and print nothing. Now: exit 1, the detector's traceback, then one line;
    `except Exception` around the call does not swallow it (it could not swallow os._exit)."""
    proc, _ = scan(tmp_path, universe, f"bad_detectors:{detector}")
    assert proc.returncode == 1, proc.stderr
    assert last_line(proc).startswith(f"error: symbol 'AAA', detector 'bad_detectors:{detector}' failed: {EXITED}")
    assert f"in {detector}\n" in proc.stderr, proc.stderr


def test_os_exit_is_skipped_with_on_error_skip(tmp_path, universe):
    proc, out = scan(tmp_path, universe, "bad_detectors:exits_hard", {"marker_only": True}, "--on-error", "skip")
    assert proc.returncode == 0, proc.stderr
    failed = json.loads((out / "run.json").read_text())["failed"]
    assert [(f["symbol"], f["error"][:len(EXITED)]) for f in failed] == [("BBB", EXITED)]


def test_os_exit_on_a_dask_worker_names_the_detector_without_killing_the_worker(tmp_path, universe):
    """Before: the worker died, the driver's KilledWorker retries narrowed it down to BBB, and the
    message said "its worker process died each time", naming no detector."""
    proc, _ = scan(tmp_path, universe, "bad_detectors:exits_hard", {"marker_only": True}, workers="2")
    assert proc.returncode == 1, proc.stderr
    assert last_line(proc).startswith(f"error: symbol 'BBB', detector 'bad_detectors:exits_hard' failed: {EXITED}")


# Runs in its own process: before the change, the first scan_symbol ended it with code 7.
RESTORED = """
import multiprocessing, os, sys
import bad_detectors
from harness.detectors import DetectorSpec
from harness.task import ScanSettings, scan_symbol

def raises(df, cfg):
    raise RuntimeError("boom")

def forks(df, cfg):  # the child's own os._exit (multiprocessing's, at its end) must end the child
    child = multiprocessing.get_context("fork").Process(target=print, args=("child ran",))
    child.start()
    child.join()
    assert child.exitcode == 0, child.exitcode
    return df.iloc[:0][["date"]].assign(score=1.0)

real = os._exit
for func in (bad_detectors.exits_hard, raises, forks):
    spec = DetectorSpec("bad_detectors:" + func.__name__, func, {})
    result = scan_symbol("AAA", ScanSettings(sys.argv[1], 3650, None, (spec,), (5,)))
    print(func.__name__, result.error.message.split(",")[0] if result.error else "ok", os._exit is real, flush=True)
"""


def test_os_exit_is_restored_after_the_detector_and_works_in_its_children(universe):
    """Restored when the detector returns, raises or exits; a process the detector forks exits normally."""
    proc = subprocess.run([sys.executable, "-c", RESTORED, str(universe)], capture_output=True, text=True,
                          cwd=REPO, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["exits_hard called os._exit(7) True", "raises RuntimeError: boom True",
                                        "child ran", "forks ok True"], proc.stdout


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_extra_columns_that_differ_between_symbols_name_both_symbols(tmp_path, marked_universe, on_error):
    data, victim = marked_universe
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(data), out_dir=str(tmp_path / "out"),
                          detectors=["bad_detectors:extra_differs"], on_error=on_error)
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 1
    first = sorted(p.name.split("=", 1)[1] for p in data.iterdir())[0]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: detector 'bad_detectors:extra_differs' returned extra columns ['y'] for symbol {victim!r} but ['x'] "
        f"for symbol {first!r}; a detector must return the same extra columns for every symbol (--on-error skip "
        "cannot tell which is wrong)")

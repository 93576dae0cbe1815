"""Bad input of every class (issue 16), through the real CLI: a one-line error and the documented exit
code, or a documented and counted repair; a failing run never touches the previous results.

One CLI run per class keeps this file fast (--workers 1 unless the behaviour needs a cluster); the
variants of a class are tables of in-process calls below it (load_config, scan_symbol, reads).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, TESTS, bars, cli_env, free_port, marked_processes, output_files, run_cli, write_partition
from harness.config import load_config, read_yaml
from harness.detectors import PARAM_RULES, REGISTERED, DetectorSpec, resolve_detectors
from harness.errors import ConfigError, DataError, StopRequested
from harness.io import read_symbol_data
from harness.task import ScanSettings, scan_symbol

SYMBOLS = ("AAA", "BBB", "CCC")


def walk(n: int, seed: int) -> pd.DataFrame:
    """n business days of a random walk with 2.5% daily moves: gaps and RSI crossings happen."""
    close = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.025, n)))
    return bars(n, close=close)


@pytest.fixture(scope="module")
def universe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input") / "ohlcv"
    for seed, symbol in enumerate(SYMBOLS):
        write_partition(root, symbol, walk(300, seed))
    return root


def base_config(data: Path, out: Path, **keys) -> dict:
    return {"ohlcv_path": str(data), "detectors": ["gap"], "out_dir": str(out), "flush_every": 2,
            "dashboard_address": "127.0.0.1:0", **keys}


@pytest.fixture(scope="module")
def previous(tmp_path_factory, universe) -> Path:
    """A good earlier run's output folder: every failing case runs over a copy of it."""
    out = tmp_path_factory.mktemp("previous") / "out"
    config = out.parent / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(universe, out)))
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    return out


# --- modules a user might point `detectors` at, written per test into a folder on PYTHONPATH ---

RAISES_ON_IMPORT = "raise RuntimeError('no database connection')\n"
SYNTAX_ERROR = "def det(df, cfg)\n    return df\n"
# Importable in the driver (started by subprocess) but not in a Dask worker (started by multiprocessing).
WORKERS_CANNOT_IMPORT = """\
import multiprocessing
if multiprocessing.parent_process() is not None:
    raise ImportError("licence server not reachable from this process")
def det(df, cfg):
    return df.iloc[::20][["date"]].assign(score=1.0)
"""


def closed_port_s3() -> dict:
    return {"ohlcv_path": "s3://bucket/ohlcv",
            "storage_options": {"endpoint_override": f"127.0.0.1:{free_port()}", "scheme": "http",
                                "access_key": "k", "secret_key": "s", "region": "us-east-1"}}


# --- data made bad on purpose (each gets its own copy of the universe) ---

def huge_uint64_volume(root: Path) -> None:
    frame = walk(300, 9)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    volume = pa.array(np.full(len(frame), 2**64 - 1, dtype=np.uint64))
    pq.write_table(table.set_column(table.schema.get_field_index("volume"), "volume", volume),
                   root / "symbol=BBB" / "part-0.parquet")


def close_column_twice(root: Path) -> None:
    table = pa.Table.from_pandas(walk(300, 9), preserve_index=False)
    pq.write_table(table.append_column("close", table.column("close")), root / "symbol=BBB" / "part-0.parquet")


@dataclasses.dataclass
class Case:
    """One bad input: config `keys` (merged into base_config), `raw` YAML appended as written, CLI
    `flags`, `data` (makes the universe copy bad), `modules` (name -> source on PYTHONPATH); and
    what must happen: `exit`, a `message` in the last stderr line, whether that line is `alone`
    (caught before anything started) and whether a (user's) `traceback` precedes it."""

    keys: dict = dataclasses.field(default_factory=dict)
    raw: bytes = b""
    flags: tuple = ("--workers", "1")
    data: Callable[[Path], None] | None = None
    modules: dict = dataclasses.field(default_factory=dict)
    exit: int = 2
    message: str = ""
    alone: bool = True
    traceback: bool = False


CASES = {
    # 1: a date past what datetime64[ns] holds wrapped around to 1715
    "1-end-date-past-2262": Case(keys={"end_date": "2300-01-01"},
                                 message="config key 'end_date': must be between 1677-09-22 and 2262-04-11"),
    # 2, 3: the detector output contract, checked where the task collects the output
    "2-extra-column-named-fwd_5": Case(keys={"detectors": ["gap", "bad_detectors:extra_fwd_5"]}, exit=1, alone=False,
                                       message="symbol 'AAA', detector 'bad_detectors:extra_fwd_5' failed: returned "
                                               "an extra column named 'fwd_5'"),
    "3-same-date-twice": Case(keys={"detectors": ["bad_detectors:same_date_twice"]}, exit=1, alone=False,
                              message="symbol 'AAA', detector 'bad_detectors:same_date_twice' failed: returned "
                                      "date 2025-01-27 twice; a detector returns one row per date, dates ascending"),
    # 7: an unreachable object store is one line, not minutes of retries
    "7-s3-endpoint-refuses": Case(keys=closed_port_s3(), message="config key 'ohlcv_path': cannot list "
                                                                 "'s3://bucket/ohlcv': "),
    # 8: YAML's own date parsing and the file's encoding
    "8-unquoted-invalid-date": Case(raw=b"end_date: 2024-02-30\n",
                                    message="config key 'end_date': must be a date like 2024-12-31, got '2024-02-30'"),
    "8-config-not-utf8": Case(raw=b"# caf\xe9\n", message="is not UTF-8 text"),
    # 9: parameters: names, types and ranges, before anything starts
    "9-parameter-out-of-range": Case(keys={"detectors": ["volume_spike"], "params": {"volume_spike": {"window": -3}}},
                                     message="config key 'params.volume_spike.window': must be >= 1 and <= 10000, "
                                             "got -3 (default 20)"),
    # 10: user detector modules and detectors that misbehave
    "10-module-raises-on-import": Case(keys={"detectors": ["broken:det"]}, modules={"broken": RAISES_ON_IMPORT},
                                       message="cannot import module 'broken' for 'broken:det': RuntimeError: "
                                               "no database connection"),
    "10-detector-raises-KeyboardInterrupt": Case(keys={"detectors": ["bad_detectors:interrupts"]}, exit=1, alone=False,
                                                 traceback=True, message="detector 'bad_detectors:interrupts' "
                                                                         "failed: KeyboardInterrupt"),
    # 11
    "11-forward-window-2^63-1": Case(keys={"forward_windows": [5, 2**63 - 1]},
                                     message="config key 'forward_windows': windows must be integers from 1 to 10000"),
    # 12: checked before a cluster starts
    "12-dashboard-not-an-address": Case(keys={"dashboard_address": "not-an-address"}, flags=("--workers", "2"),
                                        message="config key 'dashboard_address': must be host:port"),
    # 13: files where folders belong, values the column types cannot hold
    "13-data-is-a-file": Case(flags=("--workers", "1", "--data", str(REPO / "config.yaml")),
                              message="config key 'ohlcv_path': '" + str(REPO / "config.yaml") + "' is a file"),
    # 13, 14: a symbol's data error is one line naming the file, no harness traceback, exit 2
    "13-volume-2^64-1": Case(data=huge_uint64_volume, alone=False,
                             message="symbol 'BBB' failed: symbol 'BBB': file '{data}/symbol=BBB/part-0.parquet': "
                                     "column 'volume': Integer value 18446744073709551615 not in range"),
    "13-column-twice": Case(data=close_column_twice, alone=False,
                            message="symbol 'BBB' failed: symbol 'BBB': file '{data}/symbol=BBB/part-0.parquet' has "
                                    "column 'close' more than once"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_leaves_previous_results(tmp_path, universe, previous, name):
    case = CASES[name]
    data = universe
    if case.data:
        data = tmp_path / "ohlcv"
        shutil.copytree(universe, data)
        case.data(data)
    for module, source in case.modules.items():
        (tmp_path / f"{module}.py").write_text(source)
    out = tmp_path / "out"
    shutil.copytree(previous, out)
    before = output_files(out)
    config = tmp_path / "c.yaml"
    config.write_bytes(yaml.safe_dump(base_config(data, out, **case.keys)).encode() + case.raw)
    proc = run_cli("--config", str(config), *case.flags, env=cli_env(PYTHONPATH=f"{REPO}:{TESTS}:{tmp_path}"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == case.exit, proc.stderr
    assert lines[-1].startswith("error: ") and case.message.format(data=data) in lines[-1], proc.stderr
    assert len(lines) == 1 if case.alone else len(lines) > 1, proc.stderr
    assert ("Traceback (most recent call last)" in proc.stderr) == case.traceback, proc.stderr
    assert "Warning" not in proc.stderr
    assert output_files(out) == before, "a failed run must leave the previous results as they were"


# --- classes that need more than one run's exit code ---

def test_repairs_infinite_prices_nested_partitions_and_all_history(tmp_path):
    """4: infinite / absurd prices and an infinite volume are dropped and counted, and the symbol's
    events equal those of the same data without those rows; 5: a sub-folder of a partition is read;
    1: lookback_days beyond what datetime64[ns] reaches means all history."""
    root = tmp_path / "ohlcv"
    base = walk(400, 3)
    write_partition(root, "BASE", base)
    write_partition(root, "CLEAN", base.drop(index=[50, 100, 150, 200, 300]))
    poisoned = base.copy()
    poisoned.loc[50, "low"] = 1e-300
    poisoned.loc[100, "close"] = np.inf
    poisoned.loc[150, "close"] = 5e-324
    poisoned.loc[200, "open"] = 1e308
    poisoned.loc[300, "volume"] = np.inf
    write_partition(root, "POISONED", poisoned)
    write_partition(root, "NESTED", base.iloc[:250])
    write_partition(root, "NESTED", base.iloc[250:], "year=2025/part-0.parquet")
    write_partition(root, "NESTED", base.iloc[:5], "_temporary/part-0.parquet")  # Spark's unfinished output
    (root / "symbol=NESTED" / "year=2025" / "_SUCCESS").write_text("")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(root, tmp_path / "out", detectors=["gap", "rsi_oversold"],
                                                 lookback_days=999999)))
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["repairs"] == {"POISONED": {"bad_price_rows": 4, "bad_volume_rows": 1},
                              "NESTED": {"ignored_files": 2}}
    assert run["bars_read"] == 400 + 395 + 400 + 395
    for detector in ("gap", "rsi_oversold"):
        forward = pq.read_table(tmp_path / "out" / detector / "forward.parquet").to_pandas()
        by_symbol = {s: f.drop(columns="symbol").reset_index(drop=True) for s, f in forward.groupby("symbol")}
        assert len(by_symbol["BASE"]) > 3
        pd.testing.assert_frame_equal(by_symbol["NESTED"], by_symbol["BASE"])
        pd.testing.assert_frame_equal(by_symbol["POISONED"], by_symbol["CLEAN"])


def test_empty_config_file_runs_the_documented_defaults(tmp_path, universe):
    """15: every key can be left out: data/ohlcv under the current folder, all nine detectors."""
    shutil.copytree(universe, tmp_path / "data" / "ohlcv")
    (tmp_path / "empty.yaml").write_text("")
    proc = run_cli("--config", "empty.yaml", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run["config"]["ohlcv_path"] == str((tmp_path / "data" / "ohlcv").resolve())
    assert run["config"]["detectors"] == list(REGISTERED) and len(REGISTERED) == 9
    assert run["symbols"]["done"] == len(SYMBOLS)
    assert all((tmp_path / "results" / name / "events.parquet").exists() for name in REGISTERED)
    # and config.yaml, which shows every default, is the same run as the empty file
    assert load_config(read_yaml(REPO / "config.yaml"), base_dir=tmp_path) == load_config({}, base_dir=tmp_path)


# --- on a real LocalCluster ---

@pytest.mark.parametrize("keys, modules, message", [
    # 6: importable in the driver, not on the workers: the warm-up says so before any task
    ({"detectors": ["gap", "workeronly:det"]}, {"workeronly": WORKERS_CANNOT_IMPORT},
     "error: the workers cannot import detector module 'workeronly' (ImportError: licence server not reachable "
     "from this process); make it importable on every worker"),
    # 12: a well-formed address this machine does not have
    ({"dashboard_address": "192.0.2.1:8787"}, {},
     "error: cannot start the local Dask cluster: Cluster failed to start: [Errno 99] Cannot assign requested "
     "address (is dashboard_address '192.0.2.1:8787' an address of this machine?"),
], ids=["6-workers-cannot-import", "12-dashboard-not-on-this-machine"])
def test_cluster_failures_are_one_line_and_leave_no_process(tmp_path, universe, keys, modules, message):
    for module, source in modules.items():
        (tmp_path / f"{module}.py").write_text(source)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config(universe, tmp_path / "out", **keys)))
    marker = uuid.uuid4().hex
    proc = run_cli("--config", str(config), "--workers", "2", timeout=180,
                   env=cli_env(PYTHONPATH=f"{REPO}:{TESTS}:{tmp_path}", SCAN_TEST_MARKER=marker))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    time.sleep(1)
    assert marked_processes(marker) == []


# --- 7: a remote root that never answers: Ctrl-C and SIGTERM still stop the run at once ---

@pytest.fixture()
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers; yields (port, accepted)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []

    def serve() -> None:
        with server:
            while True:
                try:
                    accepted.append(server.accept()[0])
                except OSError:  # closed below
                    return

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("url, options, sig", [
    ("s3://bucket/ohlcv", {"access_key": "k", "secret_key": "s", "region": "us-east-1"}, signal.SIGINT),
    ("gs://bucket/ohlcv", {"anonymous": True}, signal.SIGTERM),
])
def test_interrupt_while_listing_an_unresponsive_store(tmp_path, silent_server, url, options, sig):
    port, accepted = silent_server
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(base_config("unused", tmp_path / "out", ohlcv_path=url, storage_options={
        "endpoint_override": f"127.0.0.1:{port}", "scheme": "http", **options})))
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config), "--workers", "1"],
                            cwd=REPO, env=cli_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not accepted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted, "the scan never connected to the store"
        time.sleep(0.5)  # well inside the listing's retries
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)  # the listing alone would take a minute or more
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted") and "Traceback" not in stderr


# --- the variants of each class, in-process ---

@pytest.mark.parametrize("detector, params, message", [
    ("gap", {1: 2}, "'params.gap': parameter names must be text, got 1"),
    ("gap", {"min_gap": "big"}, "'params.gap.min_gap': must be a finite number, got 'big'"),
    ("gap", {"min_gap": 0}, "'params.gap.min_gap': must be > 0, got 0"),
    ("gap", {"min_gap": math.nan}, "'params.gap.min_gap': must be a finite number, got nan"),
    ("gap", {"min_gap": True}, "'params.gap.min_gap': must be a finite number, got True"),
    ("volume_spike", {"window": 2.5}, "'params.volume_spike.window': must be an integer, got 2.5"),
    ("volume_spike", {"window": 10**30}, "'params.volume_spike.window': must be >= 1 and <= 10000"),
    ("rsi_oversold", {"level": 150.0}, "'params.rsi_oversold.level': must be >= 0 and <= 100, got 150.0"),
    ("rsi_oversold_fast", {"period": 0}, "'params.rsi_oversold_fast.period': must be >= 1"),
    ("squeeze_breakout", {"quantile": 2}, "'params.squeeze_breakout.quantile': must be >= 0 and <= 1, got 2"),
    ("squeeze_breakout", {"window": 1}, "'params.squeeze_breakout.window': must be >= 2"),
    ("breakout_52w_volume", {"volume_multiple": -1.5}, "'params.breakout_52w_volume.volume_multiple': must be > 0"),
    ("bad_detectors:typed", {"every": "5"}, "'params.bad_detectors:typed.every': must be an integer, got '5'"),
    ("bad_detectors:typed", {"weight": "heavy"}, "'params.bad_detectors:typed.weight': must be a finite number"),
    ("bad_detectors:typed", {"label": 3}, "'params.bad_detectors:typed.label': must be text, got 3"),
    ("bad_detectors:typed", {"strict": 1}, "'params.bad_detectors:typed.strict': must be true or false, got 1"),
])
def test_parameters_are_checked_against_type_and_range(universe, detector, params, message):
    with pytest.raises(ConfigError) as info:
        load_config({"ohlcv_path": str(universe), "detectors": [detector], "params": {detector: params}})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_valid_parameters_pass_and_an_int_stands_for_a_float(universe):
    cfg = load_config({"ohlcv_path": str(universe), "detectors": ["volume_spike", "bad_detectors:typed"],
                       "params": {"volume_spike": {"multiple": 4, "window": 10000},
                                  "bad_detectors:typed": {"weight": 2, "strict": True}}})
    spike, typed = resolve_detectors(cfg.detectors, cfg.params)
    assert spike.params["multiple"] == 4 and typed.params == {"every": 20, "weight": 2, "label": "x", "strict": True}


def test_every_registered_parameter_has_a_range_its_default_lies_in():
    import baseline
    from harness import variants
    from harness.detectors import check_params
    for name in REGISTERED:
        defaults = {**baseline.DEFAULT_PARAMS, **variants.VARIANT_PARAMS}[name]
        assert set(PARAM_RULES[name]) == set(defaults), name
        check_params(name, defaults, defaults, PARAM_RULES[name])


@pytest.mark.parametrize("source, detector, message", [
    (SYNTAX_ERROR, "broken:det", "cannot import module 'broken' for 'broken:det': SyntaxError: "),
    ("import sys\nsys.exit(4)\n", "broken:det", "cannot import module 'broken' for 'broken:det': SystemExit: 4"),
    (None, "bad_detectors:listed_defaults", "has a `defaults` attribute that is not a dict of parameter name: value"),
])
def test_detector_modules_that_fail_on_import(tmp_path, monkeypatch, universe, source, detector, message):
    if source:
        (tmp_path / "broken.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "broken", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config({"ohlcv_path": str(universe), "detectors": [detector]})
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("detector, message", [
    ("extra_close", "returned an extra column named 'close'"),
    ("extra_symbol", "returned an extra column named 'symbol'"),
    ("extra_detector", "returned an extra column named 'detector'"),
    ("extra_abn", "returned an extra column named 'abn_5'"),
    ("extra_unnamed", "returned an extra column named 0"),
    ("dates_out_of_order", "returned date 2024-12-30 after 2025-01-27; a detector returns one row per date"),
    ("date_not_a_bar", "returned date 1999-12-25, which is not a bar of the symbol"),
    ("not_a_frame", "must return a DataFrame with columns date and score, got list"),
])
def test_detector_output_contract(universe, detector, message):
    import bad_detectors
    spec = DetectorSpec(f"bad_detectors:{detector}", getattr(bad_detectors, detector), {})
    result = scan_symbol("AAA", ScanSettings(str(universe), 3650, None, (spec,), (5,)))
    assert result.error is not None and result.error.detector == spec.name
    assert result.error.message.startswith(message) and result.error.traceback == ""
    assert result.error.exit_code == 1


@pytest.mark.parametrize("detector, message", [("exits", "SystemExit: 3"), ("interrupts", "KeyboardInterrupt: ")])
def test_a_detector_that_exits_or_interrupts_fails_its_symbol_with_its_traceback(universe, detector, message):
    import bad_detectors
    spec = DetectorSpec(f"bad_detectors:{detector}", getattr(bad_detectors, detector), {})
    result = scan_symbol("AAA", ScanSettings(str(universe), 3650, None, (spec,), (5,)))
    assert result.error.message == message and result.error.detector == spec.name
    assert f"in {detector}" in result.error.traceback and result.error.exit_code == 1


def test_the_drivers_own_interrupt_is_not_a_symbol_failure(universe):
    def stop(df, cfg):
        raise StopRequested  # what the driver's SIGINT/SIGTERM handler raises
    with pytest.raises(StopRequested):
        scan_symbol("AAA", ScanSettings(str(universe), 3650, None, (DetectorSpec("stop", stop, {}),), (5,)))


def test_data_error_in_a_task_is_exit_2_without_traceback(tmp_path):
    write_partition(tmp_path, "X", bars(5).drop(columns=["low"]))
    spec = resolve_detectors(("gap",), {})[0]
    result = scan_symbol("X", ScanSettings(str(tmp_path), 3650, None, (spec,), (5,)))
    assert "lacks column(s) low" in result.error.message
    assert result.error.traceback == "" and result.error.exit_code == 2 and result.error.detector is None


@pytest.mark.parametrize("arrow_type, value, message", [
    (pa.int64(), 2**60, "column 'open': Integer value 1152921504606846976 not in range"),
    (pa.date32(), 10**6, "column 'date': Casting from date32[day] to timestamp[ns] would result in out of bounds"),
    (pa.timestamp("us"), 10**16, "column 'date': Casting from timestamp[us] to timestamp[ns] would result in out"),
])
def test_values_the_column_type_cannot_hold_name_the_file(tmp_path, arrow_type, value, message):
    frame = bars(3)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    column = "open" if message.startswith("column 'open'") else "date"
    table = table.set_column(table.schema.get_field_index(column), column, pa.array([value] * 3, arrow_type))
    (tmp_path / "symbol=X").mkdir()
    pq.write_table(table, tmp_path / "symbol=X" / "p.parquet")
    with pytest.raises(DataError) as info:
        read_symbol_data("X", str(tmp_path), 3650)
    assert str(info.value).startswith(f"symbol 'X': file '{tmp_path}/symbol=X/p.parquet': {message}")


def test_user_detector_travels_by_import_path_and_fails_the_symbol_where_it_cannot_be_imported(tmp_path):
    """6, the backstop behind the warm-up: a worker that cannot import the module (one that joined
    after the warm-up) gets a detector that raises, instead of an unpickling error that Dask logs
    while the driver waits forever. The other process here is a plain Python without the module."""
    (tmp_path / "vanishing.py").write_text("def det(df, cfg):\n    return df.iloc[:0][['date']].assign(score=1.0)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        spec = resolve_detectors(("vanishing:det",), {})[0]
        blob = pickle.dumps(spec)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("vanishing", None)
    probe = ("import pickle, sys\nspec = pickle.loads(sys.stdin.buffer.read())\nprint(spec.name)\n"
             "try:\n    spec.func(None, {})\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    proc = subprocess.run([sys.executable, "-c", probe], input=blob, capture_output=True, cwd=REPO,
                          env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    name, error = proc.stdout.decode().splitlines()
    assert name == "vanishing:det"
    assert error.startswith("WorkerImportError config key 'detectors': cannot import module 'vanishing' for "
                            "'vanishing:det': ModuleNotFoundError: No module named 'vanishing' (on a worker")

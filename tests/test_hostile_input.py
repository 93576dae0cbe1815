"""Hostile input that used to give silent wrong answers (issue 27), through the real CLI: each case is
now either read as the user meant, a counted repair in run.json, or a one-line error naming the key
or the symbol and file.

1. `~` in paths (YAML values and `--out=~/x` flags reach the program unexpanded);
2. a data root inside the output folder (the scan wrote its files among its inputs);
3. YAML 1.1 typing: tickers ON / NO / 0700 read as booleans and octal, `[05, 010]` as [5, 8];
4. dangling symlinks, FIFOs and symlink loops inside a partition, a dangling symbol= folder;
5. repairs that change many bars: intraday rows collapsing to one a day, timestamps in the wrong
   unit (1,013 bars -> one 1970 bar), zero volume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import bars, cli_env, run_cli, write_partition


def walk(n: int, seed: int, start: str = "2023-01-02") -> pd.DataFrame:
    """n business days of a random walk with 2.5% daily moves (gaps happen)."""
    close = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.025, n)))
    return bars(n, start=start, close=close)


def config_text(data: Path | str, out: Path | str, extra: str = "") -> str:
    """A config as YAML text (some cases are about how YAML reads what is written)."""
    return (f"ohlcv_path: '{data}'\nout_dir: '{out}'\ndetectors: [gap]\nflush_every: 2\n"
            f"dashboard_address: '127.0.0.1:0'\n{extra}")


def one_error_line(proc) -> str:
    """The single stderr line of a run refused before it started (exit 2, no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- 1: `~` is the home folder in every path, from YAML and from flags ---

@pytest.fixture()
def home(tmp_path) -> Path:
    """A home folder (HOME of the CLI run) with a universe in ~/data, a config in ~/c.yaml and
    certificate files in ~/tls; the run's current folder is tmp_path/work."""
    home = tmp_path / "home"
    for seed, symbol in enumerate(("AAA", "BBB")):
        write_partition(home / "data", symbol, walk(60, seed))
    (home / "tls").mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        (home / "tls" / name).write_text("not used: no tls:// scheduler in this run\n")
    (home / "c.yaml").write_text(config_text("~/data", "~/from-yaml"))
    (tmp_path / "work").mkdir()
    return home


@pytest.mark.parametrize("args, out", [
    (["--config", "{tmp}/yaml.yaml"], "from-yaml"),  # ohlcv_path, out_dir and security in YAML
    (["--config", "{tmp}/yaml.yaml", "--out=~/from-flag", "--data=~/data"], "from-flag"),
    (["--config=~/c.yaml"], "from-yaml"),  # the config file itself
], ids=["yaml", "out-and-data-flags", "config-flag"])
def test_tilde_is_the_home_folder_in_yaml_and_flags(tmp_path, home, args, out):
    (tmp_path / "yaml.yaml").write_text(config_text("~/data", "~/from-yaml", "security:\n  ca_file: ~/tls/ca.pem\n"
                                                    "  cert: ~/tls/client.pem\n  key: ~/tls/client.key\n"))
    args = [arg.format(tmp=tmp_path) for arg in args]
    proc = run_cli(*args, "--workers", "1", cwd=tmp_path / "work", env=cli_env(HOME=str(home)))
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "work").iterdir()) == [], "nothing may be written to ./~"
    run = json.loads((home / out / "run.json").read_text())
    assert run["config"]["out_dir"] == str(home / out)
    assert run["config"]["ohlcv_path"] == str(home / "data")
    if run["config"]["security"]:
        assert run["config"]["security"]["ca_file"] == str(home / "tls" / "ca.pem")


def test_tilde_of_a_user_that_does_not_exist_is_an_error(tmp_path, home):
    (tmp_path / "c.yaml").write_text(config_text("~/data", "~no-such-user-27/results"))
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1", cwd=tmp_path / "work",
                   env=cli_env(HOME=str(home)))
    assert "config key 'out_dir': cannot expand '~no-such-user-27'" in one_error_line(proc)
    assert list((tmp_path / "work").iterdir()) == []


# --- 2: the data root inside the output folder ---

@pytest.mark.parametrize("out", ["out", "link-to-out"], ids=["plain", "through-a-symlink"])
def test_data_root_inside_the_output_folder_is_refused(tmp_path, out):
    data = tmp_path / "out" / "gap"  # where the detector gap writes its events.parquet
    for seed, symbol in enumerate(("AAA", "BBB")):
        write_partition(data, symbol, walk(60, seed))
    (tmp_path / "link-to-out").symlink_to("out")
    (tmp_path / "c.yaml").write_text(config_text("unused", "unused"))
    before = tree(tmp_path / "out")
    proc = run_cli("--config", "c.yaml", "--out", out, "--data", "out/gap", "--workers", "1", cwd=tmp_path)
    line = one_error_line(proc)
    assert f"config key 'out_dir': '{tmp_path / 'out'}' holds the dataset root 'ohlcv_path' ('{data}')" in line
    assert tree(tmp_path / "out") == before


# --- 3: YAML 1.1 typing ---

def test_symbols_are_read_as_written(tmp_path):
    """ON and NO were booleans, 0700 the octal 448, 1.50 the float 1.5, 1_000 the integer 1000."""
    names = ["ON", "NO", "0700", "1.50", "1_000", "null"]
    for seed, symbol in enumerate(names):
        write_partition(tmp_path / "data", symbol, walk(60, seed))
    write_partition(tmp_path / "data", "OTHER", walk(60, 99))
    (tmp_path / "c.yaml").write_text(config_text(tmp_path / "data", tmp_path / "out",
                                                 "symbols: [ON, NO, 0700, 1.50, 1_000, null]\n"))
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["symbols"] == sorted(names)
    # the --symbols flag, text already, is the same run
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1", "--out", str(tmp_path / "flag"),
                   "--symbols", ",".join(names))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "flag" / "summary.csv").read_bytes() == (tmp_path / "out" / "summary.csv").read_bytes()


def test_a_single_symbol_and_an_out_dir_are_read_as_written(tmp_path):
    write_partition(tmp_path / "data", "0700", walk(60, 1))
    write_partition(tmp_path / "data", "0005", walk(60, 2))
    (tmp_path / "c.yaml").write_text(f"ohlcv_path: data\nout_dir: 2024\nsymbols: 0700\ndetectors: [gap]\n")
    proc = run_cli("--config", "c.yaml", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "2024" / "run.json").read_text())
    assert run["config"]["symbols"] == ["0700"] and run["config"]["out_dir"] == str(tmp_path / "2024")


@pytest.mark.parametrize("extra, message", [
    ("detectors: [NO]\n", "config key 'detectors': unknown detector 'NO'"),
    # was [5, 8, 16], silently
    ("forward_windows: [05, 010, 020]\n", "config key 'forward_windows': windows must be integers from 1 to "
                                          "10000 (bars), got '05' (YAML 1.1 reads a leading 0 as octal"),
    ("lookback_days: 0365\n", "config key 'lookback_days': must be an integer, got '0365' (YAML 1.1 reads a "
                              "leading 0 as octal"),
], ids=["detector-NO", "octal-windows", "octal-lookback"])
def test_yaml_values_are_errors_as_written(tmp_path, extra, message):
    write_partition(tmp_path / "data", "AAA", walk(60, 1))
    text = config_text(tmp_path / "data", tmp_path / "out", extra)
    (tmp_path / "c.yaml").write_text(text.replace("detectors: [gap]\n", "") if "detectors" in extra else text)
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1")
    assert message in one_error_line(proc)
    assert not (tmp_path / "out").exists()


# --- 4, 5: what a partition holds ---

def intraday(days: int) -> pd.DataFrame:
    """Four bars a day (10:00, 12:00, 14:00, 16:00) over `days` business days."""
    daily = walk(days, 5)
    hours = pd.to_timedelta([10, 12, 14, 16], unit="h")
    frame = daily.loc[daily.index.repeat(len(hours))].reset_index(drop=True)
    frame["date"] = frame["date"] + np.tile(hours, days)
    return frame


@pytest.fixture(scope="module")
def repaired(tmp_path_factory) -> dict:
    """One run over a universe of odd partitions; its run.json."""
    tmp = tmp_path_factory.mktemp("repairs")
    data = tmp / "data"
    write_partition(data, "CLEAN", walk(60, 1))
    write_partition(data, "INTRADAY", intraday(30))
    write_partition(data, "TWICE", walk(60, 2), "a.parquet")
    write_partition(data, "TWICE", walk(60, 2), "b.parquet")  # the same bars again: true duplicates
    zero = walk(60, 3)
    zero.loc[[5, 6, 7, 40, 41], "volume"] = 0.0
    write_partition(data, "ZERO", zero)
    write_partition(data, "OLD", walk(60, 4, start="1969-11-03"))  # real bars around 1970-01-01
    links = data / "symbol=LINKS"
    write_partition(data, "LINKS", walk(60, 6))
    (links / "gone.parquet").symlink_to("deleted-since.parquet")  # dangling
    os.mkfifo(links / "pipe.parquet")  # opening it would block until a writer came
    (links / "year=2024").mkdir()
    (links / "year=2024" / "to-pipe.parquet").symlink_to("../pipe.parquet")
    (data / "symbol=GONE").symlink_to(tmp / "unmounted" / "symbol=GONE")  # a whole partition dangling
    (tmp / "c.yaml").write_text(config_text(data, tmp / "out", "lookback_days: 999999\n"))
    proc = run_cli("--config", str(tmp / "c.yaml"), "--workers", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp / "out" / "run.json").read_text())


def test_dangling_symlinks_and_fifos_are_counted_not_opened(repaired):
    assert repaired["repairs"]["LINKS"] == {"ignored_files": 3}


def test_a_dangling_symbol_folder_is_an_ignored_entry_not_nothing(repaired):
    assert repaired["ignored_entries"] == ["symbol=GONE"]


def test_intraday_rows_collapsing_to_one_a_day_are_counted_apart_from_duplicates(repaired):
    assert repaired["repairs"]["INTRADAY"] == {"intraday_rows": 90, "time_of_day": 120}
    assert repaired["repairs"]["TWICE"] == {"duplicate_dates": 60, "unsorted": 1}


def test_zero_volume_rows_are_counted(repaired):
    assert repaired["repairs"]["ZERO"] == {"zero_volume_rows": 5}


def test_real_bars_around_1970_are_read(repaired):
    """No false alarm from the wrong-unit check: one row per date, even near 1970-01-01."""
    assert "CLEAN" not in repaired["repairs"] and "OLD" not in repaired["repairs"]
    assert repaired["symbols"]["failed"] == 0 and repaired["bars_read"] == 60 * 5 + 30


def test_a_symlink_loop_in_a_partition_is_an_error(tmp_path):
    """pyarrow's listing followed symbol=X/loop -> . some forty times: every bar read forty times."""
    write_partition(tmp_path / "data", "AAA", walk(60, 1))
    write_partition(tmp_path / "data", "LOOP", walk(60, 2))
    (tmp_path / "data" / "symbol=LOOP" / "loop").symlink_to(".")
    (tmp_path / "c.yaml").write_text(config_text(tmp_path / "data", tmp_path / "out"))
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: symbol 'LOOP' failed: symbol 'LOOP': folder '{tmp_path}/data/symbol=LOOP/loop' is a symlink back "
        "to a folder that holds it (a loop: its files would be read again and again); remove the link")


def test_milliseconds_stored_as_nanoseconds_is_an_error(tmp_path):
    """1,013 daily bars in epoch milliseconds, in a timestamp[ns] column, were one bar of 1970-01-01."""
    write_partition(tmp_path / "data", "AAA", walk(60, 1))
    frame = walk(1013, 2, start="2019-01-01")
    millis = frame["date"].to_numpy().astype("datetime64[ms]").astype(np.int64)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(0, "date", pa.array(millis).cast(pa.timestamp("ns")))
    path = tmp_path / "data" / "symbol=MS" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(table, path)
    (tmp_path / "c.yaml").write_text(config_text(tmp_path / "data", tmp_path / "out"))
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: symbol 'MS' failed: symbol 'MS': file '{path}': column 'date' (timestamp[ns]): its 1013 dates span "
        "only 28 minutes from 1970-01-01 (1 distinct date(s)): milliseconds stored as nanoseconds? write the "
        "column in the unit of its numbers (timestamp[ms])")

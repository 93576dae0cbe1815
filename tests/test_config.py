"""Config validation: load_config directly, and the real CLI for messages and exit codes."""

import datetime as dt

import pytest

from conftest import bars, run_cli, write_config, write_partition
from harness.config import MAX_WORKERS, load_config
from harness.errors import ConfigError


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "ohlcv"
    write_partition(root, "AAA", bars(5))
    return root


def cfg(data, **keys):
    return load_config({"ohlcv_path": str(data), "detectors": ["gap"], **keys})


def test_defaults(data):
    c = cfg(data)
    assert c.workers == 8 and c.forward_windows == (5, 10, 20, 40) and c.on_error == "fail"
    assert c.dashboard_address == "127.0.0.1:8787" and c.scheduler_address is None and c.symbols is None


def test_overrides_win_over_yaml_and_none_means_not_given(data):
    c = load_config({"ohlcv_path": str(data), "detectors": ["gap"], "workers": 4},
                    {"workers": 2, "symbols": "BBB,AAA", "scheduler_address": None})
    assert c.workers == 2 and c.symbols == ("AAA", "BBB")


def test_end_date_accepts_yaml_dates_and_strings(data):
    assert cfg(data, end_date=dt.date(2024, 1, 31)).end_date == dt.date(2024, 1, 31)
    assert cfg(data, end_date="2024-01-31").end_date == dt.date(2024, 1, 31)


def test_config_is_frozen(data):
    with pytest.raises(Exception):
        cfg(data).workers = 3


@pytest.mark.parametrize("keys, message", [
    ({"worker": 2}, "unknown config key 'worker' (did you mean 'workers'?)"),
    ({"workers": 0}, "'workers': must be between 1 and 12"),
    ({"workers": MAX_WORKERS + 1}, "'workers': must be between 1 and 12"),
    ({"workers": 2.5}, "'workers': must be an integer"),
    ({"workers": True}, "'workers': must be an integer"),
    ({"forward_windows": [5, 0]}, "'forward_windows': windows must be integers from 1 to 10000"),
    ({"forward_windows": [5, "10"]}, "'forward_windows': windows must be integers from 1 to 10000"),
    ({"forward_windows": 5}, "'forward_windows': must be a non-empty list"),
    ({"lookback_days": "ten"}, "'lookback_days': must be an integer"),
    ({"flush_every": 0}, "'flush_every': must be at least 1"),
    ({"on_error": "ignore"}, "'on_error': must be 'fail' or 'skip'"),
    ({"end_date": "31/01/2024"}, "'end_date': must be a date"),
    ({"symbols": ["AAA", "../x"]}, "'symbols': invalid symbol name '../x'"),
    ({"symbols": []}, "'symbols': is empty"),
    ({"detectors": ["volume_spik"]}, "unknown detector 'volume_spik'; available: volume_spike"),
    ({"detectors": []}, "'detectors': must list at least one"),
    ({"detectors": ["nosuchmodule.x:det"]}, "cannot import module 'nosuchmodule.x'"),
    ({"params": {"gap": {"min_gapp": 0.1}}}, "'params.gap': unknown parameter(s) min_gapp; allowed: min_gap"),
    ({"params": {"ma_cross": {"fast": 5}}}, "'params': ma_cross not in 'detectors'"),
    ({"detectors": ["ma_cross"], "params": {"ma_cross": {"fast": 200, "slow": 50}}},
     "'params.ma_cross': fast (200) must be less than slow (50)"),
    ({"detectors": ["ma_cross"], "params": {"ma_cross": {"fast": 200}}},
     "'params.ma_cross': fast (200) must be less than slow (200)"),
    ({"benchmark": "capm"}, "'benchmark': must be 'market' or 'market_model', got 'capm'"),
    ({"benchmark": ["market"]}, "'benchmark': must be 'market' or 'market_model'"),
    ({"estimation_window": [-20, -250]}, "'estimation_window': must be [first, last] bars before the event"),
    ({"estimation_window": [-250, 0]}, "'estimation_window': must be [first, last] bars before the event"),
    ({"estimation_window": [-3000, -21]}, "'estimation_window': must be [first, last] bars before the event"),
    ({"estimation_window": -250}, "'estimation_window': must be [first, last] bars before the event"),
    ({"min_estimation_bars": 1}, "'min_estimation_bars': must be between 2 and 230, got 1"),
    ({"estimation_window": [-60, -21], "min_estimation_bars": 100},
     "'min_estimation_bars': must be between 2 and 40, got 100"),
    ({"min_market_symbols": 0}, "'min_market_symbols': must be at least 1, got 0"),
    ({"min_market_symbols": "many"}, "'min_market_symbols': must be an integer"),
    ({"market_outlier_move": 0}, "'market_outlier_move': must be a number from 0.05 to 1000"),
    ({"market_outlier_move": "big"}, "'market_outlier_move': must be a number from 0.05 to 1000"),
])
def test_bad_values_name_the_key(data, keys, message):
    with pytest.raises(ConfigError) as info:
        cfg(data, **keys)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_data_path(tmp_path):
    with pytest.raises(ConfigError, match="'ohlcv_path': data folder .* does not exist"):
        load_config({"ohlcv_path": str(tmp_path / "nope"), "detectors": ["gap"]})


def test_detector_params_override_defaults(data):
    from harness.detectors import resolve_detectors
    c = cfg(data, detectors=["gap", "rsi_oversold_fast"], params={"gap": {"min_gap": 0.05}})
    gap, fast = resolve_detectors(c.detectors, c.params)
    assert gap.params == {"min_gap": 0.05} and gap.baseline is None
    assert fast.params == {"period": 5, "level": 20.0} and fast.baseline == "rsi_oversold"


# --- through the real CLI: one line on stderr, exit code 2, no traceback ---

@pytest.mark.parametrize("yaml_keys, flags, message", [
    ({"workers": 99}, [], "config key 'workers': must be between 1 and 12, got 99"),
    ({}, ["--workers", "13"], "config key 'workers': must be between 1 and 12, got 13"),
    ({"wokers": 2}, [], "unknown config key 'wokers' (did you mean 'workers'?)"),
    ({}, ["--symbols", "AAA,b/ad"], "config key 'symbols': invalid symbol name 'b/ad'"),
    ({}, ["--symbols", "ZZZ"], "config key 'symbols': no partition under"),
    ({}, ["--data", "/nonexistent/ohlcv"], "config key 'ohlcv_path': data folder '/nonexistent/ohlcv' does not exist"),
])
def test_cli_rejects_bad_input_with_one_line(tmp_path, data, yaml_keys, flags, message):
    keys = {"ohlcv_path": str(data), "detectors": ["gap"], "out_dir": str(tmp_path / "out"), **yaml_keys}
    proc = run_cli("--config", str(write_config(tmp_path / "c.yaml", **keys)), *flags)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_empty_universe(tmp_path):
    (tmp_path / "empty").mkdir()
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(tmp_path / "empty"), detectors=["gap"])
    proc = run_cli("--config", str(config))
    assert proc.returncode == 2 and "empty universe" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_unreadable_and_invalid_yaml(tmp_path):
    proc = run_cli("--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "cannot read config file" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: [1, 2\n")
    proc = run_cli("--config", str(bad))
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr


def test_yaml_is_loaded_safely(tmp_path, data):
    config = tmp_path / "c.yaml"
    config.write_text(f"ohlcv_path: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    proc = run_cli("--config", str(config))
    assert proc.returncode == 2 and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("key", ["out_dir", "ohlcv_path"])
@pytest.mark.parametrize("name, make", [
    ("a name too long", lambda tmp: str(tmp / ("x" * 300))),
    ("a NUL byte", lambda tmp: str(tmp / "a\0b")),
    ("a symlink loop", lambda tmp: (tmp / "loop").symlink_to("loop") or str(tmp / "loop" / "x")),
])
def test_paths_the_os_cannot_use_name_the_key(tmp_path, data, key, name, make):
    with pytest.raises(ConfigError) as info:
        load_config({"ohlcv_path": str(data), "detectors": ["gap"], key: make(tmp_path)})
    assert f"config key '{key}'" in str(info.value) and "is not a usable path" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_url_is_the_local_folder_and_checked_as_one(data):
    assert cfg(data, ohlcv_path=f"file://{data}").ohlcv_path == str(data)
    with pytest.raises(ConfigError, match="'out_dir': .* is the dataset root 'ohlcv_path' or inside it"):
        cfg(data, ohlcv_path=f"file://{data}", out_dir=str(data / "symbol=AAA"))


def test_a_key_given_twice_is_an_error_not_the_last_one_winning(tmp_path):
    from harness.config import read_yaml
    config = tmp_path / "c.yaml"
    config.write_text("detectors: [gap]\nworkers: 1\ndetectors: [ma_cross]\n")
    with pytest.raises(ConfigError, match=r"sets key 'detectors' twice \(lines 1 and 3\); keep one"):
        read_yaml(config)
    config.write_text("params:\n  gap: {min_gap: 0.02, min_gap: 0.03}\n")
    with pytest.raises(ConfigError, match="sets key 'min_gap' twice"):
        read_yaml(config)
    config.write_text("detectors: [gap]\nparams: {gap: {min_gap: 0.02}}\n")
    assert read_yaml(config) == {"detectors": ["gap"], "params": {"gap": {"min_gap": 0.02}}}


# --- issue 27: what YAML 1.1 and the shell would do to values, in-process (CLI cases: test_hostile_input) ---

def test_text_keys_are_read_as_written_and_null_stays_not_set(tmp_path):
    from harness.config import read_yaml
    config = tmp_path / "c.yaml"
    config.write_text("symbols: [ON, NO, 0700, 1.50, 1_000, 2024-01-02, null, 'x']\ndetectors: [NO]\nout_dir: 2024\n"
                      "security: {ca_file: 0700, cert: yes, key: off}\nscheduler_address:\non_error: off\n"
                      "params: {gap: {min_gap: 0.02}}\nend_date: 2024-01-31\nworkers: 2\n")
    assert read_yaml(config) == {
        "symbols": ["ON", "NO", "0700", "1.50", "1_000", "2024-01-02", "null", "x"], "detectors": ["NO"],
        "out_dir": "2024", "security": {"ca_file": "0700", "cert": "yes", "key": "off"}, "scheduler_address": None,
        "on_error": "off", "params": {"gap": {"min_gap": 0.02}}, "end_date": dt.date(2024, 1, 31), "workers": 2}
    for text in ("symbols:\n", "symbols: null\n", "symbols: ~\n"):  # not set: every symbol
        config.write_text(text)
        assert read_yaml(config) == {"symbols": None}
    config.write_text("symbols: 0700\n")
    assert read_yaml(config) == {"symbols": "0700"}


def test_octal_and_base_60_integers_are_reported_as_written(tmp_path, data):
    from harness.config import read_yaml
    config = tmp_path / "c.yaml"
    config.write_text("forward_windows: [05, 010, 20]\nflush_every: 1:30\nlookback_days: 1_000\nworkers: 0x2\n")
    raw = read_yaml(config)
    assert raw == {"forward_windows": ["05", "010", 20], "flush_every": "1:30", "lookback_days": 1000, "workers": 2}
    with pytest.raises(ConfigError, match=r"'flush_every': must be an integer, got '1:30' \(YAML 1.1 reads"):
        cfg(data, flush_every=raw["flush_every"])


def test_tilde_is_expanded_in_every_local_path(tmp_path, data, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    c = cfg(data, ohlcv_path="~/ohlcv", out_dir="~/out",
            security={"ca_file": "~/ca.pem", "cert": "~/cert.pem", "key": "~/key.pem"})
    assert (c.ohlcv_path, c.out_dir, c.security["key"]) == (str(data), str(tmp_path / "out"), str(tmp_path / "key.pem"))
    with pytest.raises(ConfigError, match=r"'security.cert': cannot expand '~nobody-27' in '~nobody-27/c.pem'"):
        cfg(data, security={"ca_file": "~/ca.pem", "cert": "~nobody-27/c.pem", "key": "~/key.pem"})


@pytest.mark.parametrize("out", ["", "symbol=AAA/..", ".."], ids=["equal", "equal-via-dotdot", "parent"])
def test_out_dir_may_neither_be_nor_hold_the_data_root(data, out):
    with pytest.raises(ConfigError, match="config key 'out_dir': ") as info:
        cfg(data, out_dir=str(data / out) if out else str(data))
    assert "'ohlcv_path'" in str(info.value)


# Detector entries (issue 35): a name of one's own for a detector with its parameters, and grids.

def entries(data, *items, **keys):
    return load_config({"ohlcv_path": str(data), "detectors": ["volume_spike", *items], **keys})


def specs_of(c):
    from harness.detectors import resolve_detectors
    return {s.name: s for s in resolve_detectors(c.detectors, c.params, c.detector_entries)}


def test_a_named_entry_runs_its_detector_with_its_params_and_baseline(data):
    c = entries(data, {"name": "vs_m5", "detector": "volume_spike", "params": {"multiple": 5.0},
                       "baseline": "volume_spike"},
                {"name": "trend2", "detector": "volume_spike_trend", "params": {"trend_window": 20}})
    specs = specs_of(c)
    assert c.detectors == ("volume_spike", "vs_m5", "trend2")
    assert specs["vs_m5"].params == {"window": 20, "multiple": 5.0, "min_move": 0.02}
    assert specs["vs_m5"].baseline == "volume_spike" and specs["vs_m5"].source == "volume_spike"
    assert specs["trend2"].baseline == "volume_spike"  # a registered variant keeps its own baseline
    assert specs["volume_spike"].params["multiple"] == 3.0  # the plain name keeps its defaults
    assert c.as_dict()["detector_entries"]["vs_m5"] == {"detector": "volume_spike", "baseline": "volume_spike"}


def test_a_config_of_plain_names_has_no_entries_in_run_json(data):
    assert "detector_entries" not in cfg(data).as_dict()


def test_a_grid_is_one_detector_per_point_in_the_order_written(data):
    c = entries(data, {"name": "vs_grid", "detector": "volume_spike", "baseline": "volume_spike",
                       "grid": {"multiple": [2.0, 3], "window": [10, 20]}, "params": {"min_move": 0.0}})
    assert c.detectors[1:] == ("vs_grid[multiple=2.0,window=10]", "vs_grid[multiple=2.0,window=20]",
                               "vs_grid[multiple=3,window=10]", "vs_grid[multiple=3,window=20]")
    spec = specs_of(c)["vs_grid[multiple=3,window=20]"]
    assert spec.params == {"window": 20, "multiple": 3, "min_move": 0.0} and spec.baseline == "volume_spike"
    assert spec.out_name == "vs_grid.multiple_3.window_20"


def test_the_params_key_overrides_an_entry_own_params(data):
    c = entries(data, {"name": "vs_m5", "detector": "volume_spike", "params": {"multiple": 5.0, "window": 10}},
                params={"vs_m5": {"multiple": 6.0}})
    assert specs_of(c)["vs_m5"].params == {"window": 10, "multiple": 6.0, "min_move": 0.02}


def test_a_user_detector_under_a_name_of_its_own_is_imported_by_its_path(data):
    c = entries(data, {"name": "ranged", "detector": "user_detectors:with_range"})
    spec = specs_of(c)["ranged"]
    assert spec.is_users and spec.baseline == "gap" and c.detector_sources() == ("volume_spike", "user_detectors:with_range")
    import pickle
    assert pickle.loads(pickle.dumps(spec)).source == "user_detectors:with_range"


@pytest.mark.parametrize("item, message", [
    ({"name": "vs", "detector": "volume_spike", "baseline": "gap"},
     "'detectors': the baseline 'gap' of 'vs' must be another detector of this run (volume_spike)"),
    ({"name": "vs", "detector": "volume_spike", "baseline": "vs"}, "the baseline 'vs' of 'vs' must be another"),
    ({"name": "vs", "detector": "volume_spik"}, "unknown detector 'volume_spik'"),
    ({"name": "vs", "detector": "volume_spike", "params": {"multiple": -1.0}},
     "'params.vs.multiple': must be > 0, got -1.0"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"multiple": [2.0, -1.0]}},
     "'params.vs[multiple=-1.0].multiple': must be > 0, got -1.0"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"window": [5, 2.5]}},
     "'params.vs[window=2.5].window': must be an integer"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"windw": [5]}}, "unknown parameter(s) windw"),
    ({"name": "mc", "detector": "ma_cross", "grid": {"fast": [5, 300]}},
     "'params.mc[fast=300]': fast (300) must be less than slow (200)"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"multiple": []}},
     "'detectors.vs.grid.multiple': must be a non-empty list of values"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"multiple": [2.0, 2.0]}},
     "'detectors.vs.grid.multiple': values must not repeat"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"multiple": [2, 2.0]}},
     "'detectors.vs.grid.multiple': values must not repeat (2 and 2.0 are one value)"),
    ({"name": "vs", "detector": "volume_spike", "grid": {"multiple": [2.0, [3.0]]}},
     "'detectors.vs.grid.multiple': values must be numbers, true/false or text"),
    ({"name": "v" * 250, "detector": "volume_spike"}, "is too long a name (250 characters in its folder, at most 200)"),
    ({"name": "vs", "detector": "volume_spike", "grid": [2.0]}, "'detectors.vs.grid': must map parameter names"),
    ({"name": "vs", "detector": "volume_spike", "params": {"multiple": 2.0}, "grid": {"multiple": [3.0]}},
     "'detectors.vs': multiple is in both params and grid; keep one"),
    ({"name": "vs", "detectr": "volume_spike"}, "unknown key(s) detectr in"),
    ({"detector": "volume_spike"}, "each mapping needs a name of letters"),
    ({"name": "a/b", "detector": "volume_spike"}, "each mapping needs a name of letters"),
    ({"name": "volume_spike", "detector": "gap"}, "names must not repeat: 'volume_spike' is given more than once"),
    ({"name": "vs", "detector": "volume_spike", "params": [1]}, "'detectors.vs.params': must map parameter names"),
    ({"name": "run.json", "detector": "gap"}, "would write to the folder 'run.json'"),
    ({"name": "vs.multiple_2.0", "detector": "gap"}, None),
    (5, "must be a list of names, got"),
])
def test_bad_detector_entries_are_one_line_errors(data, item, message):
    items = [item] if message else [item, {"name": "vs", "detector": "volume_spike", "grid": {"multiple": [2.0]}}]
    with pytest.raises(ConfigError) as err:
        entries(data, *items)
    message = message or "'vs.multiple_2.0' and 'vs[multiple=2.0]' would both write to the folder 'vs.multiple_2.0'"
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_grid_of_numpy_numbers_is_named_as_plain_numbers(data):
    import numpy as np
    c = entries(data, {"name": "vs", "detector": "volume_spike", "grid": {"multiple": np.arange(2.0, 3.0, 0.5),
                                                                          "window": [np.int64(10)]}})
    assert c.detectors == ("volume_spike", "vs[multiple=2.0,window=10]", "vs[multiple=2.5,window=10]")
    assert type(specs_of(c)["vs[multiple=2.0,window=10]"].params["window"]) is int


def test_params_cannot_change_what_a_grid_points_name_says(data):
    with pytest.raises(ConfigError, match=r"^config key 'params\.vs\[multiple=2\.0\]': multiple is fixed by the grid "
                                          r"point's name; change the grid$"):
        entries(data, {"name": "vs", "detector": "volume_spike", "grid": {"multiple": [2.0, 3.0]}},
                params={"vs[multiple=2.0]": {"multiple": 4.0}})


def test_baselines_that_go_round_in_a_circle_are_refused(data):
    with pytest.raises(ConfigError, match=r"the baselines go round in a circle \('a' -> 'b' -> 'a'\)"):
        entries(data, {"name": "a", "detector": "volume_spike", "baseline": "b"},
                {"name": "b", "detector": "volume_spike", "params": {"multiple": 4.0}, "baseline": "a"})


def test_repeated_plain_names_are_named(data):
    with pytest.raises(ConfigError, match=r"names must not repeat: 'gap' is given more than once"):
        cfg(data, detectors=["gap", "ma_cross", "gap"])


def test_detector_entries_read_from_yaml(tmp_path, data):
    from harness.config import read_yaml
    (tmp_path / "c.yaml").write_text(f"""ohlcv_path: {data}
detectors:
  - volume_spike
  - name: vs_grid
    detector: volume_spike
    grid: {{multiple: [2.0, 3.0, 10.0], min_move: [0, 0.05]}}
    baseline: volume_spike
""")
    c = load_config(read_yaml(tmp_path / "c.yaml"))
    assert c.detectors[1:3] == ("vs_grid[multiple=2.0,min_move=0]", "vs_grid[multiple=2.0,min_move=0.05]")
    assert len(c.detectors) == 7


def test_an_entrys_names_are_read_as_written(tmp_path, data):
    # YAML 1.1 would read `name: on` as True and `baseline: NO` as False
    from harness.config import read_yaml
    (tmp_path / "c.yaml").write_text(f"""ohlcv_path: {data}
detectors:
  - name: NO
    detector: gap
  - name: on
    detector: volume_spike
    baseline: NO
    grid: {{min_move: [0, 0.05]}}
""")
    c = load_config(read_yaml(tmp_path / "c.yaml"))
    assert c.detectors == ("NO", "on[min_move=0]", "on[min_move=0.05]")
    assert specs_of(c)["on[min_move=0]"].baseline == "NO"
    assert specs_of(c)["on[min_move=0.05]"].params["min_move"] == 0.05, "params and grids are numbers as before"

"""Each detector on small hand-built frames whose events are worked out by hand."""

import statistics

import numpy as np
import pandas as pd
import pytest

from baseline import DEFAULT_PARAMS, breakout_52w, gap, ma_cross, rsi_oversold, squeeze_breakout, volume_spike
from baseline.detectors import wilder_rsi
from conftest import bars
from harness import variants
from harness.detectors import resolve_detectors


def rows_of(events: pd.DataFrame, frame: pd.DataFrame) -> list[int]:
    return [int(i) for i in np.searchsorted(frame["date"].to_numpy(), events["date"].to_numpy())]


def with_columns(frame, **columns):
    frame = frame.copy()
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype="float64")
    return frame


def assert_contract(events):
    assert list(events.columns[:2]) == ["date", "score"]
    assert events["score"].dtype == "float64"
    assert events["date"].is_monotonic_increasing


# --- volume_spike: volume >= 3 x median of the 20 prior rows, and |move| >= 2% ---

def spike_frame(spike_volume, new_close, at=20, n=22):
    volume = np.full(n, 1000.0)
    volume[at] = spike_volume
    close = np.full(n, 100.0)
    close[at:] = new_close
    return bars(close=close, volume=volume)


@pytest.mark.parametrize("spike_volume, new_close, fires", [
    (3000, 102.0, True),    # exactly 3x the median, exactly +2%
    (3000, 98.0, True),     # exactly -2%
    (2999, 102.0, False),   # just under 3x
    (5000, 101.9, False),   # move under 2%
])
def test_volume_spike_thresholds(spike_volume, new_close, fires):
    frame = spike_frame(spike_volume, new_close)
    events = volume_spike(frame, DEFAULT_PARAMS["volume_spike"])
    assert_contract(events)
    assert rows_of(events, frame) == ([20] if fires else [])
    if fires:
        assert events["score"].iloc[0] == pytest.approx(spike_volume / 1000)


def test_volume_spike_needs_20_prior_rows():
    frame = spike_frame(9000, 110.0, at=19)
    assert volume_spike(frame, DEFAULT_PARAMS["volume_spike"]).empty


def test_volume_spike_trend_needs_close_above_sma50():
    cfg = variants.VARIANT_PARAMS["volume_spike_trend"]
    up = spike_frame(5000, 105.0, at=60, n=62)     # close 105 > sma50 (about 100.2)
    down = spike_frame(5000, 95.0, at=60, n=62)    # close 95 < sma50
    assert rows_of(variants.volume_spike_trend(up, cfg), up) == [60]
    assert variants.volume_spike_trend(down, cfg).empty
    assert rows_of(volume_spike(down, DEFAULT_PARAMS["volume_spike"]), down) == [60]


# --- breakout_52w: close above the prior 252 rows' high, 20-row cooldown ---

def test_breakout_fires_above_prior_high_with_cooldown():
    close = np.concatenate([np.full(253, 100.0), 100.0 + np.arange(1, 41)])  # new highs from row 253 on
    frame = bars(close=close)
    events = breakout_52w(frame, DEFAULT_PARAMS["breakout_52w"])
    assert_contract(events)
    assert rows_of(events, frame) == [253, 274]  # hits at 254..273 fall in the cooldown
    assert events["score"].iloc[0] == pytest.approx(101 / 100 - 1)


def test_breakout_equal_to_prior_high_does_not_fire_and_warm_up_is_252_rows():
    close = np.full(300, 100.0)
    close[251] = 200.0  # only 251 prior rows: no event; afterwards 200 is the high to beat
    close[260] = 200.0  # equal to the prior high: not above
    frame = bars(close=close)
    assert breakout_52w(frame, DEFAULT_PARAMS["breakout_52w"]).empty


def test_breakout_volume_variant_cooldown_counts_its_own_events():
    close = np.concatenate([np.full(253, 100.0), 100.0 + np.arange(1, 41)])
    volume = np.full(len(close), 1000.0)
    # row 253 breaks out on normal volume (1000 < 1.5 x 1000); row 254 has exactly 1.5x: fires;
    # from 255 on volume doubles every row (always >= 1.5x the prior mean), but 255..274 is cooldown.
    volume[254] = 1500.0
    volume[255:] = 1500.0 * 2.0 ** np.arange(1, len(close) - 254)
    frame = bars(close=close, volume=volume)
    events = variants.breakout_52w_volume(frame, variants.VARIANT_PARAMS["breakout_52w_volume"])
    assert rows_of(events, frame) == [254, 275]
    assert rows_of(breakout_52w(frame, DEFAULT_PARAMS["breakout_52w"]), frame) == [253, 274]


# --- gap ---

@pytest.mark.parametrize("new_open, fires", [(103.0, True), (97.0, True), (102.9, False), (97.1, False)])
def test_gap_threshold_and_signed_score(new_open, fires):
    frame = bars(5)
    frame.loc[3, "open"] = new_open
    events = gap(frame, DEFAULT_PARAMS["gap"])
    assert rows_of(events, frame) == ([3] if fires else [])
    if fires:
        assert events["score"].iloc[0] == pytest.approx(new_open / 100 - 1)


def test_gap_first_row_never_fires():
    frame = bars(3)
    frame.loc[0, "open"] = 50.0
    assert gap(frame, DEFAULT_PARAMS["gap"]).empty


# --- Wilder RSI and rsi_oversold ---

def test_wilder_rsi_by_hand():
    close = pd.Series([10.0, 11, 10, 12, 12, 11])  # changes +1 -1 +2 0 -1
    rsi = wilder_rsi(close, 3)
    assert np.isnan(rsi[:3]).all()
    gain, loss = 3 / 3, 1 / 3                      # first averages: simple means of the first 3 changes
    assert rsi[3] == pytest.approx(100 - 100 / (1 + gain / loss))
    gain, loss = (gain * 2 + 0) / 3, (loss * 2 + 0) / 3
    assert rsi[4] == pytest.approx(100 - 100 / (1 + gain / loss))
    gain, loss = (gain * 2 + 0) / 3, (loss * 2 + 1) / 3
    assert rsi[5] == pytest.approx(100 - 100 / (1 + gain / loss))
    assert wilder_rsi(pd.Series([1.0, 2, 3, 4]), 3)[3] == 100.0   # no losses: 100
    assert np.isnan(wilder_rsi(pd.Series([1.0, 2, 3]), 3)).all()  # too short


def test_rsi_oversold_crossing_by_hand():
    close = list(100.0 + np.arange(15)) + [114 - 40, 70, 69]  # 14 rises, then a 40-point drop
    frame = bars(close=close)
    events = rsi_oversold(frame, DEFAULT_PARAMS["rsi_oversold"])
    expected_rsi = 100 - 100 / (1 + (13 / 14) / (40 / 14))      # about 24.5: crossed below 30
    assert rows_of(events, frame) == [15]                        # later rows stay below: no new cross
    assert events["score"].iloc[0] == pytest.approx(30 - expected_rsi)


def test_rsi_oversold_warm_up():
    close = list(100.0 + np.arange(14)) + [60.0, 59.0]  # crash at row 14 where RSI first exists
    assert rsi_oversold(bars(close=close), DEFAULT_PARAMS["rsi_oversold"]).empty


def test_rsi_fast_variant_uses_rsi5_below_20():
    close = [100.0, 101, 102, 103, 104, 105, 70]  # RSI(5) at row 5 is 100, at row 6 far below 20
    frame = bars(close=close)
    events = variants.rsi_oversold_fast(frame, variants.VARIANT_PARAMS["rsi_oversold_fast"])
    gain, loss = (1 * 4 + 0) / 5, (0 * 4 + 35) / 5
    assert rows_of(events, frame) == [6]
    assert events["score"].iloc[0] == pytest.approx(20 - (100 - 100 / (1 + gain / loss)))


# --- squeeze_breakout (small windows so the numbers can be followed by hand) ---

SQUEEZE = {"window": 6, "rank_window": 3, "quantile": 0.0, "horizon": 2}


def upper_band(values):
    return statistics.mean(values) + 2 * statistics.stdev(values)


def test_squeeze_breakout_by_hand():
    # Rows 0-9 flat: bandwidth 0 from row 5, so rows 7-9 are squeezes (0 <= min of 3 zeros).
    # Row 10 jumps to 101: bandwidth > 0 is no squeeze, and 101 > upper band of the last 6 closes.
    close = [100.0] * 10 + [101.0]
    frame = bars(close=close)
    events = squeeze_breakout(frame, SQUEEZE)
    assert rows_of(events, frame) == [10]
    assert events["score"].iloc[0] == pytest.approx(101 / upper_band(close[-6:]) - 1)


def test_squeeze_window_expires_after_horizon():
    # Last squeeze at row 9; rows 10-11 dip (no squeeze, not above); the jump at row 12 is 3 rows later.
    close = [100.0] * 10 + [99.9, 99.9, 103.0]
    frame = bars(close=close)
    assert 103.0 > upper_band(close[-6:])
    assert squeeze_breakout(frame, SQUEEZE).empty
    assert rows_of(squeeze_breakout(frame, {**SQUEEZE, "horizon": 3}), frame) == [12]


def test_squeeze_event_closes_the_window():
    close = [100.0] * 10 + [101.0, 106.0]  # row 11 is above its band too, but the window closed at 10
    frame = bars(close=close)
    assert 106.0 > upper_band(close[-6:])
    assert rows_of(squeeze_breakout(frame, SQUEEZE), frame) == [10]


def test_squeeze_needs_full_rank_window_with_defaults():
    assert squeeze_breakout(bars(close=[100.0] * 130 + [105.0]), DEFAULT_PARAMS["squeeze_breakout"]).empty


# --- ma_cross ---

def test_ma_cross_by_hand_with_short_windows():
    cfg = {"fast": 2, "slow": 3}
    frame = bars(close=[10.0, 10, 10, 11, 9, 8, 12])
    # row 2: sma2 = sma3 = 10 (equal: no cross); row 3: 10.5 > 10.33 after equal -> event;
    # rows 4-5 below; row 6: sma2 = 10 > sma3 = 9.67 after 8.5 <= 9.33 -> event.
    events = ma_cross(frame, cfg)
    assert rows_of(events, frame) == [3, 6]
    assert events["score"].tolist() == pytest.approx([10.5 / (31 / 3) - 1, 10 / (29 / 3) - 1])


def test_ma_cross_warm_up_is_200_rows():
    close = np.concatenate([np.linspace(200, 100, 150), np.linspace(100, 300, 60)])
    frame = bars(close=close)
    events = ma_cross(frame, DEFAULT_PARAMS["ma_cross"])
    assert all(r >= 200 for r in rows_of(events, frame))
    assert ma_cross(frame.iloc[:199], DEFAULT_PARAMS["ma_cross"]).empty


@pytest.mark.parametrize("name", list(DEFAULT_PARAMS) + list(variants.VARIANTS))
def test_every_detector_handles_empty_and_tiny_frames(name):
    spec = resolve_detectors((name,), {})[0]
    for n in (0, 1, 5):
        events = spec.func(bars(n), spec.params)
        assert list(events.columns) == ["date", "score"] and events.empty


def test_every_variant_names_a_registered_baseline():
    assert set(variants.VARIANTS.values()) <= set(DEFAULT_PARAMS)


@pytest.mark.parametrize("name", list(DEFAULT_PARAMS) + list(variants.VARIANTS))
def test_registered_detectors_leave_their_input_unchanged(name, small_universe):
    # harness.task shares one frame among them (only a user's detector gets a copy)
    from harness.io import list_symbols, read_symbol_data
    spec = resolve_detectors((name,), {})[0]
    fired = 0
    for symbol in list_symbols(str(small_universe)):
        frame = read_symbol_data(symbol, str(small_universe), 10_000)
        before = frame.copy()
        fired += len(spec.func(frame, spec.params))
        pd.testing.assert_frame_equal(frame, before, check_exact=True)
    assert fired > 0


@pytest.mark.parametrize("name, folder", [
    ("volume_spike", "volume_spike"),
    ("pkg.mod:f", "pkg.mod.f"),
    ("vs_grid[multiple=2.0]", "vs_grid.multiple_2.0"),
    ("vs_grid[multiple=2.0,window=10]", "vs_grid.multiple_2.0.window_10"),
    ("g[min_move=-0.5,big=1.0e+20,mode=a b/c]", "g.min_move_-0.5.big_1.0e20.mode_a_b_c"),
])
def test_a_detector_folder_is_its_name_in_a_symbol_folder_charset(name, folder):
    import re
    from harness.detectors import out_name
    assert out_name(name) == folder and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", folder)

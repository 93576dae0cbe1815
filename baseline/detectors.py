"""The six baseline event detectors. FROZEN: tests/golden pins their outputs.

Contract (see shared DESIGN.md): `detector(df, cfg) -> events`
- df: read_symbol_data's frame (date, open, high, low, close, volume; RangeIndex, sorted, unique dates);
- cfg: this detector's parameters (DEFAULT_PARAMS merged with the config's overrides);
- events: columns date, score (float64), one row per event in date order; no event -> empty frame
  with the same columns.
Every rule looks only at rows <= t to decide on row t (no look-ahead). A rule needs its warm-up
rows before it can fire, and a comparison involving NaN never fires.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "volume_spike": {"window": 20, "multiple": 3.0, "min_move": 0.02},
    "breakout_52w": {"lookback": 252, "cooldown": 20},
    "gap": {"min_gap": 0.03},
    "rsi_oversold": {"period": 14, "level": 30.0},
    "squeeze_breakout": {"window": 20, "rank_window": 120, "quantile": 0.10, "horizon": 10},
    "ma_cross": {"fast": 50, "slow": 200},
}


def events_frame(df: pd.DataFrame, fired: np.ndarray, score: pd.Series | np.ndarray) -> pd.DataFrame:
    """The events frame for boolean row mask `fired`: columns date, score (float64)."""
    fired = np.asarray(fired, dtype=bool)
    return pd.DataFrame({
        "date": df["date"].to_numpy()[fired],
        "score": np.asarray(score, dtype="float64")[fired],
    })


def apply_cooldown(hits: np.ndarray, cooldown: int) -> np.ndarray:
    """Keep a hit only if no kept hit lies in the `cooldown` rows before it."""
    kept = np.zeros(len(hits), dtype=bool)
    next_allowed = 0
    for i in np.flatnonzero(hits):
        if i >= next_allowed:
            kept[i] = True
            next_allowed = i + cooldown + 1
    return kept


def wilder_rsi(close: pd.Series, period: int) -> np.ndarray:
    """Wilder's RSI(period) of `close`, as a float array aligned with it.

    The first average gain/loss is the simple mean of the first `period` changes, so RSI first exists
    at row `period` (NaN before, and everywhere when there are fewer than period + 1 rows); then
    avg[t] = (avg[t-1] * (period - 1) + x[t]) / period. RSI is 100 where the average loss is 0.
    """
    values = close.to_numpy(dtype="float64")
    rsi = np.full(len(values), np.nan)
    if len(values) <= period:
        return rsi
    change = np.diff(values)
    gains = np.maximum(change, 0.0)
    losses = np.maximum(-change, 0.0)
    avg_gain = gains[:period].mean()
    avg_loss = losses[:period].mean()
    for t in range(period, len(values)):
        if t > period:
            avg_gain = (avg_gain * (period - 1) + gains[t - 1]) / period
            avg_loss = (avg_loss * (period - 1) + losses[t - 1]) / period
        rsi[t] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return rsi


def prior_median_volume(df: pd.DataFrame, window: int) -> pd.Series:
    """median(volume[t-window .. t-1]); NaN until `window` prior rows exist."""
    return df["volume"].rolling(window).median().shift(1)


def volume_spike_signal(df: pd.DataFrame, cfg: Mapping[str, Any]) -> tuple[np.ndarray, pd.Series]:
    """(fired, score) of volume_spike, for the variants that add a condition to it."""
    median = prior_median_volume(df, cfg["window"])
    move = (df["close"] / df["close"].shift(1) - 1).abs()
    fired = (df["volume"] >= cfg["multiple"] * median) & (move >= cfg["min_move"])
    return fired.to_numpy(), df["volume"] / median


def volume_spike(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """volume[t] >= multiple x median(volume[t-20 .. t-1]) and |close[t]/close[t-1] - 1| >= min_move.

    score = volume[t] / that median. Warm-up: 20 prior rows.
    """
    fired, score = volume_spike_signal(df, cfg)
    return events_frame(df, fired, score)


def prior_high(df: pd.DataFrame, lookback: int) -> pd.Series:
    """max(high[t-lookback .. t-1]); NaN until `lookback` prior rows exist."""
    return df["high"].rolling(lookback).max().shift(1)


def breakout_52w(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """close[t] > max(high[t-252 .. t-1]); after an event, hits in the next `cooldown` rows are ignored.

    score = close[t] / that max - 1. Warm-up: 252 prior rows.
    """
    level = prior_high(df, cfg["lookback"])
    hits = (df["close"] > level).to_numpy()
    return events_frame(df, apply_cooldown(hits, cfg["cooldown"]), df["close"] / level - 1)


def gap(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """|open[t] / close[t-1] - 1| >= min_gap. score = open[t] / close[t-1] - 1 (signed)."""
    size = df["open"] / df["close"].shift(1) - 1
    return events_frame(df, (size.abs() >= cfg["min_gap"]).to_numpy(), size)


def rsi_oversold(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Wilder RSI(period) crosses below `level`: RSI[t] < level and RSI[t-1] >= level.

    score = level - RSI[t]. The first possible event is row period + 1.
    """
    rsi = wilder_rsi(df["close"], cfg["period"])
    previous = np.concatenate([[np.nan], rsi[:-1]])
    with np.errstate(invalid="ignore"):
        fired = (rsi < cfg["level"]) & (previous >= cfg["level"])
    return events_frame(df, fired, cfg["level"] - rsi)


def squeeze_breakout(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """A close above the upper Bollinger band within `horizon` rows after a volatility squeeze.

    BW[t] = 4 x std20[t] / sma20[t] (sample std). Row s is a squeeze when BW[s] <= the 10% quantile
    (linear interpolation) of BW[s-119 .. s]. Walking the rows in order, a squeeze row (re)starts a
    window at s and is never an event itself; a later non-squeeze row t <= s + horizon with
    close[t] > sma20[t] + 2 x std20[t] is an event and closes the window.
    score = close[t] / (sma20[t] + 2 x std20[t]) - 1.
    """
    close = df["close"]
    sma = close.rolling(cfg["window"]).mean()
    std = close.rolling(cfg["window"]).std(ddof=1)
    bandwidth = 4 * std / sma
    floor = bandwidth.rolling(cfg["rank_window"]).quantile(cfg["quantile"], interpolation="linear")
    squeeze = (bandwidth <= floor).to_numpy()
    upper = sma + 2 * std
    above = (close > upper).to_numpy()
    fired = np.zeros(len(df), dtype=bool)
    window_start = None
    for t in range(len(df)):
        if squeeze[t]:
            window_start = t
        elif window_start is not None and t <= window_start + cfg["horizon"] and above[t]:
            fired[t] = True
            window_start = None
    return events_frame(df, fired, close / upper - 1)


def ma_cross(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """sma50 crosses above sma200: sma50[t] > sma200[t] and sma50[t-1] <= sma200[t-1].

    score = sma50[t] / sma200[t] - 1. Warm-up: 200 rows (the first cross can be row 200).
    """
    fast = df["close"].rolling(cfg["fast"]).mean()
    slow = df["close"].rolling(cfg["slow"]).mean()
    fired = (fast > slow) & (fast.shift(1) <= slow.shift(1))
    return events_frame(df, fired.to_numpy(), fast / slow - 1)

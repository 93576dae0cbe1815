"""Variant detectors under research. Each varies one baseline (VARIANTS maps name -> baseline name)
and computes its score the way its baseline does. Same contract as baseline/detectors.py.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from baseline.detectors import (DEFAULT_PARAMS, apply_cooldown, events_frame, prior_high, rsi_oversold,
                                volume_spike_signal)

VARIANTS: dict[str, str] = {
    "volume_spike_trend": "volume_spike",
    "breakout_52w_volume": "breakout_52w",
    "rsi_oversold_fast": "rsi_oversold",
}

VARIANT_PARAMS: dict[str, dict[str, Any]] = {
    "volume_spike_trend": {**DEFAULT_PARAMS["volume_spike"], "trend_window": 50},
    "breakout_52w_volume": {**DEFAULT_PARAMS["breakout_52w"], "volume_window": 20, "volume_multiple": 1.5},
    "rsi_oversold_fast": {"period": 5, "level": 20.0},
}


def volume_spike_trend(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """volume_spike, only while the stock trends up: also close[t] > sma50[t]."""
    fired, score = volume_spike_signal(df, cfg)
    trend = (df["close"] > df["close"].rolling(cfg["trend_window"]).mean()).to_numpy()
    return events_frame(df, fired & trend, score)


def breakout_52w_volume(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """breakout_52w on volume: also volume[t] >= 1.5 x mean(volume[t-20 .. t-1]).

    The cooldown counts this variant's own events.
    """
    level = prior_high(df, cfg["lookback"])
    average = df["volume"].rolling(cfg["volume_window"]).mean().shift(1)
    hits = ((df["close"] > level) & (df["volume"] >= cfg["volume_multiple"] * average)).to_numpy()
    return events_frame(df, apply_cooldown(hits, cfg["cooldown"]), df["close"] / level - 1)


def rsi_oversold_fast(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """rsi_oversold with Wilder RSI(5) crossing below 20; score = 20 - RSI[t]."""
    return rsi_oversold(df, cfg)

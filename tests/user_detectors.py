"""Detectors that tests load by import path (`user_detectors:NAME`), as a user's own would be."""

import os

import numpy as np
import pandas as pd

MARKER_VOLUME = 7777.0  # a symbol whose bars contain this volume makes the detectors below misbehave


def explode_on_marker(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Raises for a symbol whose data holds the marker volume; otherwise fires on every 50th row."""
    if (df["volume"] == MARKER_VOLUME).any():
        raise RuntimeError("marker bar found")
    return df.iloc[::50][["date"]].assign(score=1.0)


def kill_on_marker(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Kills its own process (SIGKILL) for the marker symbol, like a segfault or the OOM killer would."""
    if (df["volume"] == MARKER_VOLUME).any():
        os.kill(os.getpid(), 9)
    return df.iloc[::50][["date"]].assign(score=1.0)


def with_range(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Every 25th row, with an extra column: the bar's high/low range."""
    rows = df.iloc[::25]
    return pd.DataFrame({"date": rows["date"].to_numpy(), "score": np.ones(len(rows)),
                         "range": (rows["high"] / rows["low"] - 1).to_numpy()})


with_range.baseline = "gap"


def slow(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Every 50th row, after 0.2 s of sleep: makes a 20-symbol run last long enough to interrupt."""
    import time
    time.sleep(0.2)
    return df.iloc[::50][["date"]].assign(score=1.0)


def every_bar(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Fires on every bar (score 1): the event study of 'any day'."""
    return pd.DataFrame({"date": df["date"].to_numpy(), "score": np.ones(len(df))})


def every_other_bar(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Fires on every second bar: a variant of every_bar, for the variant-vs-baseline statistics."""
    return every_bar(df, cfg).iloc[::2].reset_index(drop=True)


every_other_bar.baseline = "user_detectors:every_bar"


def gated(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Every 50th row; while the file named by $SCAN_TEST_GATE does not exist, waits for it first.

    Holds a run at its first symbol for as long as a test needs it running (no sleep-and-hope)."""
    import time
    gate = os.environ.get("SCAN_TEST_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.05)
    return df.iloc[::50][["date"]].assign(score=1.0)


def gated_by(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Every 50th row; first creates the file named by the parameter `started`, then waits for the
    one named by `gate`: each run held by its own gate, and a test knows when it is running."""
    import pathlib
    import time
    pathlib.Path(cfg["started"]).touch()
    while not os.path.exists(cfg["gate"]):
        time.sleep(0.05)
    return df.iloc[::50][["date"]].assign(score=1.0)


def doubles_close_in_place(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Changes its input in place (close doubled, the date made the index), then fires on every 50th row."""
    df["close"] *= 2
    dates = df["date"].to_numpy()
    df.set_index("date", inplace=True)
    return pd.DataFrame({"date": dates[::50], "score": 1.0})


def peek_ahead(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Looks ahead: fires when the close 5 bars later is 5% higher (shift(-5)), scored by that rise."""
    rise = df["close"].shift(-5) / df["close"] - 1
    hit = rise > 0.05
    return pd.DataFrame({"date": df["date"][hit].to_numpy(), "score": rise[hit].to_numpy()})


def whole_rank(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Looks ahead: the close's percentile rank over the whole series (later bars move it) as score."""
    rank = df["close"].rank(pct=True)
    hit = rank > 0.9
    return pd.DataFrame({"date": df["date"][hit].to_numpy(), "score": rank[hit].to_numpy()})


def causal_jump(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Causal: a close 3% above the previous one, scored by that return (the bar and the one before)."""
    change = df["close"] / df["close"].shift(1) - 1
    hit = change > 0.03
    return pd.DataFrame({"date": df["date"][hit].to_numpy(), "score": change[hit].to_numpy()})


def needs_long_history(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Causal, but raises on fewer than 300 bars (a detector that needs a long warm-up): the
    look-ahead check's cut bars make it raise; the symbol itself scans fine."""
    if len(df) < 300:
        raise ValueError(f"need 300 bars, got {len(df)}")
    return causal_jump(df, cfg)


def peek_one_bar(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """Looks one bar ahead: fires when the next close is 2% higher (shift(-1))."""
    rise = df["close"].shift(-1) / df["close"] - 1
    hit = rise > 0.02
    return pd.DataFrame({"date": df["date"][hit].to_numpy(), "score": rise[hit].to_numpy()})

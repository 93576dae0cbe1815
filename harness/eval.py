"""Forward returns of events: what the stock did h bars after each event."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def forward_column(window: int) -> str:
    """Column name of the `window`-bar forward return, e.g. fwd_5."""
    return f"fwd_{window}"


def abnormal_column(window: int) -> str:
    """Column name of the `window`-bar abnormal (market-adjusted) forward return, e.g. abn_5."""
    return f"abn_{window}"


def market_column(window: int) -> str:
    """Column name of the market's return over the same bars as fwd_<window> (kept in memory only)."""
    return f"mkt_{window}"


def flagged_column(window: int) -> str:
    """Column name of whether the event's `window` bars cross a flagged outlier bar (kept in memory only)."""
    return f"flagged_{window}"


def event_rows(dates: np.ndarray, event_dates: np.ndarray) -> np.ndarray:
    """Row numbers of `event_dates` in the sorted, unique `dates`; ValueError if one is not there."""
    rows = np.searchsorted(dates, event_dates)
    if len(rows) and (rows.max() >= len(dates) or (dates[rows] != event_dates).any()):
        raise ValueError("an event date is not a row of the symbol's data")
    return rows


def forward_returns(close: np.ndarray, rows: np.ndarray, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """{fwd_h: close[rows + h] / close[rows] - 1} for each window; NaN where rows + h is past the end."""
    out = {}
    for h in windows:
        ahead = rows + h
        later = np.full(len(rows), np.nan)
        inside = ahead < len(close)
        later[inside] = close[ahead[inside]]
        out[forward_column(h)] = later / close[rows] - 1
    return out


def add_forward_returns(events: pd.DataFrame, df: pd.DataFrame, windows: Sequence[int]) -> pd.DataFrame:
    """events plus `close` and one `fwd_h` column per window: close[i + h] / close[i] - 1.

    events: needs `date`, each of which is a row of `df` (read_symbol_data's frame, sorted, unique
    dates); otherwise ValueError. h counts bars of this symbol's own data, not calendar days, and
    missing bars are never filled. fwd_h is NaN when i + h is past the last bar. Returns a new
    frame with events' rows and index.
    """
    close = df["close"].to_numpy(dtype="float64")
    rows = event_rows(df["date"].to_numpy(), events["date"].to_numpy())
    # one new frame rather than events.assign(): a third of the time (~0.35 ms for a symbol's events,
    # harness.task calls it for every symbol)
    return pd.DataFrame({**{name: events[name] for name in events.columns}, "close": close[rows],
                         **forward_returns(close, rows, windows)}, index=events.index)

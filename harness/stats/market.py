"""The market and what each event did against it. Pure functions over numpy arrays and DataFrames.

The market is an equal-weighted, daily-rebalanced index of the scanned universe: on each date d,
ret(d) is the mean of close[i] / close[i-1] - 1 over every symbol whose bar i (i >= 1, within the
run's lookback) is dated d, but for a bar whose move is too large for one stock's day
(outlier_bars: an unadjusted split, a relisting after a gap, a bad print), which is left out; its
level starts at 1.0 on the first date and compounds 1 + ret(d).
Its dates are every date on which a scanned symbol has a bar; on a date where no symbol has a
return (only first bars), ret is 0.0 and `symbols` is 0.

Dates are handled as int32 day numbers (days since 1970-01-01) on a grid that spans the whole
datetime64[ns] range, so that sums over the universe are plain array additions.

Determinism: sums are added in the order the symbols are given (np.add.at and np.bincount add
sequentially), and the caller gives them in symbol order, chunk by chunk; only +, -, *, / are
used, so the bytes depend neither on the number of workers nor on the CPU.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

GRID_START = int(np.datetime64(pd.Timestamp.min.ceil("D"), "D").astype(np.int64))
GRID_SIZE = int(np.datetime64(pd.Timestamp.max.floor("D"), "D").astype(np.int64)) - GRID_START + 1
MARKET_COLUMNS = ["date", "ret", "symbols", "level"]


def day_numbers(dates: np.ndarray) -> np.ndarray:
    """int32 days since 1970-01-01 of datetime64 `dates`."""
    return np.asarray(dates).astype("datetime64[D]").astype(np.int64).astype(np.int32)


def outlier_bars(close: np.ndarray, move: float | None) -> np.ndarray:
    """Per bar, whether its return close[i] / close[i-1] is above 1 + move or below 1 / (1 + move)
    (bar 0: False): too large a move for one stock's day to enter the market index, the mark of an
    unadjusted split, a relisting after a gap or a bad print. None: no bar is."""
    out = np.zeros(len(close), dtype=bool)
    if move is not None and len(close) > 1:
        ratio = close[1:] / close[:-1]
        out[1:] = (ratio > 1 + move) | (ratio < 1 / (1 + move))
    return out


def chunk_sums(series: Sequence[tuple[np.ndarray, np.ndarray]], outlier_move: float | None = None) -> pd.DataFrame:
    """The market's raw sums over some symbols: columns day (int32), ret_sum (float64), returns (int32).

    series: per symbol, in symbol order, (days, close) of its bars (day numbers ascending, closes > 0).
    One row per day on which one of them has a bar, ascending; ret_sum adds close[i] / close[i-1] - 1
    of each symbol with a bar i >= 1 that day, in the given order, but for the outlier_bars() of
    `outlier_move`, which are left out; returns counts what was added.
    """
    days = [d for d, _ in series if len(d)]
    if not days:
        return pd.DataFrame({"day": np.array([], np.int32), "ret_sum": np.array([], np.float64),
                             "returns": np.array([], np.int32)})
    low = min(int(d[0]) for d in days)
    high = max(int(d[-1]) for d in days)
    sums = np.zeros(high - low + 1)
    counts = np.zeros(high - low + 1, dtype=np.int64)
    present = np.zeros(high - low + 1, dtype=bool)
    for day, close in series:
        if len(day) == 0:
            continue
        present[day - low] = True
        if len(day) > 1:
            keep = ~outlier_bars(close, outlier_move)[1:]
            at = day[1:][keep] - low
            sums[at] += (close[1:] / close[:-1] - 1)[keep]  # days are unique within a symbol
            counts[at] += 1
    keep = np.flatnonzero(present)
    return pd.DataFrame({"day": (keep + low).astype(np.int32), "ret_sum": sums[keep],
                         "returns": counts[keep].astype(np.int32)})


def market_index(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The market from chunk_sums() of consecutive chunks, in chunk order: MARKET_COLUMNS.

    date (datetime64[ns]), ret (float64; 0.0 where `symbols` is 0), symbols (int32: returns
    averaged), level (float64: 1.0 on the first date, times 1 + ret on each later one). No bars
    anywhere: an empty frame.
    """
    sums = np.zeros(GRID_SIZE)
    counts = np.zeros(GRID_SIZE, dtype=np.int64)
    present = np.zeros(GRID_SIZE, dtype=bool)
    for part in parts:
        at = part["day"].to_numpy(np.int64) - GRID_START
        sums[at] += part["ret_sum"].to_numpy()
        counts[at] += part["returns"].to_numpy()
        present[at] = True
    keep = np.flatnonzero(present)
    counts = counts[keep]
    # On the first date every bar is its symbol's first: no returns, ret 0.0, level 1.0.
    ret = np.where(counts > 0, sums[keep] / np.maximum(counts, 1), 0.0)
    dates = (keep + GRID_START).astype("datetime64[D]").astype("datetime64[ns]")
    return pd.DataFrame({"date": dates, "ret": ret, "symbols": counts.astype(np.int32),
                         "level": np.cumprod(1.0 + ret)})


def level_grid(market: pd.DataFrame) -> np.ndarray:
    """The market's level on the day grid (index: day number - GRID_START); NaN on non-market days."""
    grid = np.full(GRID_SIZE, np.nan)
    grid[day_numbers(market["date"].to_numpy()).astype(np.int64) - GRID_START] = market["level"].to_numpy()
    return grid


def event_returns(days: np.ndarray, close: np.ndarray, levels: np.ndarray, first: np.ndarray,
                  length: np.ndarray, bars: np.ndarray, offsets: Sequence[int],
                  thin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ret, mkt): arrays [event, offset] of close[i+k] / close[i] - 1 and of the market over the same
    dates, level[date of bar i+k] / level[date of bar i] - 1, for each event's bar i and offset k.

    days, close: the bars of several symbols one after another; first, length: each event's
    symbol's rows there; bars: each event's bar number i; levels: level_grid(). NaN where bar i+k
    does not exist. Bars are counted in the symbol's own data: missing days are never filled.
    thin: harness.stats.benchmark.thin_grid(); mkt is NaN where the span crosses a thin market date.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    ahead = bars.astype(np.int64)[:, None] + offsets[None, :]          # [event, offset] bar numbers
    missing = (ahead < 0) | (ahead >= length[:, None])
    at = first + bars                                                  # row of bar i
    # row of bar i + k, clamped into the symbol's rows: computed everywhere, then NaN where missing
    later = first[:, None] + np.clip(ahead, 0, np.maximum(length - 1, 0)[:, None])
    ret = close[later] / close[at][:, None] - 1
    day_later, day_at = days[later].astype(np.int64) - GRID_START, days[at].astype(np.int64)[:, None] - GRID_START
    mkt = levels[day_later] / levels[day_at] - 1
    ret[missing] = np.nan
    mkt[missing] = np.nan
    if thin is not None:
        mkt[thin[day_later] != thin[day_at]] = np.nan
    return ret, mkt

"""What an event's return is measured against. Pure functions over numpy arrays.

Two benchmarks (config key `benchmark`):

- market: the abnormal return over h bars is the stock's return less the equal-weighted market's
  over the same dates, fwd_h - mkt_h. It takes every stock to have a beta of 1.
- market_model (MacKinlay 1997, alpha not extrapolated): alpha and beta are fitted per event by
  OLS of the stock's bar returns on the market's over an estimation window of bars before the event
  (`estimation_window`, default bars -250 .. -21), and the abnormal return is fwd_h - beta x mkt_h:
  the fitted alpha is not carried past the window. A detector that selects on past returns
  (breakouts, trends, momentum) picks bars whose window drifted up; that drift is the fitted alpha,
  and h x alpha subtracted after the event would be an "abnormal return" made by the selection
  (STATISTICS.md, "The market model"). The slope of an OLS with an intercept is not moved by a
  selection on the window's total return, so beta alone is kept. Events with fewer than
  `min_estimation_bars` usable returns in the window have no abnormal return (NaN).

Either way the market must be a market: a span of dates that crosses a market date on which fewer
than `min_market_symbols` symbols had a return has no market return, so no abnormal return (the
early years of a run whose lookback counts back from each symbol's own last bar can be a handful
of since-delisted names). Estimation returns over such dates are left out of the fit.

Bars are counted in each symbol's own data (missing days are never filled): a bar's return spans
from its previous bar's date to its own, and so does the market's return matched to it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from harness.stats.market import GRID_SIZE, GRID_START, day_numbers, event_returns, level_grid

BENCHMARKS = ("market", "market_model")
DEFAULT_ESTIMATION_WINDOW = (-250, -21)
DEFAULT_MIN_ESTIMATION_BARS = 100
DEFAULT_MIN_MARKET_SYMBOLS = 20
DEFAULT_OUTLIER_MOVE = 0.8  # harness.stats.market.outlier_bars: above +80% or below -44% in a day


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """The benchmark settings of a run (config keys of the same names)."""

    kind: str = "market"
    estimation_window: tuple[int, int] = DEFAULT_ESTIMATION_WINDOW  # bars relative to the event, inclusive
    min_estimation_bars: int = DEFAULT_MIN_ESTIMATION_BARS
    min_market_symbols: int = DEFAULT_MIN_MARKET_SYMBOLS
    outlier_move: float | None = DEFAULT_OUTLIER_MOVE  # harness.stats.market.outlier_bars: not in the fits
    exclude_flagged: bool = False      # events whose bars cross an outlier bar: left out of the statistics


def thin_grid(market: pd.DataFrame, min_symbols: int) -> np.ndarray:
    """On the day grid (index: day number - GRID_START), how many market dates up to and including
    that day had fewer than `min_symbols` returns (int32). A span (a, b] of days crosses a thin
    market date exactly when grid[b] - grid[a] > 0. The market's first date has no returns: it is
    thin, but no span ends on it."""
    marks = np.zeros(GRID_SIZE, dtype=np.int32)
    thin = market["symbols"].to_numpy() < min_symbols
    marks[day_numbers(market["date"].to_numpy()[thin]).astype(np.int64) - GRID_START] = 1
    return np.cumsum(marks, dtype=np.int32)


def thin_spans(thin: np.ndarray, day_from: np.ndarray, day_to: np.ndarray) -> np.ndarray:
    """Whether the span between two days (either order) crosses a thin market date."""
    low, high = np.minimum(day_from, day_to).astype(np.int64), np.maximum(day_from, day_to).astype(np.int64)
    return thin[high - GRID_START] != thin[low - GRID_START]


def bar_returns(days: np.ndarray, close: np.ndarray, first: np.ndarray, length: np.ndarray,
                levels: np.ndarray, thin: np.ndarray, outlier_move: float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(stock, market) return of every bar of several symbols laid one after another (first,
    length: each symbol's rows): close[j] / close[j - 1] - 1 and the market's level over the same
    two dates. NaN on each symbol's first bar, where the span crosses a thin market date, and on a
    bar whose move the market index left out (harness.stats.market.outlier_bars of `outlier_move`: an
    unadjusted split would otherwise be one -50% return in every later event's fit)."""
    stock = np.full(len(close), np.nan)
    market = np.full(len(close), np.nan)
    if len(close) < 2:
        return stock, market
    previous = np.arange(-1, len(close) - 1)
    inside = np.ones(len(close), dtype=bool)
    inside[first[length > 0]] = False  # a symbol's first bar has no previous bar of its own
    inside[0] = False
    at, before = np.flatnonzero(inside), previous[inside]
    day_at, day_before = days[at].astype(np.int64), days[before].astype(np.int64)
    ok = thin[day_at - GRID_START] == thin[day_before - GRID_START]
    at, before = at[ok], before[ok]
    if outlier_move is not None:
        ratio = close[at] / close[before]
        kept = (ratio <= 1 + outlier_move) & (ratio >= 1 / (1 + outlier_move))  # outlier_bars' rule
        at, before = at[kept], before[kept]
    stock[at] = close[at] / close[before] - 1
    market[at] = levels[days[at].astype(np.int64) - GRID_START] / levels[days[before].astype(np.int64) - GRID_START] - 1
    return stock, market


@dataclasses.dataclass(frozen=True)
class RunningSums:
    """Per symbol, running sums of count, stock, market, stock x market and market^2 over its bars
    where both returns exist (bar_returns()), starting from 0 at each symbol's first bar: what
    market_model_fit() takes, computed once for all the events of some symbols. Each symbol's sums
    start afresh, so a fit depends on its own symbol's bars only (not on which symbols share its
    staged chunk: the bytes do not depend on flush_every).

    sums: [5, bars + symbols]; symbol k's "before its first bar" is column starts[k] + k (0.0), and
    the sums up to and including its row r are in column r + k + 1.
    """

    sums: np.ndarray
    starts: np.ndarray                   # each symbol's first row, ascending

    @classmethod
    def of(cls, stock: np.ndarray, market: np.ndarray, spans: tuple[np.ndarray, np.ndarray]) -> RunningSums:
        first, length = spans
        ok = ~np.isnan(stock) & ~np.isnan(market)
        r, m = np.where(ok, stock, 0.0), np.where(ok, market, 0.0)
        values = (ok.astype(np.float64), r, m, r * m, m * m)
        sums = np.zeros((5, len(stock) + len(first)))
        for k, (start, n) in enumerate(zip(first.tolist(), length.tolist())):
            for row, column in enumerate(values):
                np.cumsum(column[start:start + n], out=sums[row, start + k + 1:start + k + 1 + n])
        return cls(sums, np.asarray(first))

    def between(self, low: np.ndarray, high: np.ndarray, first: np.ndarray) -> np.ndarray:
        """[5, rows] sums over rows low .. high - 1 (low <= high, both within the symbol that
        starts at row `first`)."""
        k = np.searchsorted(self.starts, first)
        return self.sums[:, high + k] - self.sums[:, low + k]


def outlier_crossings(close: np.ndarray, spans: tuple[np.ndarray, np.ndarray], first: np.ndarray,
                      length: np.ndarray, bars: np.ndarray, offsets: Sequence[int], move: float | None
                      ) -> np.ndarray:
    """[event, offset] whether the bars between each event's bar i and bar i + k (the returns of bars
    min(i, i+k) + 1 .. max(i, i+k), within its own symbol) include a bar flagged by
    harness.stats.market.outlier_bars(move): an unadjusted split or a bad print inside the event's
    window, which its return carries. close, spans: the bars of several symbols one after another
    and each one's (first row, bars); first, length, bars: each event's symbol's rows and its bar.
    move None: nothing is flagged. Offsets past a symbol's ends count up to its first or last bar."""
    flagged = np.zeros((len(bars), len(offsets)), dtype=bool)
    if move is None or len(bars) == 0:
        return flagged
    marks = np.zeros(len(close), dtype=np.int64)
    if len(close) > 1:
        ratio = close[1:] / close[:-1]
        marks[1:] = (ratio > 1 + move) | (ratio < 1 / (1 + move))  # outlier_bars' rule
        marks[spans[0][spans[1] > 0]] = 0  # a symbol's first bar has no return of its own
    if not marks.any():  # most chunks: no flagged bar at all
        return flagged
    counted = np.concatenate([[0], np.cumsum(marks)])  # counted[j + 1]: marks of rows 0 .. j
    row, last = first + bars, first + length - 1
    for n, k in enumerate(offsets):
        low = np.clip(row + min(k, 0), first, last)
        high = np.clip(row + max(k, 0), first, last)
        flagged[:, n] = counted[high + 1] > counted[low + 1]
    return flagged


def market_model_fit(sums: RunningSums, rows: np.ndarray, first: np.ndarray, length: np.ndarray,
                     window: tuple[int, int], min_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of the OLS stock = alpha + beta x market over each row's estimation window.

    sums: RunningSums of bar_returns() of several symbols laid one after another; rows: the rows
    (events' bars) to fit for; first, length: each row's symbol's rows. The window is rows
    rows + window[0] .. rows + window[1] of the row's own symbol, with the returns that exist there.
    NaN alpha and beta where fewer than `min_bars` returns, or a market that did not move.
    Running sums make each fit O(1); their rounding is ~1e-12 of the window's sums.
    """
    end = first + length
    low = np.clip(rows + window[0], first, end)
    high = np.clip(rows + window[1] + 1, low, end)
    n, sr, sm, srm, smm = sums.between(low, high, first)
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx = smm - sm * sm / n
        beta = (srm - sr * sm / n) / sxx
        alpha = (sr - beta * sm) / n
    fitted = (n >= min_bars) & (sxx > 1e-14 * smm)
    return np.where(fitted, alpha, np.nan), np.where(fitted, beta, np.nan)


def expected_returns(mkt: np.ndarray, beta: np.ndarray | None = None) -> np.ndarray:
    """[event, offset] returns the benchmark expects, given the market's over the same bars (mkt):
    the market's itself (market), or beta x mkt with each event's beta (market_model; its fitted
    alpha is not extrapolated, module docstring). The abnormal return is the return less this; NaN
    where an input is (an event without a fit)."""
    return mkt if beta is None else beta[:, None] * mkt


class BenchmarkReturns:
    """A run's market and benchmark applied to bars: each event's return, the market's over the same
    bars and the return the benchmark expected there.

    Built once per process from the market index (harness.stats.market.market_index) and the settings;
    for market_model it keeps the running sums of the last bars it fitted on, so that every
    detector's events of one staged chunk share them.
    """

    def __init__(self, market: pd.DataFrame, benchmark: Benchmark):
        self.benchmark = benchmark
        self.levels = level_grid(market)
        self.thin = thin_grid(market, benchmark.min_market_symbols)
        self._fitted: tuple[np.ndarray, RunningSums] | None = None  # (the bars' days, their running sums)

    def returns(self, days: np.ndarray, close: np.ndarray, spans: tuple[np.ndarray, np.ndarray],
                first: np.ndarray, length: np.ndarray, bars: np.ndarray, offsets: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ret, mkt, expected), arrays [event, offset]: harness.stats.market.event_returns() (with the
        thin market's spans NaN in mkt) and expected_returns().

        days, close: the bars of several symbols one after another, spans: (first row, number of
        bars) of every one of them; first, length, bars: each event's symbol's rows and its bar.
        """
        ret, mkt = event_returns(days, close, self.levels, first, length, bars, offsets, self.thin)
        if self.benchmark.kind == "market":
            return ret, mkt, mkt
        _, beta = self._fit(days, close, spans, first + bars, first, length)
        return ret, mkt, expected_returns(mkt, beta)

    def crossings(self, close: np.ndarray, spans: tuple[np.ndarray, np.ndarray], first: np.ndarray,
                  length: np.ndarray, bars: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
        """outlier_crossings() of the events at `offsets`, by this run's outlier rule."""
        return outlier_crossings(close, spans, first, length, bars, offsets, self.benchmark.outlier_move)

    def _fit(self, days: np.ndarray, close: np.ndarray, spans: tuple[np.ndarray, np.ndarray], rows: np.ndarray,
             first: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """market_model_fit() at `rows`, on the running sums of these bars (kept for the next call)."""
        if self._fitted is None or self._fitted[0] is not days:  # a staged chunk's arrays: never changed
            stock, market = bar_returns(days, close, *spans, self.levels, self.thin, self.benchmark.outlier_move)
            self._fitted = (days, RunningSums.of(stock, market, spans))
        return market_model_fit(self._fitted[1], rows, first, length, self.benchmark.estimation_window,
                                self.benchmark.min_estimation_bars)

    def every_bar(self, days: np.ndarray, close: np.ndarray, spans: tuple[np.ndarray, np.ndarray],
                  windows: Sequence[int]) -> np.ndarray:
        """[bar, window] abnormal returns of every bar of these symbols as if each were an event: the
        numbers returns() gives, ret - expected, but from shifted arrays instead of gathers (all
        bars at once: the sign test's null over every symbol-day)."""
        bars = len(close)
        first, length = (np.repeat(values, spans[1]) for values in spans)
        at = days.astype(np.int64) - GRID_START
        level, thin = self.levels[at], self.thin[at]
        beta = None
        if self.benchmark.kind == "market_model":
            _, beta = self._fit(days, close, spans, np.arange(bars), first, length)
        abn = np.full((bars, len(windows)), np.nan)
        for k, h in enumerate(windows):
            if h >= bars:
                continue
            ret = close[h:] / close[:-h] - 1
            mkt = level[h:] / level[:-h] - 1
            mkt[thin[h:] != thin[:-h]] = np.nan
            inside = np.arange(h, bars) < (first + length)[:-h]  # bar i + h is the same symbol's
            expected = mkt if beta is None else beta[:-h] * mkt
            abn[:-h, k] = np.where(inside, ret - expected, np.nan)
        return abn


def market_membership(market: pd.DataFrame, min_symbols: int) -> dict[str, object]:
    """For run.json and the report: the market's span, its smallest membership (after its first
    date, which has no returns) and how many of its dates have fewer than `min_symbols` returns."""
    if market.empty:
        return {"first_date": None, "last_date": None, "smallest": None, "largest": 0,
                "min_market_symbols": min_symbols, "thin_dates": 0, "dates": 0}
    counts = market["symbols"].to_numpy()[1:]
    dates = market["date"].to_numpy()[1:]
    smallest = int(np.argmin(counts)) if len(counts) else None
    return {"first_date": str(market["date"].iloc[0].date()), "last_date": str(market["date"].iloc[-1].date()),
            "smallest": None if smallest is None else {"date": str(pd.Timestamp(dates[smallest]).date()),
                                                       "symbols": int(counts[smallest])},
            "largest": int(counts.max()) if len(counts) else 0,
            "min_market_symbols": min_symbols, "thin_dates": int((counts < min_symbols).sum()),
            "dates": len(market)}

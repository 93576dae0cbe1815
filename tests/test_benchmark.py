"""Benchmarks: the thin market, bar returns, the market model's fit, against hand values and statsmodels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm

from conftest import run_cli, write_config
from harness.stats.benchmark import (Benchmark, BenchmarkReturns, bar_returns, expected_returns, market_membership,
                                     market_model_fit, outlier_crossings, RunningSums, thin_grid, thin_spans)
from harness.stats.market import GRID_START, level_grid

DAYS = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]).to_numpy("datetime64[ns]")


def market(symbols, ret=None) -> pd.DataFrame:
    ret = np.zeros(len(symbols)) if ret is None else np.asarray(ret, dtype="float64")
    return pd.DataFrame({"date": DAYS[:len(symbols)], "ret": ret, "symbols": np.asarray(symbols, np.int32),
                         "level": np.cumprod(1 + ret)})


def day(i: int) -> int:
    return int(DAYS[i].astype("datetime64[D]").astype(np.int64))


def test_a_span_is_thin_when_it_crosses_a_thin_market_date():
    thin = thin_grid(market([0, 30, 5, 30, 30]), 20)  # the third date is thin (5 < 20)
    start = [day(0), day(1), day(2), day(3), day(1), day(3)]
    end = [day(1), day(2), day(3), day(4), day(3), day(1)]
    assert thin_spans(thin, np.array(start), np.array(end)).tolist() == [False, True, False, False, True, True]


def test_bar_returns_skip_each_symbols_first_bar_and_thin_spans():
    levels = level_grid(market([0, 30, 30, 30, 30], [0, 0.01, 0.02, -0.01, 0.0]))
    thin = thin_grid(market([0, 30, 5, 30, 30]), 20)
    days = np.array([day(0), day(1), day(2), day(1), day(3), day(4)], np.int32)  # A: 3 bars, B: 3 bars (a gap)
    close = np.array([10.0, 11.0, 12.1, 50.0, 55.0, 44.0])
    stock, mkt = bar_returns(days, close, np.array([0, 3]), np.array([3, 3]), levels, thin)
    assert np.isnan(stock[[0, 3]]).all(), "a symbol's first bar has no return"
    assert np.isnan(stock[[2, 4]]).all() and np.isnan(mkt[[2, 4]]).all(), "spans across the thin third date"
    assert stock[1] == pytest.approx(0.1) and mkt[1] == pytest.approx(0.01)
    assert stock[5] == pytest.approx(-0.2) and mkt[5] == 0.0  # the market did not move on the fifth date


def test_market_model_fit_equals_ols_over_each_window():
    rng = np.random.default_rng(3)
    lengths = np.array([400, 90, 300])
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    mkt = rng.normal(0.0004, 0.01, lengths.sum())
    beta_true = np.repeat([0.5, 1.0, 1.5], lengths)
    stock = 0.0002 + beta_true * mkt + rng.normal(0, 0.015, lengths.sum())
    stock[first] = mkt[first] = np.nan  # first bars
    stock[first[0] + 50] = np.nan  # a missing return
    sums = RunningSums.of(stock, mkt, (first, lengths))
    symbol = np.array([0, 0, 0, 1, 2, 2])
    bars = np.array([10, 200, 399, 80, 250, 299])  # the first too early for a fit, the second spans the hole
    rows = first[symbol] + bars
    alpha, beta = market_model_fit(sums, rows, first[symbol], lengths[symbol], (-250, -21), 100)
    for k, (row, s) in enumerate(zip(rows, symbol)):
        low, high = max(row - 250, first[s]), row - 21
        window = slice(low, max(high + 1, low))
        ok = ~np.isnan(stock[window]) & ~np.isnan(mkt[window])
        if ok.sum() < 100:
            assert np.isnan(alpha[k]) and np.isnan(beta[k])
            continue
        fit = sm.OLS(stock[window][ok], sm.add_constant(mkt[window][ok])).fit()
        assert alpha[k] == pytest.approx(fit.params[0], rel=1e-9, abs=1e-13)
        assert beta[k] == pytest.approx(fit.params[1], rel=1e-9)
    assert np.isnan(alpha[[0, 3]]).all(), "bar 10 and a 90-bar symbol have too short a window"
    assert not np.isnan(alpha[[1, 2, 4, 5]]).any()


def test_expected_returns_are_the_market_or_beta_times_it_never_an_extrapolated_alpha():
    mkt = np.array([[0.01, -0.02], [0.0, np.nan]])
    assert expected_returns(mkt) is mkt
    expected = expected_returns(mkt, np.array([1.5, 0.5]))
    assert expected[0].tolist() == pytest.approx([0.015, -0.03]) and np.isnan(expected[1, 1])
    assert np.isnan(expected_returns(mkt, np.array([np.nan, 1.0]))[0]).all(), "no fit: no abnormal return"


def test_market_membership():
    facts = market_membership(market([0, 30, 5, 30, 25]), 20)
    assert facts == {"first_date": "2024-01-01", "last_date": "2024-01-05",
                     "smallest": {"date": "2024-01-03", "symbols": 5}, "largest": 30, "min_market_symbols": 20,
                     "thin_dates": 1, "dates": 5}


def test_market_model_abnormal_returns_of_a_real_scan_equal_statsmodels(tmp_path, small_universe):
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          detectors=["gap"], benchmark="market_model", estimation_window=[-120, -11],
                          min_estimation_bars=60, min_market_symbols=1)
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    forward = pq.read_table(out / "gap" / "forward.parquet").to_pandas()
    level = pq.read_table(out / "market.parquet").to_pandas().set_index("date")["level"]
    checked = 0
    for symbol, events in forward.groupby("symbol"):
        bars = pd.read_parquet(next((small_universe / f"symbol={symbol}").glob("*.parquet")).parent)
        bars = bars.assign(date=pd.to_datetime(bars["date"])).sort_values("date").reset_index(drop=True)
        stock = bars["close"].pct_change().to_numpy()
        mkt = (level.loc[bars["date"]].to_numpy() / level.loc[bars["date"]].shift(1).to_numpy()) - 1
        rows = bars.index[bars["date"].isin(events["date"])]
        for row, (_, event) in zip(rows, events.iterrows()):
            window = slice(max(row - 120, 1), row - 11 + 1)
            if row - 11 < 1 or window.stop - window.start < 60:
                assert np.isnan(event["abn_5"])
                continue
            fit = sm.OLS(stock[window], sm.add_constant(mkt[window])).fit()
            beta = fit.params[1]  # the slope of the fit with an intercept; its alpha is not extrapolated
            for h in (5, 20):
                if np.isnan(event[f"fwd_{h}"]):
                    continue
                market_h = level[bars["date"][row + h]] / level[bars["date"][row]] - 1
                assert event[f"abn_{h}"] == pytest.approx(event[f"fwd_{h}"] - beta * market_h,
                                                          rel=1e-9, abs=1e-12)
                checked += 1
    assert checked > 50
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["abn_valid"] < summary["valid"]).all(), "events early in a history have no estimation window"
    assert json.loads((out / "run.json").read_text())["config"]["benchmark"] == "market_model"


def test_benchmark_returns_share_one_fit_per_chunk_of_bars():
    mk = market([0, 30, 30, 30, 30], [0, 0.01, 0.02, -0.01, 0.0])
    returns = BenchmarkReturns(mk, Benchmark("market_model", (-3, -1), 2, 1))
    days = np.array([day(i) for i in range(5)], np.int32)
    close = np.array([10.0, 10.2, 10.1, 10.5, 10.4])
    spans = (np.array([0]), np.array([5]))
    returns.returns(days, close, spans, np.array([0]), np.array([5]), np.array([4]), [1])
    fitted = returns._fitted
    returns.returns(days, close, spans, np.array([0]), np.array([5]), np.array([3]), [1])
    assert returns._fitted is fitted
    assert day(0) - GRID_START >= 0


@pytest.mark.parametrize("kind", ["market", "market_model"])
def test_every_bar_gives_the_numbers_of_returns_for_each_bar(kind):
    rng = np.random.default_rng(9)
    lengths = np.array([300, 7, 260])
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    calendar = np.arange(19000, 19400, dtype=np.int32)
    days = np.concatenate([np.sort(rng.choice(calendar, n, replace=False)) for n in lengths]).astype(np.int32)
    close = 50 * np.cumprod(1 + rng.normal(0, 0.02, len(days)))
    dates = np.unique(days)
    mk = pd.DataFrame({"date": dates.astype("datetime64[D]").astype("datetime64[ns]"),
                       "ret": np.r_[0, rng.normal(0, 0.01, len(dates) - 1)],
                       "symbols": np.where(rng.random(len(dates)) < 0.05, 3, 30).astype(np.int32)})
    mk["level"] = np.cumprod(1 + mk["ret"])
    returns = BenchmarkReturns(mk, Benchmark(kind, (-60, -6), 20, 10))
    spans, windows = (first, lengths), [1, 5, 40]
    symbol = np.repeat(np.arange(3), lengths)
    ret, _, expected = returns.returns(days, close, spans, first[symbol], lengths[symbol],
                                       np.arange(len(days)) - first[symbol], windows)
    every = returns.every_bar(days, close, spans, windows)
    assert np.isnan(every).sum() > 100 and (~np.isnan(every)).sum() > 500
    assert every.tobytes() == (ret - expected).tobytes()


def test_each_symbols_fit_depends_on_its_own_bars_only():
    # running sums restart at every symbol: the same symbol's alpha and beta, bit for bit, whatever
    # symbols come before it in its staged chunk (which flush_every decides)
    rng = np.random.default_rng(12)
    a_stock, a_mkt = rng.normal(0, 0.02, 300), rng.normal(0, 0.01, 300)
    b_stock, b_mkt = 3.0 + rng.normal(0, 0.02, 300), rng.normal(0, 0.01, 300)  # large sums before it
    alone = RunningSums.of(b_stock, b_mkt, (np.array([0]), np.array([300])))
    after = RunningSums.of(np.r_[a_stock, b_stock], np.r_[a_mkt, b_mkt], (np.array([0, 300]), np.array([300, 300])))
    fit_alone = market_model_fit(alone, np.array([280]), np.array([0]), np.array([300]), (-250, -21), 100)
    fit_after = market_model_fit(after, np.array([580]), np.array([300]), np.array([300]), (-250, -21), 100)
    assert np.array(fit_alone).tobytes() == np.array(fit_after).tobytes()


def test_a_market_outlier_is_left_out_of_the_fit_too():
    levels = level_grid(market([0, 30, 30, 30, 30], [0, 0.01, 0.02, -0.01, 0.0]))
    thin = thin_grid(market([0, 30, 30, 30, 30]), 20)
    days = np.array([day(i) for i in range(5)], np.int32)
    close = np.array([10.0, 10.2, 5.1, 5.0, 5.05])  # an unadjusted 2:1 split on the third bar
    kept, _ = bar_returns(days, close, np.array([0]), np.array([5]), levels, thin)
    guarded, market_ret = bar_returns(days, close, np.array([0]), np.array([5]), levels, thin, outlier_move=0.8)
    assert kept[2] == pytest.approx(-0.5) and np.isnan(guarded[2]) and np.isnan(market_ret[2])
    assert guarded[3] == kept[3]


def test_outlier_crossings_by_hand():
    # two symbols one after another: A's bar 3 halves (flagged), B's first bar is far from A's last
    # (no return of its own, never flagged), B's bar 2 is a bad print up
    close = np.array([10.0, 10.0, 10.0, 5.0, 5.0, 100.0, 100.0, 250.0, 100.0])
    spans = (np.array([0, 5]), np.array([5, 4]))
    first, length = np.array([0, 0, 0, 5, 5]), np.array([5, 5, 5, 4, 4])
    bars = np.array([0, 2, 3, 0, 3])
    crossed = outlier_crossings(close, spans, first, length, bars, [-2, -1, 1, 2, 40], 0.8)
    assert crossed.tolist() == [[False, False, False, False, True],   # A bar 0: (0, 2] no; to its end yes
                                [False, False, True, True, True],     # A bar 2: bar 3 is in (2, 3]
                                [True, True, False, False, False],    # A bar 3: (1, 3], (2, 3] hold it
                                [False, False, False, True, True],    # B bar 0: its own bar 0 never counts
                                [True, True, False, False, False]]    # B bar 3: its return back is flagged too
    assert not outlier_crossings(close, spans, first, length, bars, [-2, 2], None).any()

"""The market index, abnormal returns, event-time paths and clustered statistics.

Hand-built universes where the answer is known, and cross-checks against statsmodels (an
independent implementation of cluster-robust OLS), both on the pure functions and on a real scan.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from conftest import bars, run_cli, write_config, write_partition
from harness.market import chunk_sums, market_index, outlier_bars
from harness.inference import ONE_WAY_NOTE, difference_estimate
from harness.summary import PathSums
from test_inference import statsmodels_fit

RTOL = 1e-9  # statsmodels solves the same OLS by pinv; the last bits of its sums differ from ours


def test_market_index_by_hand():
    a = (np.array([0, 1, 2], np.int32), np.array([100.0, 110.0, 99.0]))
    b = (np.array([1, 2, 3], np.int32), np.array([50.0, 55.0, 55.0]))
    market = market_index([chunk_sums([a]), chunk_sums([b])])
    assert market["date"].tolist() == list(pd.to_datetime(["1970-01-01", "1970-01-02", "1970-01-03", "1970-01-04"]))
    assert market["symbols"].tolist() == [0, 1, 2, 1]
    expected = [0.0, 0.1, ((99 / 110 - 1) + (55 / 50 - 1)) / 2, 0.0]
    assert market["ret"].tolist() == pytest.approx(expected, rel=1e-15, abs=1e-17)
    assert market["level"].tolist() == pytest.approx(np.cumprod(1 + np.array(expected)).tolist(), rel=1e-15)
    assert market_index([]).empty


def test_path_sums_by_hand_and_band_equals_statsmodels():
    dates = pd.bdate_range("2024-01-01", periods=30).to_numpy()
    sums = PathSums([-1, 0, 2], dates, symbols=12)
    ret = np.array([[-0.01, 0.0, 0.03], [0.02, 0.0, np.nan], [0.0, 0.0, -0.01]])
    abn = np.array([[-0.01, 0.0, 0.02], [0.01, 0.0, np.nan], [np.nan, 0.0, -0.03]])  # no market for event 3 at -1
    sums.add(dates[[1, 1, 3]], np.array([0, 4, 4]), ret, abn)
    table = sums.paths("d")
    assert table["offset"].tolist() == [-1, 0, 2] and table["events"].tolist() == [3, 3, 2]
    assert table["abn_events"].tolist() == [2, 3, 2]
    assert table["mean_ret"].tolist() == pytest.approx([0.01 / 3, 0.0, 0.01])
    assert table["mean_abn"].tolist() == pytest.approx([0.0, 0.0, -0.005])
    assert table["abn_low"].isna().all(), "two dates and two symbols: no band"
    # enough clusters: the band is the t(G - 1) interval of statsmodels' two-way clustered mean
    rng = np.random.default_rng(2)
    events, symbols = 300, rng.integers(0, 12, 300)
    rows = np.sort(rng.choice(30 * 12, events, replace=False))  # one event per (symbol, date)
    event_dates, symbols = dates[rows % 30], rows // 30
    ret = rng.normal(0.0, 0.03, (events, 3)) + 0.02 * rng.normal(size=30)[rows % 30][:, None]
    abn = np.where(rng.random((events, 3)) < 0.1, np.nan, ret - 0.001)
    sums = PathSums([-1, 0, 2], dates, symbols=12)
    sums.add(event_dates[:100], symbols[:100], ret[:100], abn[:100])
    sums.add(event_dates[100:], symbols[100:], ret[100:], abn[100:])
    table = sums.paths("d")
    for k in range(3):
        ok = ~np.isnan(abn[:, k])
        fit = statsmodels_fit(abn[ok, k], event_dates[ok], symbols[ok])
        half = float(fit.bse[0]) * stats.t.ppf(0.975, fit.df_resid_inference)
        assert table.loc[k, "abn_high"] - table.loc[k, "mean_abn"] == pytest.approx(half, rel=RTOL)
        assert table.loc[k, "mean_abn"] - table.loc[k, "abn_low"] == pytest.approx(half, rel=RTOL)


def scan_universe(tmp_path, frames: dict[str, pd.DataFrame], detectors: list[str], **keys):
    data = tmp_path / "data"
    for symbol, frame in frames.items():
        write_partition(data, symbol, frame)
    tmp_path.mkdir(parents=True, exist_ok=True)
    keys = {"min_market_symbols": 1, **keys}  # a market of two or three symbols, as these hand-made ones are
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(data), out_dir=str(tmp_path / "out"),
                          detectors=detectors, forward_windows=[1, 2], **keys)
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "out"


def test_abnormal_return_is_exactly_zero_when_the_stock_is_the_market(tmp_path):
    close = [100.0] * 5 + [110.0] * 5  # one market move, on the sixth day, for both symbols
    out = scan_universe(tmp_path, {"A": bars(close=close), "B": bars(close=close)}, ["user_detectors:every_bar"],
                        path_offsets=[-2, 3])
    forward = pq.read_table(out / "user_detectors.every_bar" / "forward.parquet").to_pandas()
    assert forward["fwd_1"].abs().max() > 0.09  # the move is in the forward returns ...
    for h in (1, 2):
        valid = forward[f"fwd_{h}"].notna()
        assert (forward.loc[valid, f"abn_{h}"] == 0.0).all()  # ... and nothing of it is abnormal
        assert forward.loc[~valid, f"abn_{h}"].isna().all()
    market = pq.read_table(out / "market.parquet").to_pandas()
    assert list(market.columns) == ["date", "ret", "symbols", "level"]
    assert market["symbols"].tolist() == [0] + [2] * 9 and market["level"].iloc[0] == 1.0
    assert market["level"].iloc[-1] == pytest.approx(1.1)
    paths = pd.read_csv(out / "paths.csv")
    assert paths["offset"].tolist() == [-2, -1, 0, 1, 2, 3]
    assert (paths["mean_abn"] == 0.0).all() and (paths["mean_ret"].abs() > 0).any()
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["abn_mean"] == 0.0).all() and (summary["mean"] > 0).all()


def test_a_symbol_with_missing_days_is_measured_against_the_market_over_its_own_dates(tmp_path):
    rng = np.random.default_rng(1)
    full = {s: bars(close=100 * np.cumprod(1 + rng.normal(0, 0.02, 12))) for s in ("A", "B")}
    gappy = bars(close=100 * np.cumprod(1 + rng.normal(0, 0.02, 12))).drop(index=[4, 5]).reset_index(drop=True)
    out = scan_universe(tmp_path, {**full, "C": gappy}, ["user_detectors:every_bar"])
    forward = pq.read_table(out / "user_detectors.every_bar" / "forward.parquet").to_pandas()
    level = pq.read_table(out / "market.parquet").to_pandas().set_index("date")["level"]
    c = forward[forward["symbol"] == "C"].reset_index(drop=True)
    dates = gappy["date"].tolist()
    for i in range(len(c) - 2):
        for h in (1, 2):
            expected = c.loc[i, f"fwd_{h}"] - (level[dates[i + h]] / level[dates[i]] - 1)
            assert c.loc[i, f"abn_{h}"] == expected
    # bar 3 -> bar 4 of C spans the two missing days: the market over three days, not one
    assert level[dates[4]] / level[dates[3]] != level[full["A"]["date"][4]] / level[full["A"]["date"][3]]


def test_summary_paths_and_quantiles_of_a_real_scan_equal_statsmodels(tmp_path, small_universe):
    detectors = ["user_detectors:every_bar", "user_detectors:every_other_bar", "gap"]
    # 18 symbols on 218 of the dates (IPOs, a delisting): no abnormal return across them
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          detectors=detectors, min_market_symbols=19)
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    summary = pd.read_csv(out / "summary.csv").set_index(["detector", "window"])
    paths = pd.read_csv(out / "paths.csv").set_index(["detector", "offset"])
    quantiles = pd.read_csv(out / "quantiles.csv", dtype={"quantile": str}).set_index(["detector", "window", "quantile"])
    run = json.loads((out / "run.json").read_text())
    frames = {d: pq.read_table(out / d.replace(":", ".") / "forward.parquet").to_pandas() for d in detectors}
    every = frames["user_detectors:every_bar"]
    assert every["abn_5"].isna().sum() > every["fwd_5"].isna().sum(), "some spans cross a thin market date"
    assert run["market"]["thin_dates"] > 0 and run["market"]["smallest"]["symbols"] == 18
    for detector, frame in frames.items():
        for h in (5, 20):
            valid, good = frame[frame[f"fwd_{h}"].notna()], frame[frame[f"abn_{h}"].notna()]
            row = summary.loc[(detector, h)]
            assert row["t_clustered"] == pytest.approx(
                statsmodels_fit(valid[f"fwd_{h}"], valid["date"], valid["symbol"]).tvalues[0], rel=RTOL)
            fit = statsmodels_fit(good[f"abn_{h}"], good["date"], good["symbol"])
            assert row["abn_valid"] == len(good) and row["abn_mean"] == pytest.approx(fit.params[0], rel=1e-12)
            assert row["abn_se"] == pytest.approx(fit.bse[0], rel=RTOL) and row["abn_t"] == pytest.approx(fit.tvalues[0], rel=RTOL)
            assert row["abn_p"] == pytest.approx(fit.pvalues[0], rel=1e-8) and row["abn_df"] == fit.df_resid_inference
            assert row["market_mean"] == pytest.approx((good[f"fwd_{h}"] - good[f"abn_{h}"]).mean(), rel=1e-9)
            # the sign test: the share of positive abnormal returns against that over every symbol-day,
            # which is every_bar's share
            null = (every[f"abn_{h}"] > 0).sum() / every[f"abn_{h}"].notna().sum()
            assert row["null_hit_rate"] == pytest.approx(null, rel=1e-12)
            assert row["sign_t"] == pytest.approx(statsmodels_fit((good[f"abn_{h}"] > 0) - null, good["date"],
                                                                  good["symbol"]).tvalues[0], rel=RTOL)
            # the path at offset h is the abnormal return at window h
            path = paths.loc[(detector, h)]
            assert path["events"] == len(valid) and path["abn_events"] == len(good)
            assert path["mean_abn"] == pytest.approx(fit.params[0], rel=1e-12)
            half = fit.bse[0] * stats.t.ppf(0.975, fit.df_resid_inference)
            assert path["abn_high"] - path["mean_abn"] == pytest.approx(half, rel=RTOL)
    holm = summary["abn_p"].notna()
    np.testing.assert_allclose(summary.loc[holm, "abn_p_holm"], multipletests(summary.loc[holm, "abn_p"], method="holm")[1],
                               rtol=1e-12)
    np.testing.assert_allclose(summary.loc[holm, "abn_q_bh"], multipletests(summary.loc[holm, "abn_p"],
                                                                            method="fdr_bh")[1], rtol=1e-12)
    base, variant = (frames[d] for d in ("user_detectors:every_bar", "user_detectors:every_other_bar"))
    for h in (5, 20):
        b, v = base[base[f"abn_{h}"].notna()], variant[variant[f"abn_{h}"].notna()]
        fit = statsmodels_fit(np.concatenate([b[f"abn_{h}"], v[f"abn_{h}"]]), np.concatenate([b["date"], v["date"]]),
                              np.concatenate([b["symbol"], v["symbol"]]), np.concatenate([np.zeros(len(b)), np.ones(len(v))]))
        row = summary.loc[("user_detectors:every_other_bar", h)]
        assert row["vs_baseline"] == pytest.approx(fit.params[1], rel=1e-9)
        # a variant that is a filter of its baseline, with overlapping windows: the two-way variance
        # is negative (statsmodels: no standard error), the larger one-way one stands in
        assert math.isnan(fit.bse[1]) and row["note"] == f"vs baseline: {ONE_WAY_NOTE}"
        one_way = max(sm.OLS(fit.model.endog, fit.model.exog).fit(cov_type="cluster", cov_kwds={"groups": groups}).bse[1]
                      for groups in pd.factorize(np.concatenate([b["date"], v["date"]]))[:1]
                      + pd.factorize(np.concatenate([b["symbol"], v["symbol"]]))[:1])
        assert row["vs_baseline_se"] == pytest.approx(one_way, rel=RTOL)
        assert row["vs_baseline_p"] == pytest.approx(2 * stats.t.sf(abs(row["vs_baseline_t"]), fit.df_resid_inference),
                                                     rel=1e-8)
    # gap against every_bar: disjoint enough for a positive two-way variance
    g = frames["gap"][frames["gap"]["abn_20"].notna()]
    b = base[base["abn_20"].notna()]
    fit = statsmodels_fit(np.concatenate([b["abn_20"], g["abn_20"]]), np.concatenate([b["date"], g["date"]]),
                          np.concatenate([b["symbol"], g["symbol"]]), np.concatenate([np.zeros(len(b)), np.ones(len(g))]))
    mine = difference_estimate(b["abn_20"].to_numpy(), b["date"].to_numpy(), pd.factorize(b["symbol"])[0],
                               g["abn_20"].to_numpy(), g["date"].to_numpy(),
                               pd.Index(pd.factorize(b["symbol"])[1]).get_indexer(g["symbol"]))
    assert mine.note == "" and mine.t == pytest.approx(fit.tvalues[1], rel=RTOL)
    assert mine.p == pytest.approx(fit.pvalues[1], rel=1e-8)
    # score quintiles of gap: ranks of its scores, tied scores in the lower quintile
    events = pq.read_table(out / "gap" / "events.parquet").to_pandas()
    gap = frames["gap"].assign(score=events["score"])
    ranks = gap["score"].rank(method="min").to_numpy() - 1
    gap["quintile"] = (ranks * 5 // len(gap) + 1).astype(int)
    for h in (5, 20):
        good = gap[gap[f"abn_{h}"].notna()]
        for q in range(1, 6):
            mine, row = good[good["quintile"] == q], quantiles.loc[("gap", h, str(q))]
            assert row["events"] == len(mine) and row["abn_mean"] == pytest.approx(mine[f"abn_{h}"].mean(), rel=1e-12)
            assert row["abn_t"] == pytest.approx(statsmodels_fit(mine[f"abn_{h}"], mine["date"], mine["symbol"]).tvalues[0],
                                                 rel=RTOL)
        low, high = good[good["quintile"] == 1], good[good["quintile"] == 5]
        fit = statsmodels_fit(np.concatenate([low[f"abn_{h}"], high[f"abn_{h}"]]),
                              np.concatenate([low["date"], high["date"]]), np.concatenate([low["symbol"], high["symbol"]]),
                              np.concatenate([np.zeros(len(low)), np.ones(len(high))]))
        spread = quantiles.loc[("gap", h, "5-1")]
        assert spread["abn_mean"] == pytest.approx(fit.params[1], rel=1e-9)
        assert spread["abn_t"] == pytest.approx(fit.tvalues[1], rel=RTOL)


def test_bars_with_a_time_of_day_count_as_their_dates(tmp_path):
    rng = np.random.default_rng(3)
    frames = {s: bars(close=100 * np.cumprod(1 + rng.normal(0, 0.02, 12))) for s in ("A", "B")}
    timed = {s: f.assign(date=f["date"] + pd.Timedelta(hours=16)) for s, f in frames.items()}
    plain = scan_universe(tmp_path / "plain", frames, ["user_detectors:every_bar"])
    at_four = scan_universe(tmp_path / "timed", timed, ["user_detectors:every_bar"])
    for name in ("user_detectors.every_bar/forward.parquet", "market.parquet"):
        assert (at_four / name).read_bytes() == (plain / name).read_bytes()
    assert pd.read_csv(at_four / "paths.csv").equals(pd.read_csv(plain / "paths.csv"))
    run = json.loads((at_four / "run.json").read_text())
    assert run["repairs"] == {"A": {"time_of_day": 12}, "B": {"time_of_day": 12}}


def test_path_sums_added_chunk_by_chunk_have_the_bits_of_dense_sums():
    # add() sums only the dates and symbols a chunk has events on; the reference adds whole-grid bincounts
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2020-01-01", periods=300).to_numpy()
    offsets = [-2, 0, 3]
    sums = PathSums(offsets, dates, symbols=50)
    dense_ret, dense_abn, dense_symbol = np.zeros((300, 3)), np.zeros((300, 3)), np.zeros((50, 3))
    for size in (40, 0, 7, 120):
        rows, symbols = rng.integers(0, 300, size), rng.integers(0, 50, size)
        ret = np.where(rng.random((size, 3)) < 0.1, np.nan, rng.normal(0, 0.02, (size, 3)))
        abn = np.where(rng.random((size, 3)) < 0.1, np.nan, ret - rng.normal(0, 0.01, (size, 3)))
        sums.add(dates[rows], symbols, ret, abn)
        for values, keys, dense, length in ((ret, rows, dense_ret, 300), (abn, rows, dense_abn, 300),
                                            (abn, symbols, dense_symbol, 50)):
            ok = ~np.isnan(values)
            cells = (keys[:, None] * 3 + np.arange(3)[None, :])[ok]
            dense += np.bincount(cells, weights=values[ok], minlength=3 * length).reshape(length, 3)
    assert sums.ret.tobytes() == dense_ret.tobytes() and sums.abn.tobytes() == dense_abn.tobytes()
    assert sums.symbol_abn.tobytes() == dense_symbol.tobytes()


def test_outlier_bars():
    close = np.array([100.0, 50.0, 51.0, 92.0, 0.0001, 80.0])
    assert outlier_bars(close, 0.8).tolist() == [False, True, False, True, True, True]
    assert not outlier_bars(close, None).any() and outlier_bars(close[:1], 0.8).tolist() == [False]


def test_an_unadjusted_split_and_a_bad_tick_stay_out_of_the_market_and_are_named(tmp_path):
    rng = np.random.default_rng(11)
    frames = {f"S{n:02d}": bars(close=100 * np.cumprod(1 + rng.normal(0, 0.01, 40))) for n in range(12)}
    split = frames["S03"]["close"].to_numpy().copy()
    split[20:] /= 2  # a 2:1 split the data vendor did not adjust
    frames["S03"] = bars(close=split)
    tick = frames["S07"]["close"].to_numpy().copy()
    tick[30] = 0.0001  # one bad print
    frames["S07"] = bars(close=tick)
    out = scan_universe(tmp_path, frames, ["gap"])
    market = pq.read_table(out / "market.parquet").to_pandas()
    dates = frames["S00"]["date"]
    returns = pd.DataFrame({s: f["close"].pct_change().to_numpy() for s, f in frames.items()}, index=dates)
    for day, left_out in ((20, "S03"), (30, "S07"), (31, "S07")):
        row = market[market["date"] == dates[day]].iloc[0]
        assert row["symbols"] == 11
        assert row["ret"] == pytest.approx(returns.drop(columns=left_out).iloc[day].mean(), rel=1e-12)
    assert abs(market["ret"]).max() < 0.05
    run = json.loads((out / "run.json").read_text())
    assert run["market_outliers"]["count"] == 3
    assert [(b["symbol"], b["date"]) for b in run["market_outliers"]["bars"]] == [
        ("S03", str(dates[20].date())), ("S07", str(dates[30].date())), ("S07", str(dates[31].date()))]
    proc = run_cli("--config", str(tmp_path / "c.yaml"), "--workers", "1")
    assert f"\n3 bar return(s) beyond +80% / -44% were left out of the market index (market_outlier_move): S03 " \
           f"{dates[20].date()} -50.3%, S07 {dates[30].date()} -100.0%, S07 {dates[31].date()} " in proc.stdout, proc.stdout

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
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import bars, run_cli, write_config, write_partition
from harness.market import chunk_sums, market_index
from harness.summary import PathSums, _cluster_ids, clustered_difference_t, clustered_mean_t, return_stats

RTOL = 1e-9  # statsmodels solves the same OLS by pinv; the last bits of its sums differ from ours


def statsmodels_fit(y, groups, dummy=None):
    exog = np.ones((len(y), 1)) if dummy is None else np.column_stack([np.ones(len(y)), dummy])
    return sm.OLS(np.asarray(y), exog).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(np.asarray(groups))[0]})


def statsmodels_t(y, groups, dummy=None) -> float:
    return float(statsmodels_fit(y, groups, dummy).tvalues[-1])


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


def test_clustered_t_equals_statsmodels():
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 40, 500)
    y = rng.normal(0.01, 0.05, 500) + 0.03 * rng.normal(size=40)[groups]
    assert clustered_mean_t(y, groups) == pytest.approx(statsmodels_t(y, groups), rel=RTOL)
    other_groups = rng.integers(0, 40, 300)
    other = rng.normal(0.02, 0.05, 300) + 0.03 * rng.normal(size=40)[other_groups]
    stacked = np.concatenate([y, other])
    dummy = np.concatenate([np.zeros(500), np.ones(300)])
    assert clustered_difference_t(y, groups, other, other_groups) == pytest.approx(
        statsmodels_t(stacked, np.concatenate([groups, other_groups]), dummy), rel=RTOL)


def test_clustered_t_edge_cases():
    assert math.isnan(clustered_mean_t(np.array([0.1, 0.2]), np.array([1, 1])))  # one cluster
    assert math.isnan(clustered_mean_t(np.array([]), np.array([])))
    assert math.isnan(clustered_difference_t(np.array([]), np.array([]), np.array([0.1]), np.array([1])))


def test_crowded_events_get_a_smaller_clustered_t_than_spread_ones():
    # 20 events whose returns share a shock per date: crowded on 4 dates, or each on its own date
    shocks = np.repeat([0.05, 0.01, -0.02, 0.04], 5)
    values = shocks + np.tile([0.001, -0.002, 0.003, 0.0, -0.001], 4)
    spread = clustered_mean_t(values, np.arange(20))
    crowded = clustered_mean_t(values, np.repeat(np.arange(4), 5))
    assert 0 < crowded < spread / 1.5


def test_path_sums_by_hand_and_band_equals_statsmodels():
    dates = pd.bdate_range("2024-01-01", periods=6).to_numpy()
    sums = PathSums([-1, 0, 2], dates)
    ret = np.array([[-0.01, 0.0, 0.03], [0.02, 0.0, np.nan], [0.0, 0.0, -0.01]])
    mkt = np.array([[0.0, 0.0, 0.01], [0.01, 0.0, np.nan], [0.0, 0.0, 0.02]])
    sums.add(dates[[1, 1, 3]], ret, mkt)
    table = sums.paths("d")
    assert table["offset"].tolist() == [-1, 0, 2] and table["events"].tolist() == [3, 3, 2]
    assert table["mean_ret"].tolist() == pytest.approx([0.01 / 3, 0.0, 0.01])
    assert table["mean_abn"].tolist() == pytest.approx([0.0, 0.0, -0.005])
    for k, abn, groups in ((0, [-0.01, 0.01, 0.0], [1, 1, 3]), (2, [0.02, -0.03], [1, 3])):
        se = float(statsmodels_fit(abn, groups).bse[0])
        assert table.loc[k, "abn_high"] - table.loc[k, "mean_abn"] == pytest.approx(1.959963984540054 * se, rel=RTOL)
        assert table.loc[k, "mean_abn"] - table.loc[k, "abn_low"] == pytest.approx(1.959963984540054 * se, rel=RTOL)


def scan_universe(tmp_path, frames: dict[str, pd.DataFrame], detectors: list[str], **keys):
    data = tmp_path / "data"
    for symbol, frame in frames.items():
        write_partition(data, symbol, frame)
    tmp_path.mkdir(parents=True, exist_ok=True)
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


def test_summary_and_paths_of_a_real_scan_equal_statsmodels(tmp_path, small_universe):
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          detectors=["user_detectors:every_bar", "user_detectors:every_other_bar", "gap"])
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    summary = pd.read_csv(out / "summary.csv").set_index(["detector", "window"])
    paths = pd.read_csv(out / "paths.csv").set_index(["detector", "offset"])
    frames = {d: pq.read_table(out / d.replace(":", ".") / "forward.parquet").to_pandas()
              for d in ("user_detectors:every_bar", "user_detectors:every_other_bar", "gap")}
    for detector, frame in frames.items():
        for h in (5, 20):
            valid = frame[frame[f"fwd_{h}"].notna()]
            row = summary.loc[(detector, h)]
            assert row["t_clustered"] == pytest.approx(statsmodels_t(valid[f"fwd_{h}"].to_numpy(), valid["date"]), rel=RTOL)
            assert row["abn_t"] == pytest.approx(statsmodels_t(valid[f"abn_{h}"].to_numpy(), valid["date"]), rel=RTOL)
            assert row["abn_mean"] == pytest.approx(valid[f"abn_{h}"].mean(), rel=1e-12)
            assert row["market_mean"] == pytest.approx((valid[f"fwd_{h}"] - valid[f"abn_{h}"]).mean(), rel=1e-9)
            # the path at offset h is the forward return at window h
            path = paths.loc[(detector, h)]
            assert path["events"] == len(valid)
            assert path["mean_abn"] == pytest.approx(valid[f"abn_{h}"].mean(), rel=1e-12)
            assert path["abn_high"] - path["mean_abn"] == pytest.approx(
                1.959963984540054 * abs(path["mean_abn"] / row["abn_t"]), rel=RTOL)
    base, variant = (frames[d] for d in ("user_detectors:every_bar", "user_detectors:every_other_bar"))
    for h in (5, 20):
        b, v = base[base[f"fwd_{h}"].notna()], variant[variant[f"fwd_{h}"].notna()]
        y = np.concatenate([b[f"abn_{h}"], v[f"abn_{h}"]])
        dummy = np.concatenate([np.zeros(len(b)), np.ones(len(v))])
        groups = np.concatenate([b["date"], v["date"]])
        row = summary.loc[("user_detectors:every_other_bar", h)]
        assert row["vs_baseline"] == pytest.approx(v[f"abn_{h}"].mean() - b[f"abn_{h}"].mean(), rel=1e-9)
        assert row["vs_baseline_t"] == pytest.approx(statsmodels_t(y, groups, dummy), rel=RTOL)
    # a universe that drifts up: raw means are positive, the market takes most of it away
    every = summary.loc[("user_detectors:every_bar", 20)]
    assert every["mean"] > 0 and abs(every["abn_mean"]) < every["mean"] / 5


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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=60), st.sampled_from(["int", "int8", "midnight", "time of day"]))
def test_cluster_ids_number_the_labels_in_sorted_order_as_np_unique_does(labels, kind):
    groups = np.array(labels, dtype=np.int64)
    if kind == "int8":  # a difference of two labels may overflow int8
        groups = (groups % 201 - 100).astype(np.int8)
    elif kind != "int":
        groups = np.datetime64("2001-01-01", "ns") + groups.astype("timedelta64[D]")
        if kind == "time of day":  # two times of one day are two clusters
            groups = groups + (np.arange(len(groups)) % 2).astype("timedelta64[h]")
    ids, clusters = _cluster_ids(groups)
    expected = np.unique(groups, return_inverse=True)[1].reshape(-1)
    assert ids.tolist() == expected.tolist() and clusters == len(set(groups.tolist()))


def test_path_sums_added_chunk_by_chunk_have_the_bits_of_dense_sums():
    # add() sums only the dates a chunk has events on; the reference adds a whole-grid bincount
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2020-01-01", periods=300).to_numpy()
    offsets = [-2, 0, 3]
    sums = PathSums(offsets, dates)
    dense_ret, dense_abn = np.zeros((300, 3)), np.zeros((300, 3))
    for size in (40, 0, 7, 120):
        rows = rng.integers(0, 300, size)
        ret = np.where(rng.random((size, 3)) < 0.1, np.nan, rng.normal(0, 0.02, (size, 3)))
        mkt = rng.normal(0, 0.01, (size, 3))
        sums.add(dates[rows], ret, mkt)
        ok = ~np.isnan(ret)
        cells = (rows[:, None] * 3 + np.arange(3)[None, :])[ok]
        dense_ret += np.bincount(cells, weights=ret[ok], minlength=900).reshape(300, 3)
        dense_abn += np.bincount(cells, weights=ret[ok] - mkt[ok], minlength=900).reshape(300, 3)
    assert sums.ret.tobytes() == dense_ret.tobytes() and sums.abn.tobytes() == dense_abn.tobytes()


def test_no_t_statistic_from_rounding_noise():
    # a one-symbol universe: the market is the stock, so fwd - mkt is 0 but for rounding (~1e-17)
    rng = np.random.default_rng(7)
    raw = rng.normal(0.01, 0.05, 300)
    noise = raw - (raw + 1e-3 - 1e-3)
    assert np.abs(noise).max() < 1e-16 and np.abs(noise).max() > 0
    groups = rng.integers(0, 50, 300)
    assert math.isnan(clustered_mean_t(noise, groups))
    assert math.isnan(clustered_difference_t(noise, groups, noise[::2], groups[::2]))
    assert math.isnan(return_stats(noise)["t_stat"])
    # real returns of the smallest size this tool sees still get theirs
    assert abs(clustered_mean_t(raw * 1e-4, groups)) > 0 and abs(return_stats(raw * 1e-4)["t_stat"]) > 0

"""harness.stats.market: the market index, outlier bars, and abnormal returns against it.

Hand-built universes where the answer is known (the event-time paths and clustered statistics
are in tests/test_summary.py).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import bars, run_cli, write_config, write_partition
from harness.stats.market import chunk_sums, market_index, outlier_bars



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


def test_outlier_bars():
    close = np.array([100.0, 50.0, 51.0, 92.0, 0.0001, 80.0])
    assert outlier_bars(close, 0.8).tolist() == [False, True, False, True, True, True]
    assert not outlier_bars(close, None).any() and outlier_bars(close[:1], 0.8).tolist() == [False]


def split_and_bad_tick() -> dict[str, pd.DataFrame]:
    """12 symbols x 40 bars; S03 halves at bar 20 (an unadjusted 2:1 split), S07 prints 0.0001 at bar 30."""
    rng = np.random.default_rng(11)
    frames = {f"S{n:02d}": bars(close=100 * np.cumprod(1 + rng.normal(0, 0.01, 40))) for n in range(12)}
    split = frames["S03"]["close"].to_numpy().copy()
    split[20:] /= 2  # a 2:1 split the data vendor did not adjust
    frames["S03"] = bars(close=split)
    tick = frames["S07"]["close"].to_numpy().copy()
    tick[30] = 0.0001  # one bad print
    frames["S07"] = bars(close=tick)
    return frames


def test_an_unadjusted_split_and_a_bad_tick_stay_out_of_the_market_and_are_named(tmp_path):
    frames = split_and_bad_tick()
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


def test_events_whose_window_crosses_a_flagged_bar_are_counted_and_left_out_on_request(tmp_path):
    # An event on every bar: at 1 bar the windows (19, 20] of S03 and (29, 30], (30, 31] of S07 cross
    # a flagged bar (3 events); at 2 bars (18, 20], (19, 21], (28, 30], (29, 31], (30, 32] (5).
    frames = split_and_bad_tick()
    kept = scan_universe(tmp_path / "kept", frames, ["user_detectors:every_bar"])
    left_out = scan_universe(tmp_path / "left_out", frames, ["user_detectors:every_bar"], exclude_flagged=True)
    for name in ("events.parquet", "forward.parquet"):  # the files keep every event, byte for byte
        assert (kept / "user_detectors.every_bar" / name).read_bytes() == \
            (left_out / "user_detectors.every_bar" / name).read_bytes()
    both = [pd.read_csv(out / "summary.csv").set_index("window") for out in (kept, left_out)]
    for summary in both:
        assert summary["flagged"].to_dict() == {1: 3, 2: 5}
    assert (both[1]["valid"] == both[0]["valid"] - both[0]["flagged"]).all()
    assert (both[1]["abn_valid"] == both[0]["abn_valid"] - both[0]["flagged"]).all()
    assert both[0]["abn_mean"].abs().max() > 0.01, "the split and the bad print weigh on the mean when kept"
    assert both[1]["abn_mean"].abs().max() < 0.01
    forward = pd.read_parquet(kept / "user_detectors.every_bar" / "forward.parquet")
    crossing = forward[(forward["symbol"] == "S03") & (forward["date"] == frames["S03"]["date"][19])]
    assert crossing["fwd_1"].iloc[0] == pytest.approx(-0.5, abs=0.03), "the file keeps the split's return"
    paths = [pd.read_csv(out / "paths.csv").set_index("offset") for out in (kept, left_out)]
    assert (paths[1]["events"] <= paths[0]["events"]).all()
    assert (paths[1].loc[1:30, "events"] < paths[0].loc[1:30, "events"]).all()
    assert (paths[1].loc[-20:-1, "events"] < paths[0].loc[-20:-1, "events"]).all()

"""harness.stats.summary: return statistics, the summary table, event-time path sums and score
quantiles, by hand and against statsmodels."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from conftest import run_cli, statsmodels_fit, write_config
from harness.stats.inference import ONE_WAY_NOTE, difference_estimate
from harness.stats.summary import (LOOKS_AHEAD, STATISTICS, SUMMARY_COLUMNS, SUMMARY_LEGEND, PathSums,
                                   WindowInputs, detector_columns, detector_summary, format_summary, is_significant,
                                   return_stats, summarize)

RTOL = 1e-9  # statsmodels solves the same OLS by pinv; the last bits of its sums differ from ours


def test_return_stats_by_hand():
    stats = return_stats(np.array([0.1, -0.1, 0.3, np.nan]))
    assert stats["valid"] == 3
    assert stats["mean"] == pytest.approx(0.1)
    assert stats["median"] == pytest.approx(0.1)
    assert stats["std"] == pytest.approx(0.2)
    assert stats["t_stat"] == pytest.approx(0.1 / (0.2 / math.sqrt(3)))
    assert stats["hit_rate"] == pytest.approx(2 / 3)


def test_return_stats_edge_cases():
    assert return_stats(np.array([np.nan]))["valid"] == 0 and math.isnan(return_stats(np.array([]))["mean"])
    one = return_stats(np.array([0.5]))
    assert one["mean"] == 0.5 and math.isnan(one["std"]) and math.isnan(one["t_stat"])
    flat = return_stats(np.array([0.0, 0.0]))
    assert flat["hit_rate"] == 0.0 and math.isnan(flat["t_stat"])


def frame(fwd, mkt=None, dates=None) -> pd.DataFrame:
    """Event rows as summarize() takes them, for window 5: date, symbol, score, fwd_5, mkt_5, abn_5."""
    fwd = np.asarray(fwd, dtype="float64")
    mkt = np.zeros(len(fwd)) if mkt is None else np.asarray(mkt, dtype="float64")
    dates = pd.bdate_range("2024-01-01", periods=len(fwd)) if dates is None else pd.to_datetime(dates)
    return pd.DataFrame({"date": dates, "symbol": np.zeros(len(fwd), np.int32), "score": np.arange(len(fwd)) * 1.0,
                         "fwd_5": fwd, "mkt_5": np.where(np.isnan(fwd), np.nan, mkt), "abn_5": fwd - mkt})


def test_summarize_puts_baseline_beside_variant():
    base = frame([0.1, 0.3], mkt=[0.05, 0.05])
    variant = frame([0.2, np.nan, -0.1], mkt=[0.1, 0.0, -0.1])
    table = summarize({"b": base, "v": variant}, [5], {"b": None, "v": "b"}, symbols=7, failed_symbols=1)
    assert table["events"].tolist() == [2, 3] and table["valid"].tolist() == [2, 2]
    assert math.isnan(table.loc[0, "baseline_mean"]) and math.isnan(table.loc[0, "vs_baseline"])
    assert table.loc[1, "baseline_mean"] == pytest.approx(0.2) and table.loc[1, "mean"] == pytest.approx(0.05)
    assert table["market_mean"].tolist() == pytest.approx([0.05, 0.0])
    assert table["abn_mean"].tolist() == pytest.approx([0.15, 0.05])
    assert table.loc[1, "vs_baseline"] == pytest.approx(0.05 - 0.15)
    assert table["abn_hit_rate"].tolist() == pytest.approx([1.0, 0.5])
    assert table["symbols"].tolist() == [7, 7] and table["failed_symbols"].tolist() == [1, 1]
    text = format_summary(table)
    assert "+15.00%" in text and "+5.00%" in text and "-10.00% vs b" in text


def test_summarize_takes_the_detector_tables_it_is_given_and_computes_the_others():
    events = {"b": frame([0.1, 0.3], mkt=[0.05, 0.05]), "v": frame([0.2, np.nan, -0.1], mkt=[0.1, 0.0, -0.1])}
    whole = summarize(events, [5], {"b": None, "v": "b"})
    given = {"v": detector_summary(events["v"], [5], {})}
    assert summarize(events, [5], {"b": None, "v": "b"}, detector_tables=given).equals(whole)
    # a given table is used as it is (harness.finish's jobs computed it); the comparison, a test
    # over both detectors' events, from the events
    doctored = given["v"].assign(abn_mean=1.0)
    table = summarize(events, [5], {"b": None, "v": "b"}, detector_tables={"v": doctored})
    assert table.loc[1, "abn_mean"] == 1.0 and table.loc[1, "vs_baseline"] == pytest.approx(0.05 - 0.15)
    assert table.loc[0].equals(whole.loc[0])


def test_variant_whose_baseline_did_not_run_has_nan_baseline_columns():
    table = summarize({"v": frame([0.1])}, [5], {"v": "b"})
    assert math.isnan(table.loc[0, "baseline_mean"]) and math.isnan(table.loc[0, "vs_baseline_t"])


def test_the_printed_summary_stars_by_the_holm_adjusted_p_and_never_a_row_without_t():
    table = pd.DataFrame({
        "detector": ["a", "b", "c"], "window": [5, 5, 5], "events": [100, 100, 3], "mean": [0.01, 0.01, 0.02],
        "abn_valid": [100, 87, 3], "abn_mean": [0.01, 0.01, 0.02], "abn_t": [2.5, 2.5, np.nan],
        "abn_p_holm": [0.04, 0.06, np.nan], "baseline": ["", "a", ""], "vs_baseline": [np.nan, 0.0, np.nan],
        "vs_baseline_t": [np.nan, 3.0, np.nan], "vs_p_holm": [np.nan, 0.2, np.nan],
        "note": ["", "", "3 event dates: no t below 10"]})
    # the stars of summary.csv, as summarize() sets them (a detector that looks ahead gets none)
    table["abn_significant"] = [is_significant(p) for p in table["abn_p_holm"]]
    table["vs_significant"] = [is_significant(p) for p in table["vs_p_holm"]]
    text = format_summary(table)
    assert text == format_summary(table)  # deterministic
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:9] == ["detector", "window", "events", "mean", "abn", "n", "abn", "mean", "abn"]
    assert "p (Holm)" in lines[0] and lines[0].index("abn t") < lines[0].index("p (Holm)") < lines[0].index("vs t")
    assert "2.50*" in lines[1] and " 0.040 " in lines[1]        # raw p ~1%, Holm 4%: starred
    assert "2.50 " in lines[2] and "2.50*" not in lines[2]       # the same t, Holm 6%: not starred
    assert "0.060" in lines[2]
    assert "3.00 " in lines[2] and "3.00*" not in lines[2]       # a comparison by its own family's Holm p
    assert " - " in lines[3] and "*" not in lines[3] and "3 event dates: no t below 10" in lines[3]
    # both counts: all events, and those with an abnormal return (which abn mean and abn t use)
    assert lines[2].split()[:5] == ["b", "5", "100", "+1.00%", "87"]
    # one line of legend under the table, saying what *, '-' and abn n mean
    assert len(lines) == 5 and lines[4] == SUMMARY_LEGEND
    assert SUMMARY_LEGEND.startswith("*: p (Holm) < 5%") and "-: no test" in SUMMARY_LEGEND \
        and "abn n: events with an abnormal return, used by abn mean, abn t, p (Holm)" in SUMMARY_LEGEND


def test_the_variant_tests_df_is_in_the_summary():
    """The report's interval of vs_baseline needs the t's df: the fewer of both detectors' distinct
    dates and symbols with an abnormal return, less 1 (difference_estimate's clusters); 0 without a test."""
    rng = np.random.default_rng(5)
    days = pd.bdate_range("2024-01-01", periods=40)
    events = [pd.DataFrame({"date": days[rng.integers(0, 40, n)], "symbol": rng.integers(0, 15, n),
                            "fwd_5": 0.0, "mkt_5": 0.0,
                            "abn_5": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 0.02, n))}) for n in (200, 90)]
    ok = [e[e["abn_5"].notna()] for e in events]
    test = difference_estimate(*(x for e in ok for x in (e["abn_5"].to_numpy(), e["date"].to_numpy(),
                                                         e["symbol"].to_numpy())))
    table = summarize({"b": events[0], "v": events[1]}, [5], {"b": None, "v": "b"})
    assert table["vs_baseline_df"].tolist() == [0, test.df] and test.df == 14  # 15 symbols, 40 dates
    assert table["vs_baseline_t"].iloc[1] == test.t


def test_events_without_any_abnormal_return_say_why():
    events = frame([0.1, 0.2, 0.3]).assign(abn_5=np.nan)
    row = detector_summary(events, [5], {}).iloc[0]
    assert row["valid"] == 3 and row["abn_valid"] == 0 and row["note"].startswith("no abnormal return (")
    assert detector_summary(events.iloc[:0], [5], {}).iloc[0]["note"] == "no events"


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


def test_events_without_any_return_are_not_called_no_events():
    # every event within 5 bars of its symbol's last bar: 229 events, none with a 5-bar return
    events = frame(np.full(229, np.nan))
    row = summarize({"b": frame([0.1, 0.2, 0.3]), "v": events}, [5], {"b": None, "v": "b"}).iloc[1]
    assert row["events"] == 229 and row["valid"] == 0 and math.isnan(row["abn_t"])
    assert row["note"] == ("no event has a return at this window (each is within 5 bars of its symbol's last bar); "
                           "vs baseline: no event of this detector has an abnormal return at this window")
    assert summarize({"b": events, "v": frame([])}, [5], {"b": None, "v": "b"})["note"].tolist() == [
        "no event has a return at this window (each is within 5 bars of its symbol's last bar)",
        "no events; vs baseline: no event of the baseline has an abnormal return at this window"]


def test_a_detector_that_looks_ahead_keeps_its_numbers_but_gets_no_star():
    noise = np.random.default_rng(3).normal(0, 0.01, (2, 60))
    strong = frame(0.05 + noise[0]).assign(symbol=np.arange(60, dtype=np.int32) % 12)
    events = {"b": strong, "v": strong.assign(fwd_5=0.08 + noise[1], abn_5=0.08 + noise[1])}
    plain = summarize(events, [5], {"b": None, "v": "b"})
    warned = summarize(events, [5], {"b": None, "v": "b"}, lookahead={"v"})
    assert plain["abn_significant"].all() and plain["vs_significant"].iloc[1]
    assert warned["abn_significant"].tolist() == [True, False] and not warned["vs_significant"].any()
    assert warned["note"].iloc[1].startswith(LOOKS_AHEAD) and not warned["note"].iloc[0]
    numbers = [c for c in plain.columns if c not in ("note", "abn_significant", "vs_significant")]
    pd.testing.assert_frame_equal(plain[numbers], warned[numbers])
    assert "*" not in format_summary(warned).splitlines()[2]


def test_events_all_left_out_as_flagged_say_so():
    events = frame([np.nan, np.nan]).assign(flagged_5=[True, True])  # exclude_flagged made their returns NaN
    row = detector_summary(events, [5], {}).iloc[0]
    assert row["flagged"] == 2 and row["valid"] == 0
    assert row["note"] == "every event with a return at this window crosses a flagged bar (2 left out: exclude_flagged)"


# ------------------------------------------------------------------ the statistics' registry

def registry_frame(n: int = 24) -> pd.DataFrame:
    """Window 5's event columns of n events on 12 dates and 12 symbols, one per (date, symbol), with
    missing raw and abnormal returns and flagged events."""
    rng = np.random.default_rng(8)
    fwd = rng.normal(0.004, 0.03, n)
    fwd[[3, 17]] = np.nan
    mkt = np.where(np.isnan(fwd), np.nan, rng.normal(0.001, 0.01, n))
    abn = fwd - mkt
    abn[9] = np.nan  # a thin market
    return pd.DataFrame({"date": np.tile(pd.bdate_range("2024-01-01", periods=12).to_numpy(), n // 12 + 1)[:n],
                         "symbol": ((np.arange(n) * 5 + np.arange(n) // 12) % 12).astype(np.int32),
                         "score": rng.normal(size=n), "fwd_5": fwd, "mkt_5": mkt, "abn_5": abn,
                         "flagged_5": np.arange(n) % 7 == 0})


def _ok(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype="float64")[values.notna().to_numpy()]


def _fit(y: np.ndarray, f: pd.DataFrame, good: np.ndarray):
    return statsmodels_fit(y[good], f["date"][good], f["symbol"][good])


NULL = 0.45  # the sign test's null share in these tests
# One row per registered statistic (harness.stats.summary.STATISTICS): what it gives on
# registry_frame(), computed by other means (the two-way tests by statsmodels), and on no events.
STATISTIC_CASES = {
    "events_count": (lambda f: {"events": len(f)}, {"events": 0}),
    "raw_returns": (lambda f: {"valid": len(_ok(f["fwd_5"])), "mean": _ok(f["fwd_5"]).mean(),
                               "median": np.median(_ok(f["fwd_5"])), "std": _ok(f["fwd_5"]).std(ddof=1),
                               "t_stat": _ok(f["fwd_5"]).mean() / (_ok(f["fwd_5"]).std(ddof=1) / math.sqrt(22))},
                    {"valid": 0, "mean": math.nan, "median": math.nan, "std": math.nan, "t_stat": math.nan}),
    "raw_clustered_t": (lambda f: {"t_clustered": _fit(f["fwd_5"], f, f["fwd_5"].notna()).tvalues[0]},
                        {"t_clustered": math.nan}),
    "raw_hit_rate": (lambda f: {"hit_rate": (_ok(f["fwd_5"]) > 0).mean()}, {"hit_rate": math.nan}),
    "market_mean": (lambda f: {"market_mean": f["mkt_5"][f["abn_5"].notna()].mean()}, {"market_mean": math.nan}),
    "abnormal_count": (lambda f: {"abn_valid": 21}, {"abn_valid": 0}),
    "flagged_count": (lambda f: {"flagged": 4}, {"flagged": 0}),
    "abnormal_location": (lambda f: {"abn_mean": _ok(f["abn_5"]).mean(), "abn_median": np.median(_ok(f["abn_5"]))},
                          {"abn_mean": math.nan, "abn_median": math.nan}),
    "abnormal_test": (lambda f: {"abn_se": _fit(f["abn_5"], f, f["abn_5"].notna()).bse[0],
                                 "abn_t": _fit(f["abn_5"], f, f["abn_5"].notna()).tvalues[0], "abn_df": 11,
                                 "abn_p": _fit(f["abn_5"], f, f["abn_5"].notna()).pvalues[0]},
                      {"abn_se": math.nan, "abn_t": math.nan, "abn_df": 0, "abn_p": math.nan}),
    "abnormal_hit_rate": (lambda f: {"abn_hit_rate": (_ok(f["abn_5"]) > 0).mean()}, {"abn_hit_rate": math.nan}),
    "sign_test": (lambda f: {"null_hit_rate": NULL,
                             "sign_t": _fit((f["abn_5"] > 0) - NULL, f, f["abn_5"].notna()).tvalues[0],
                             "sign_p": _fit((f["abn_5"] > 0) - NULL, f, f["abn_5"].notna()).pvalues[0]},
                  {"null_hit_rate": NULL, "sign_t": math.nan, "sign_p": math.nan}),
    "abnormal_clusters": (lambda f: {"event_dates": 12, "event_symbols": 12}, {"event_dates": 0, "event_symbols": 0}),
    "abnormal_note": (lambda f: {"note": ""}, {"note": "no events"}),
}


def _close(got: dict, expected: dict, rel: float | None = None) -> bool:
    """The same keys, and values equal (text) or within `rel` (numbers; NaN equal to NaN)."""
    return list(got) == list(expected) and all(
        g == e if isinstance(e, str) else g == pytest.approx(e, rel=rel, nan_ok=True) for g, e in
        zip(got.values(), expected.values()))


def test_every_registered_statistic_has_a_test_row_and_a_column_of_its_own():
    assert sorted(STATISTIC_CASES) == sorted(entry.function.__name__ for entry in STATISTICS)
    columns = detector_columns()
    assert len(set(columns)) == len(columns) and set(columns) <= set(SUMMARY_COLUMNS)


@pytest.mark.parametrize("entry", STATISTICS, ids=lambda entry: entry.function.__name__)
def test_a_registered_statistic_reads_only_the_columns_it_needs_and_gives_exactly_its_own(entry):
    """Given only the columns it declares: its columns, as computed by other means; no events, or
    no valid return at all: its columns still, without a warning (NaN where there is no number)."""
    by_hand, on_none = STATISTIC_CASES[entry.function.__name__]
    whole = registry_frame()
    mine = whole[entry.needs(5)]

    def given(f: pd.DataFrame) -> dict:
        inputs = WindowInputs(f, 5, NULL)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no mean of an empty slice, no division by 0
            return entry.function(**{name: inputs[name] for name in entry.takes})

    got = given(mine)
    assert list(got) == list(entry.gives)
    assert _close(got, by_hand(whole), rel=RTOL), (got, by_hand(whole))
    assert _close(given(mine.iloc[:0]), on_none), given(mine.iloc[:0])
    returns = [c for c in mine.columns if c.startswith(("fwd_", "abn_", "mkt_"))]
    assert list(given(mine.assign(**{c: np.nan for c in returns}))) == list(entry.gives)
    row = detector_summary(whole, [5], {5: NULL}).iloc[0]  # the same values in the summary's row
    assert _close(row[list(entry.gives)].to_dict(), got)

"""Forward returns and summary statistics on hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest

from conftest import bars
from harness.eval import add_forward_returns
from harness.summary import detector_summary, format_summary, return_stats, summarize


def test_forward_returns_by_hand_with_nan_past_the_end():
    frame = bars(close=[100.0, 110, 121, 100, 50])
    events = frame.iloc[[0, 2, 4]][["date"]].assign(score=1.0)
    out = add_forward_returns(events, frame, [1, 2])
    assert out["close"].tolist() == [100.0, 121.0, 50.0]
    assert out["fwd_1"].tolist()[:2] == pytest.approx([0.1, 100 / 121 - 1])
    assert out["fwd_2"].iloc[0] == pytest.approx(0.21)
    assert out["fwd_2"].iloc[1] == pytest.approx(50 / 121 - 1)
    assert math.isnan(out["fwd_1"].iloc[2]) and math.isnan(out["fwd_2"].iloc[2])
    assert out["score"].tolist() == [1.0, 1.0, 1.0]


def test_forward_returns_count_bars_not_calendar_days():
    frame = bars(close=[100.0, 101, 102, 103])
    frame = frame.drop(index=1).reset_index(drop=True)  # a missing bar is not filled
    out = add_forward_returns(frame.iloc[[0]][["date"]], frame, [1])
    assert out["fwd_1"].iloc[0] == pytest.approx(102 / 100 - 1)


def test_forward_returns_reject_unknown_dates():
    frame = bars(5)
    events = pd.DataFrame({"date": [pd.Timestamp("1999-01-01")]})
    with pytest.raises(ValueError, match="not a row"):
        add_forward_returns(events, frame, [1])


def test_forward_returns_of_no_events():
    out = add_forward_returns(pd.DataFrame({"date": pd.Series([], dtype="datetime64[ns]")}), bars(5), [5])
    assert out.empty and list(out.columns) == ["date", "close", "fwd_5"]


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


def test_a_detector_returning_a_text_column_fails_as_that_symbols_error(tmp_path):
    from conftest import write_partition
    from harness.detectors import DetectorSpec
    from harness.task import ScanTask, scan_symbol

    def labelled(df, cfg):
        return pd.DataFrame({"date": df["date"].iloc[:2], "score": [1.0, 2.0], "label": ["up", "down"]})

    write_partition(tmp_path, "X", bars(30))
    task = ScanTask(str(tmp_path), 3650, None, (DetectorSpec("labelled", labelled, {}),), (5,))
    result = scan_symbol("X", task)
    assert result.error is not None and result.error.detector == "labelled"
    assert "extra columns must hold numbers" in result.error.message and "label" in result.error.message


def test_the_printed_summary_stars_by_the_holm_adjusted_p_and_never_a_row_without_t():
    table = pd.DataFrame({
        "detector": ["a", "b", "c"], "window": [5, 5, 5], "events": [100, 100, 3], "mean": [0.01, 0.01, 0.02],
        "abn_mean": [0.01, 0.01, 0.02], "abn_t": [2.5, 2.5, np.nan], "abn_p_holm": [0.04, 0.06, np.nan],
        "baseline": ["", "a", ""], "vs_baseline": [np.nan, 0.0, np.nan], "vs_baseline_t": [np.nan, 3.0, np.nan],
        "vs_p_holm": [np.nan, 0.2, np.nan], "note": ["", "", "3 event dates: no t below 10"]})
    lines = format_summary(table).splitlines()
    assert "2.50*" in lines[1]                                   # raw p ~1%, Holm 4%: starred
    assert "2.50 " in lines[2] and "2.50*" not in lines[2]       # the same t, Holm 6%: not starred
    assert "3.00 " in lines[2] and "3.00*" not in lines[2]       # a comparison by its own family's Holm p
    assert " - " in lines[3] and "*" not in lines[3] and "3 event dates: no t below 10" in lines[3]


def test_a_thin_market_is_said_on_the_terminal(tmp_path):
    from conftest import run_cli, write_config, write_partition
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for n in range(12):  # 12 symbols, 4 of them from the 31st bar only
        start = 30 if n < 4 else 0
        frame = bars(80, close=100 * np.cumprod(1 + rng.normal(0, 0.01, 80)))
        write_partition(data, f"S{n}", frame.iloc[start:].reset_index(drop=True))
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(data), out_dir=str(tmp_path / "out"),
                          detectors=["user_detectors:every_bar"], min_market_symbols=10, forward_windows=[5])
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    # dates 2-30 have 8 returns, and so has date 31 (the late symbols' first bars)
    assert "\n30 of the market's 79 dates had fewer than 10 symbols with a return (smallest: 8 on 2024-01-02); " \
           "abnormal returns across them are NaN" in proc.stdout, proc.stdout
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    # the 8 full symbols' 5-bar returns from bars 0-29 cross a thin date; the late ones' never do
    assert summary.loc[0, "valid"] == 8 * 75 + 4 * 45 and summary.loc[0, "abn_valid"] == 8 * 45 + 4 * 45


def test_events_without_any_abnormal_return_say_why():
    events = frame([0.1, 0.2, 0.3]).assign(abn_5=np.nan)
    row = detector_summary(events, [5], {}).iloc[0]
    assert row["valid"] == 3 and row["abn_valid"] == 0 and row["note"].startswith("no abnormal return (")
    assert detector_summary(events.iloc[:0], [5], {}).iloc[0]["note"] == "no events"

"""harness.eval: forward returns on hand-computed cases (the statistics over them: tests/test_summary.py)."""

import math

import numpy as np
import pandas as pd
import pytest

from conftest import bars
from harness.eval import add_forward_returns


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


def test_a_detector_returning_a_text_column_fails_as_that_symbols_error(tmp_path):
    from conftest import write_partition
    from harness.detectors import DetectorSpec
    from harness.task import ScanSettings, scan_symbol

    def labelled(df, cfg):
        return pd.DataFrame({"date": df["date"].iloc[:2], "score": [1.0, 2.0], "label": ["up", "down"]})

    write_partition(tmp_path, "X", bars(30))
    task = ScanSettings(str(tmp_path), 3650, None, (DetectorSpec("labelled", labelled, {}),), (5,))
    result = scan_symbol("X", task)
    assert result.error is not None and result.error.detector == "labelled"
    assert "extra columns must hold numbers" in result.error.message and "label" in result.error.message


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



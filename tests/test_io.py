"""read_symbol_data and list_symbols on real parquet files."""

import numpy as np
import pandas as pd
import pytest

from conftest import bars, write_partition
from harness.errors import DataError
from harness.io import COLUMNS, list_partitions, list_symbols, load_symbol_bars, read_symbol_data


def test_reads_one_partition_with_normalised_columns(tmp_path):
    frame = bars(10)
    frame["volume"] = frame["volume"].astype("int64")
    frame["extra"] = 1.0
    frame["date"] = frame["date"].dt.date  # stored as date32
    write_partition(tmp_path, "AAA", frame)
    write_partition(tmp_path, "BBB", bars(3))
    out = read_symbol_data("AAA", str(tmp_path), 3650)
    assert list(out.columns) == list(COLUMNS)
    assert out["date"].dtype == "datetime64[ns]"
    assert all(out[c].dtype == "float64" for c in COLUMNS[1:])
    assert isinstance(out.index, pd.RangeIndex) and len(out) == 10


def test_several_files_sorted_and_later_file_wins_on_duplicate_dates(tmp_path):
    first = bars(6)
    second = bars(4, start="2024-01-05", close=[200.0] * 4)  # overlaps the last two days of `first`
    write_partition(tmp_path, "X", second.iloc[::-1], "b.parquet")
    write_partition(tmp_path, "X", first, "a.parquet")
    out, repairs = load_symbol_bars("X", str(tmp_path), 3650)
    assert out["date"].is_monotonic_increasing and out["date"].is_unique
    assert len(out) == 8
    assert (out.set_index("date").loc["2024-01-05":, "close"] == 200.0).all()
    assert repairs.duplicate_dates == 2 and repairs.unsorted == 1


def test_lookback_counts_calendar_days_back_from_last_bar_or_end_date(tmp_path):
    write_partition(tmp_path, "X", bars(30, start="2024-01-01"))  # last bar 2024-02-09
    out = read_symbol_data("X", str(tmp_path), 7)
    assert list(out["date"].dt.strftime("%m-%d")) == ["02-05", "02-06", "02-07", "02-08", "02-09"]
    out = read_symbol_data("X", str(tmp_path), 3, end_date=pd.Timestamp("2024-01-10"))
    assert list(out["date"].dt.strftime("%m-%d")) == ["01-08", "01-09", "01-10"]


def test_missing_partition_gives_empty_frame(tmp_path):
    out = read_symbol_data("NOPE", str(tmp_path), 365)
    assert out.empty and list(out.columns) == list(COLUMNS)


def test_missing_column_names_symbol_and_file(tmp_path):
    path = write_partition(tmp_path, "X", bars(5).drop(columns=["volume"]))
    with pytest.raises(DataError, match=r"'X'.*part-0\.parquet.*volume"):
        read_symbol_data("X", str(tmp_path), 365)
    assert path.exists()


def test_corrupt_file_names_symbol_and_file(tmp_path):
    path = write_partition(tmp_path, "X", bars(5))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"'X'.*cannot read file.*part-0\.parquet"):
        read_symbol_data("X", str(tmp_path), 365)


def test_prices_as_strings_are_an_error(tmp_path):
    frame = bars(5)
    frame["close"] = frame["close"].astype(str)
    write_partition(tmp_path, "X", frame)
    with pytest.raises(DataError, match=r"column 'close' has type"):
        read_symbol_data("X", str(tmp_path), 365)


def test_bad_prices_are_dropped_and_counted(tmp_path):
    frame = bars(6)
    frame.loc[1, "close"] = np.nan
    frame.loc[2, "open"] = 0.0
    frame.loc[3, "low"] = -1.0
    frame.loc[4, "high"] = 5e-324  # an underflow: its returns would be ~1e324
    frame.loc[5, "close"] = 1e-6  # a millionth is still a price
    write_partition(tmp_path, "X", frame)
    out, repairs = load_symbol_bars("X", str(tmp_path), 365)
    assert len(out) == 2 and repairs.bad_price_rows == 4


def test_stray_files_ignored_and_counted(tmp_path):
    write_partition(tmp_path, "X", bars(5))
    (tmp_path / "symbol=X" / "notes.txt").write_text("hello")
    out, repairs = load_symbol_bars("X", str(tmp_path), 365)
    assert len(out) == 5 and repairs.ignored_files == 1


def test_tz_aware_dates_are_an_error(tmp_path):
    frame = bars(5)
    frame["date"] = frame["date"].dt.tz_localize("UTC")
    write_partition(tmp_path, "X", frame)
    with pytest.raises(DataError, match="time zone"):
        read_symbol_data("X", str(tmp_path), 365)


def test_list_symbols_sorted_and_ignores_other_entries(tmp_path):
    for name in ["MSFT", "BRK.B", "AAPL", "PBR-A"]:
        write_partition(tmp_path, name, bars(3))
    (tmp_path / "README.txt").write_text("x")
    (tmp_path / "misc").mkdir()
    assert list_symbols(str(tmp_path)) == ["AAPL", "BRK.B", "MSFT", "PBR-A"]
    assert list_partitions(str(tmp_path)).ignored == ["README.txt", "misc"]
    (tmp_path / "symbol=A B").mkdir()
    assert list_partitions(str(tmp_path)) == (["AAPL", "BRK.B", "MSFT", "PBR-A"], ["A B"], ["README.txt", "misc"])


@pytest.mark.parametrize("bad", ["..", ".hidden", "A B", "-X", "A$"])
def test_invalid_symbol_folder_is_rejected(tmp_path, bad):
    (tmp_path / f"symbol={bad}").mkdir()
    with pytest.raises(DataError, match="invalid symbol name"):
        list_symbols(str(tmp_path))


def test_invalid_symbol_argument_is_rejected(tmp_path):
    with pytest.raises(DataError, match="invalid symbol name"):
        read_symbol_data("../etc", str(tmp_path), 365)


def test_empty_partition_file_gives_empty_frame(tmp_path):
    write_partition(tmp_path, "X", bars(5).iloc[:0])
    assert read_symbol_data("X", str(tmp_path), 365).empty

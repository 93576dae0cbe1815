"""read_symbol_data and list_symbols on real parquet files."""

import numpy as np
import pandas as pd
import pytest

from conftest import bars, write_partition
from harness.errors import DataError
from harness.io import COLUMNS, ReadFacts, list_partitions, list_symbols, read_symbol_data


def read_with_repairs(symbol: str, root: str, lookback_days: int):
    """read_symbol_data's frame and the repairs it reports (its `facts`)."""
    facts = ReadFacts()
    return read_symbol_data(symbol, root, lookback_days, facts=facts), facts.repairs


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
    out, repairs = read_with_repairs("X", str(tmp_path), 3650)
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
    out, repairs = read_with_repairs("X", str(tmp_path), 365)
    assert len(out) == 2 and repairs.bad_price_rows == 4


def test_stray_files_ignored_and_counted(tmp_path):
    write_partition(tmp_path, "X", bars(5))
    (tmp_path / "symbol=X" / "notes.txt").write_text("hello")
    out, repairs = read_with_repairs("X", str(tmp_path), 365)
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


# --- issue 27: timestamps in the wrong unit, intraday rows, what is not a regular file ---

def write_dates_as(tmp_path, symbol: str, frame: pd.DataFrame, stored: str, column: str) -> None:
    """`frame` with its dates written as numbers of `stored` units in a timestamp[`column`] column."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    numbers = frame["date"].to_numpy().astype(f"datetime64[{stored}]").astype(np.int64)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(0, "date", pa.array(numbers).cast(pa.timestamp(column)))
    (tmp_path / f"symbol={symbol}").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp_path / f"symbol={symbol}" / "part-0.parquet")


@pytest.mark.parametrize("stored, column, start, guess", [
    ("s", "ns", "2019-01-01", "seconds stored as nanoseconds"),
    ("ms", "ns", "2019-01-01", "milliseconds stored as nanoseconds"),
    ("us", "ns", "2019-01-01", "microseconds stored as nanoseconds"),
    ("ms", "us", "2019-01-01", "milliseconds stored as microseconds"),
    ("ms", "ns", "1950-01-02", "milliseconds stored as nanoseconds"),  # negative numbers
    ("us", "ns", "2262-01-02", "microseconds stored as nanoseconds"),  # the farthest from 1970
])
def test_timestamps_in_a_coarser_unit_are_an_error(tmp_path, stored, column, start, guess):
    write_dates_as(tmp_path, "X", bars(60, start=start), stored, column)
    with pytest.raises(DataError) as info:
        read_symbol_data("X", str(tmp_path), 365)
    message = str(info.value)
    assert message.startswith("symbol 'X': file ") and "part-0.parquet': column 'date'" in message
    assert "from 1970-01-01" in message and f"{guess}? write the column in the unit of its numbers" in message


def test_the_wrong_unit_check_leaves_real_data_alone(tmp_path):
    write_dates_as(tmp_path, "ONE", bars(1), "ms", "ns")  # one row cannot be judged: read as it is
    assert len(read_symbol_data("ONE", str(tmp_path), 36500)) == 1
    write_partition(tmp_path, "OLD", bars(80, start="1969-10-01"))  # real bars of 1969-70, one a date
    assert len(read_symbol_data("OLD", str(tmp_path), 36500)) == 80
    write_partition(tmp_path, "OLD2", bars(40, start="1969-12-01"), "a.parquet")
    write_partition(tmp_path, "OLD2", bars(40, start="1969-12-01"), "b.parquet")  # twice, in two files
    out, repairs = read_with_repairs("OLD2", str(tmp_path), 36500)
    assert len(out) == 40 and repairs.duplicate_dates == 40


def test_intraday_rows_and_duplicates_are_counted_apart(tmp_path):
    daily = bars(3)
    timed = pd.concat([daily.assign(date=daily["date"] + pd.Timedelta(hours=h)) for h in (10, 16)])
    write_partition(tmp_path, "X", timed, "a.parquet")  # two times a day: 3 rows collapse
    write_partition(tmp_path, "X", daily.assign(date=daily["date"] + pd.Timedelta(hours=16)), "b.parquet")
    out, repairs = read_with_repairs("X", str(tmp_path), 365)
    # b's 16:00 rows win: a's 16:00 rows are duplicates of them, a's 10:00 rows other times of the day
    assert len(out) == 3 and (repairs.duplicate_dates, repairs.intraday_rows, repairs.time_of_day) == (3, 3, 9)


def test_zero_volume_is_kept_and_counted(tmp_path):
    write_partition(tmp_path, "X", bars(5, volume=[0, 1, 0, np.nan, 2]))
    out, repairs = read_with_repairs("X", str(tmp_path), 365)
    assert len(out) == 5 and repairs.zero_volume_rows == 2


def test_what_is_not_a_regular_file_is_counted_and_never_opened(tmp_path):
    import os
    write_partition(tmp_path, "X", bars(5))
    folder = tmp_path / "symbol=X"
    (folder / "gone.parquet").symlink_to("nowhere.parquet")
    os.mkfifo(folder / "pipe.parquet")  # opening it would block: the test would hang
    (tmp_path / "elsewhere").mkdir()
    write_partition(tmp_path / "elsewhere", "Y", bars(3, start="2025-01-01"))
    (folder / "more").symlink_to(tmp_path / "elsewhere" / "symbol=Y")  # a linked folder is read
    out, repairs = read_with_repairs("X", str(tmp_path), 3650)
    assert len(out) == 8 and repairs.ignored_files == 2
    (folder / "more" / "up").symlink_to(folder)  # ... unless it leads back up: a loop
    with pytest.raises(DataError, match=r"symbol 'X': folder '.*/more/up' is a symlink back to a folder that holds it"):
        read_symbol_data("X", str(tmp_path), 3650)


def test_a_dangling_symbol_folder_symlink_is_an_ignored_entry(tmp_path):
    write_partition(tmp_path, "AAA", bars(3))
    (tmp_path / "symbol=GONE").symlink_to(tmp_path / "unmounted" / "symbol=GONE")
    (tmp_path / "symbol=LINKED").symlink_to(tmp_path / "symbol=AAA")  # a symlinked folder is a symbol
    assert list_partitions(str(tmp_path)) == (["AAA", "LINKED"], [], ["symbol=GONE"])

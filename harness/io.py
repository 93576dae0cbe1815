"""Per-symbol reads of the Hive-partitioned OHLCV dataset (`<root>/symbol=XXX/*.parquet`).

There is deliberately no multi-symbol reader: each task reads exactly its own partition.
Local paths are read with plain file listings (cheaper than dataset discovery on every call);
URLs such as s3://bucket/prefix go through pyarrow's filesystem layer.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.errors import ConfigError, DataError

COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
PARTITION_PREFIX = "symbol="
_SYMBOL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NUMERIC = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
_LOCAL = pafs.LocalFileSystem()


@dataclasses.dataclass
class Repairs:
    """What read_symbol_data fixed in one symbol's data (reported in run.json)."""

    duplicate_dates: int = 0       # rows dropped because a later row had the same date
    unsorted: int = 0              # 1 when the rows had to be sorted by date
    bad_price_rows: int = 0        # rows dropped for a NaN, zero or negative price
    ignored_files: int = 0         # files in the partition that are not *.parquet

    def any(self) -> bool:
        return any(dataclasses.astuple(self))


def is_url(path: str) -> bool:
    return "://" in path


def validate_symbol_name(symbol: str) -> str:
    """Return `symbol` if it is a valid ticker (`[A-Za-z0-9][A-Za-z0-9._-]*`), else raise DataError."""
    if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
        raise DataError(f"invalid symbol name {symbol!r}: names must match [A-Za-z0-9][A-Za-z0-9._-]* "
                        "(letters, digits, '.', '_', '-'; no '/', spaces or leading '.')")
    return symbol


@functools.lru_cache(maxsize=8)
def _cached_filesystem(ohlcv_path: str, options: tuple[tuple[str, Any], ...]) -> tuple[pafs.FileSystem, str]:
    if ohlcv_path.startswith("s3://"):
        return pafs.S3FileSystem(**dict(options)), ohlcv_path[len("s3://"):].rstrip("/")
    return pafs.FileSystem.from_uri(ohlcv_path)


def _filesystem(ohlcv_path: str, storage_options: Mapping[str, Any] | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path on it) for a local path or a URL; s3:// takes `storage_options`
    (pyarrow.fs.S3FileSystem arguments; credentials default to the AWS_* environment variables)."""
    if not is_url(ohlcv_path):
        return _LOCAL, ohlcv_path
    try:
        return _cached_filesystem(ohlcv_path, tuple(sorted((storage_options or {}).items())))
    except (pa.ArrowInvalid, OSError, TypeError) as exc:
        raise ConfigError(f"config key 'ohlcv_path': cannot open {ohlcv_path!r}: {exc}") from None


def _list_dir(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
    try:
        infos = fs.get_file_info(selector)
    except OSError as exc:
        raise DataError(f"cannot list {path!r}: {exc}") from None
    return sorted(infos, key=lambda info: info.base_name)


class Universe(NamedTuple):
    """What is directly under a dataset root, each list sorted."""

    symbols: list[str]   # valid names of symbol=XXX folders
    invalid: list[str]   # symbol=XXX folders whose XXX is not a valid symbol name
    ignored: list[str]   # every other entry (stray files, _SUCCESS, other folders)


def list_partitions(ohlcv_path: str, storage_options: Mapping[str, Any] | None = None) -> Universe:
    """One listing of `ohlcv_path`, sorted into symbols, invalid symbol folders and ignored entries."""
    fs, root = _filesystem(ohlcv_path, storage_options)
    universe = Universe([], [], [])
    for info in _list_dir(fs, root):
        if info.type == pafs.FileType.Directory and info.base_name.startswith(PARTITION_PREFIX):
            name = info.base_name[len(PARTITION_PREFIX):]
            (universe.symbols if _SYMBOL_RE.fullmatch(name) else universe.invalid).append(name)
        else:
            universe.ignored.append(info.base_name)
    return universe


def list_symbols(ohlcv_path: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Sorted symbol names of every `symbol=XXX` folder under `ohlcv_path`.

    A `symbol=` folder whose name is not a valid symbol is a DataError naming it.
    """
    symbols, invalid, _ = list_partitions(ohlcv_path, storage_options)
    if invalid:
        raise invalid_folder_error(ohlcv_path, invalid[0])
    return symbols


def invalid_folder_error(ohlcv_path: str, name: str) -> DataError:
    """The error for a `symbol=<name>` folder whose name is not a valid symbol."""
    try:
        validate_symbol_name(name)
    except DataError as exc:
        return DataError(f"folder '{ohlcv_path}/{PARTITION_PREFIX}{name}': {exc} "
                         "(rename the folder, or set on_error: skip to leave it out)")
    raise ValueError(f"{name!r} is a valid symbol name")


def empty_bars() -> pd.DataFrame:
    """The frame read_symbol_data returns for a symbol with no rows."""
    return pd.DataFrame({"date": pd.Series([], dtype="datetime64[ns]"),
                         **{c: pd.Series([], dtype="float64") for c in COLUMNS[1:]}})


def _read_file(fs: pafs.FileSystem, path: str, symbol: str) -> pa.Table:
    """One parquet file's required columns, cast to date=timestamp[ns], the rest float64."""
    try:
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise DataError(f"symbol {symbol!r}: file {path!r} lacks column(s) {', '.join(missing)} "
                                f"(required: {', '.join(COLUMNS)})")
            table = parquet.read(columns=list(COLUMNS))
    except DataError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"symbol {symbol!r}: cannot read file {path!r}: {exc}") from None
    date_type = table.schema.field("date").type
    if pa.types.is_timestamp(date_type) and date_type.tz is not None:
        raise DataError(f"symbol {symbol!r}: file {path!r}: column 'date' has time zone {date_type.tz}; "
                        "store naive dates (exchange-local trading days)")
    if not (pa.types.is_date(date_type) or pa.types.is_timestamp(date_type)):
        raise DataError(f"symbol {symbol!r}: file {path!r}: column 'date' has type {date_type}; "
                        "expected a date or timestamp")
    arrays = [table.column("date").cast(pa.timestamp("ns"))]
    for name in COLUMNS[1:]:
        col_type = table.schema.field(name).type
        if not any(check(col_type) for check in _NUMERIC):
            raise DataError(f"symbol {symbol!r}: file {path!r}: column {name!r} has type {col_type}; "
                            "expected numbers (int or float)")
        arrays.append(table.column(name).cast(pa.float64()))
    return pa.table(arrays, names=list(COLUMNS))


def load_symbol_bars(symbol: str, ohlcv_path: str, lookback_days: int, end_date: pd.Timestamp | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, Repairs]:
    """read_symbol_data plus a record of the repairs it made."""
    validate_symbol_name(symbol)
    fs, root = _filesystem(ohlcv_path, storage_options)
    repairs = Repairs()
    tables = []
    for info in _list_dir(fs, f"{root}/{PARTITION_PREFIX}{symbol}"):
        if info.type != pafs.FileType.File:
            continue
        if not info.base_name.endswith(".parquet") or info.base_name.startswith((".", "_")):
            repairs.ignored_files += 1
            continue
        tables.append(_read_file(fs, info.path, symbol))
    if not tables:
        return empty_bars(), repairs
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    # Plain numpy from here on: on ~2,500 rows pandas' per-operation overhead costs more than the work.
    columns = {name: table.column(name).to_numpy() for name in COLUMNS}
    dates = columns["date"]
    with np.errstate(invalid="ignore"):
        good = ~np.isnat(dates)
        for name in PRICE_COLUMNS:
            good &= columns[name] > 0  # False for NaN too
    if not good.all():
        repairs.bad_price_rows = int((~good).sum())
        columns = {name: values[good] for name, values in columns.items()}
        dates = columns["date"]
    steps = np.diff(dates)
    if not (steps > np.timedelta64(0)).all():
        repairs.unsorted = int((steps < np.timedelta64(0)).any())
        order = np.argsort(dates, kind="stable")
        ordered = dates[order]
        last_of_date = np.append(ordered[1:] != ordered[:-1], True)  # the row read last wins
        keep = order[last_of_date]
        repairs.duplicate_dates = len(dates) - len(keep)
        columns = {name: values[keep] for name, values in columns.items()}
        dates = columns["date"]
    if len(dates):
        end = np.datetime64(pd.Timestamp(end_date), "ns") if end_date is not None else dates[-1]
        start = end - np.timedelta64(lookback_days, "D")
        first, stop = np.searchsorted(dates, start, side="right"), np.searchsorted(dates, end, side="right")
        if first > 0 or stop < len(dates):
            columns = {name: values[first:stop] for name, values in columns.items()}
    return pd.DataFrame(columns), repairs


def read_symbol_data(symbol: str, ohlcv_path: str, lookback_days: int, end_date: pd.Timestamp | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read ONE symbol's partition as clean daily bars.

    Returns a frame with a RangeIndex and exactly the columns date (datetime64[ns]), open, high,
    low, close, volume (all float64), sorted by date, one row per date, limited to the
    `lookback_days` calendar days ending at `end_date` (when given; rows after it are dropped) or
    else at the symbol's last bar: dates in (end - lookback_days, end].

    Edge cases:
    - all *.parquet files of the partition are read, in file-name order; other files are ignored;
    - duplicate dates: the row read last wins (a later file overrides an earlier one);
    - rows with a NaN, zero or negative open/high/low/close are dropped;
    - a missing partition, or one with no rows, gives an empty frame with the same columns;
    - a missing required column, a non-numeric price, a tz-aware date or an unreadable file raises
      DataError naming the symbol and the file.
    `ohlcv_path` may be a URL (s3://bucket/prefix); `storage_options` then configures the filesystem.
    """
    return load_symbol_bars(symbol, ohlcv_path, lookback_days, end_date, storage_options)[0]

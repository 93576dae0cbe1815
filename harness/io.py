"""Per-symbol reads of the Hive-partitioned OHLCV dataset (`<root>/symbol=XXX/*.parquet`).

There is deliberately no multi-symbol reader: each task reads exactly its own partition.
Local paths are read with plain file listings (cheaper than dataset discovery on every call);
URLs such as s3://bucket/prefix or gs://bucket/prefix go through pyarrow's filesystem layer, with
bounded connect and retry times, and the driver lists a URL's root in a thread it waits for at most
LIST_TIMEOUT_SECONDS, so that an unreachable endpoint is an error, not a hang that ignores Ctrl-C.

One symbol's way: listed here by the driver (list_partitions), read here on a worker
(read_symbol_data, called by harness.task.scan_symbol), then harness.task.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import os
import queue
import re
import threading
from typing import Any, Callable, Mapping, NamedTuple, Sequence, TypeVar

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
# No share trades near a trillion per unit of currency: a price above this is a sentinel or an
# overflow (1e308), and it breaks the detectors' ratios and variances like an infinite one.
MAX_PRICE = 1e12
# Nor below a millionth (split-adjusted history included): a smaller price is an underflow or a
# sentinel (1e-300, 5e-324), whose returns of 1e300 or more turned the market index into inf.
MIN_PRICE = 1e-6
# The first day datetime64[ns] holds (pandas.Timestamp.min is 1677-09-21 00:12:43).
_EARLIEST_DAY = np.datetime64("1677-09-22", "D")
# Seconds, milliseconds or microseconds stored in a column that says a 1000x finer unit land within
# this of 1970-01-01, whatever date they meant (2262 in microseconds read as nanoseconds is April
# 1970): see _check_time_unit.
_WRONG_UNIT_REACH = np.timedelta64(107, "D")
_UNITS = ("s", "ms", "us", "ns")
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# Remote storage: the SDKs' own defaults retry an unreachable endpoint for many minutes.
S3_TIMEOUTS = {"connect_timeout": 5.0, "request_timeout": 20.0}
S3_ATTEMPTS = 3
GCS_RETRY_LIMIT = dt.timedelta(seconds=30)
LIST_TIMEOUT_SECONDS = 90.0
T = TypeVar("T")
_remote_threads: list[threading.Thread] = []  # every thread _interruptible started, for remote_call_running


@dataclasses.dataclass
class Repairs:
    """What read_symbol_data fixed, or kept but flags, in one symbol's data (reported in run.json,
    the non-zero fields only). Rows are counted over everything read, before the lookback cut."""

    duplicate_dates: int = 0       # rows dropped because a row read later had the same timestamp
    intraday_rows: int = 0         # rows dropped because a row read later on the same day had another time
                                   # of day: an intraday file collapses to one bar a day (the row read last)
    unsorted: int = 0              # 1 when the rows had to be sorted by date
    bad_price_rows: int = 0        # rows dropped for a price that is NaN, infinite, < MIN_PRICE or > MAX_PRICE
    bad_volume_rows: int = 0       # rows dropped for a negative or infinite volume (NaN volume is kept)
    time_of_day: int = 0           # rows whose timestamp had a time of day (bars are days: cut to midnight)
    zero_volume_rows: int = 0      # bars kept with a volume of exactly 0 (not repaired: the detectors take
                                   # it as real volume; a halt or a placeholder row would look the same)
    ignored_files: int = 0         # entries of the partition not read: not *.parquet, hidden ('.', '_'),
                                   # or not a regular file (a dangling symlink, a FIFO, a socket)

    def any(self) -> bool:
        return any(dataclasses.astuple(self))


def repair_totals(repairs: Mapping[str, Mapping[str, int]]) -> dict[str, tuple[int, list[str]]]:
    """Per kind of repair (harness.io.Repairs' fields but `unsorted`, which changes no bar): the
    rows (or files) it touched over every symbol, and the symbols, most touched first."""
    totals: dict[str, tuple[int, list[str]]] = {}
    for kind in sorted({k for counts in repairs.values() for k in counts} - {"unsorted"}):
        touched = sorted(((counts[kind], symbol) for symbol, counts in repairs.items() if counts.get(kind)),
                         key=lambda pair: (-pair[0], pair[1]))
        totals[kind] = (sum(n for n, _ in touched), [symbol for _, symbol in touched])
    return totals


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
    scheme, _, root = ohlcv_path.partition("://")
    if scheme == "s3":
        retries = pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS)
        return pafs.S3FileSystem(**{**S3_TIMEOUTS, "retry_strategy": retries, **dict(options)}), root.rstrip("/")
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(**{"retry_time_limit": GCS_RETRY_LIMIT, **dict(options)}), root.rstrip("/")
    return pafs.FileSystem.from_uri(ohlcv_path)


def _filesystem(ohlcv_path: str, storage_options: Mapping[str, Any] | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path on it) for a local path or a URL; s3:// and gs:// take `storage_options`
    (pyarrow.fs.S3FileSystem / GcsFileSystem arguments; S3 credentials default to the AWS_*
    environment variables)."""
    if not is_url(ohlcv_path):
        return _LOCAL, ohlcv_path
    try:
        return _cached_filesystem(ohlcv_path, tuple(sorted((storage_options or {}).items())))
    except (pa.ArrowInvalid, OSError, TypeError) as exc:
        raise ConfigError(f"config key 'ohlcv_path': cannot open {ohlcv_path!r}: {exc}") from None


def _list_dir(fs: pafs.FileSystem, path: str, recursive: bool = False) -> list[pafs.FileInfo]:
    """What is under `path` (nothing if it is missing), sorted by path; OSError if it cannot be listed."""
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
    return sorted(infos, key=lambda info: info.path)


class _Entry(NamedTuple):
    """One entry of a partition listing: its path, whether it is a regular file one can read, and
    its size and modification time (ns) where known (-1 for a dangling link)."""

    path: str
    readable: bool
    size: int = -1
    mtime_ns: int = -1


def _local_tree(path: str, symbol: str) -> list[_Entry]:
    """Every non-directory entry under the local folder `path` (nothing if it is missing), sorted by
    path; symlinks to folders are followed, as pyarrow's listing does.

    pyarrow's recursive listing leaves out a dangling symlink without a word, reports a FIFO as
    FileType.Unknown, and follows a symlink that points back up its own path (`symbol=X/loop -> .`)
    about forty times, reading every file forty times. Here a dangling symlink, a FIFO, a socket or
    a device is an entry that is not `readable` (counted as ignored, never opened: opening a FIFO
    blocks until a writer comes), and a folder that is its own ancestor is a DataError. OSError if
    a folder cannot be listed.
    """
    entries: list[_Entry] = []

    def walk(folder: str, ancestors: frozenset[tuple[int, int]]) -> None:
        with os.scandir(folder) as scan:
            children = sorted(scan, key=lambda entry: entry.name)
        for child in children:
            if child.is_dir():  # follows a symlink; a dangling one is not a folder
                info = child.stat()
                inode = (info.st_dev, info.st_ino)
                if inode in ancestors:
                    raise DataError(f"symbol {symbol!r}: folder {child.path!r} is a symlink back to a folder that "
                                    "holds it (a loop: its files would be read again and again); remove the link")
                walk(child.path, ancestors | {inode})
            else:
                readable = child.is_file()  # follows a symlink too
                info = child.stat() if readable else child.stat(follow_symlinks=False)
                entries.append(_Entry(child.path, readable, info.st_size, info.st_mtime_ns))

    try:
        top = os.stat(path)
    except FileNotFoundError:
        return []
    walk(path, frozenset({(top.st_dev, top.st_ino)}))
    return sorted(entries)


def remote_call_running() -> bool:
    """Whether a remote call that _interruptible stopped waiting for (Ctrl-C, timeout) still runs."""
    return any(thread.is_alive() for thread in _remote_threads)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _interruptible(call: Callable[[], T], seconds: float) -> T:
    """call() in a daemon thread, waited for at most `seconds` (TimeoutError after that).

    pyarrow's remote filesystems block in C++ while they retry, and a signal reaches Python code
    only in the main thread: waiting here instead keeps Ctrl-C and SIGTERM working. A call still
    running when the wait ends is abandoned (the thread is a daemon: it does not hold up exit).
    """
    outcome: queue.Queue = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            outcome.put((True, call()))
        except BaseException as exc:  # handed to the waiting thread as it is
            outcome.put((False, exc))

    thread = threading.Thread(target=run, name="list-remote-root", daemon=True)
    _remote_threads.append(thread)
    thread.start()
    try:
        ok, value = outcome.get(timeout=seconds)
    except queue.Empty:
        raise TimeoutError(f"no answer within {seconds:.0f} s") from None
    if not ok:
        raise value
    return value


class Universe(NamedTuple):
    """What is directly under a dataset root, each list sorted."""

    symbols: list[str]   # valid names of symbol=XXX folders
    invalid: list[str]   # symbol=XXX folders whose XXX is not a valid symbol name
    ignored: list[str]   # every other entry (stray files, _SUCCESS, other folders)


def list_partitions(ohlcv_path: str, storage_options: Mapping[str, Any] | None = None) -> Universe:
    """One listing of `ohlcv_path`, sorted into symbols, invalid symbol folders and ignored entries.

    A URL that cannot be listed within LIST_TIMEOUT_SECONDS, or not at all, is a ConfigError. A
    local `symbol=X` that is a dangling symlink is an ignored entry (pyarrow's listing leaves it out
    without a word, and the symbol would vanish from the run unseen).
    """
    fs, root = _filesystem(ohlcv_path, storage_options)
    try:
        if is_url(ohlcv_path):
            infos = _interruptible(lambda: _list_dir(fs, root), LIST_TIMEOUT_SECONDS)
            entries = sorted((info.base_name, info.type == pafs.FileType.Directory) for info in infos)
        else:
            entries = _local_entries(root)
    except (OSError, pa.ArrowInvalid) as exc:  # TimeoutError included; a URL pyarrow cannot take
        raise ConfigError(f"config key 'ohlcv_path': cannot list {ohlcv_path!r}: {_first_line(exc)}"
                          + (" (is the storage reachable from here? check the URL, storage_options and "
                             "credentials)" if is_url(ohlcv_path) else "")) from None
    universe = Universe([], [], [])
    for base_name, is_folder in entries:
        if is_folder and base_name.startswith(PARTITION_PREFIX):
            name = base_name[len(PARTITION_PREFIX):]
            (universe.symbols if _SYMBOL_RE.fullmatch(name) else universe.invalid).append(name)
        else:
            universe.ignored.append(base_name)
    return universe


def _local_entries(path: str) -> list[tuple[str, bool]]:
    """(name, is a folder) of every entry of the local folder `path`, sorted by name (nothing if it
    is missing); a symlink to a folder is a folder, a dangling one an entry that is not."""
    try:
        with os.scandir(path) as scan:
            return sorted((entry.name, entry.is_dir()) for entry in scan)
    except FileNotFoundError:
        return []


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


def bars_digest(bars: pd.DataFrame) -> str:
    """A digest of a symbol's clean bars, every column's bytes (~0.14 ms for 20 years): the same
    bars, the same digest. What a file rewritten at the same size and time changed is seen here."""
    digest = hashlib.sha256()
    for name in COLUMNS:
        digest.update(np.ascontiguousarray(bars[name].to_numpy()).view(np.uint8))
    return digest.hexdigest()[:16]


def empty_bars() -> pd.DataFrame:
    """The frame read_symbol_data returns for a symbol with no rows."""
    return pd.DataFrame({"date": pd.Series([], dtype="datetime64[ns]"),
                         **{c: pd.Series([], dtype="float64") for c in COLUMNS[1:]}})


def _check_time_unit(dates: pa.ChunkedArray, date_type: pa.DataType, path: str, symbol: str) -> None:
    """DataError when the timestamps of one file look stored in a unit 1000x (or more) coarser than
    their column says: milliseconds in a timestamp[ns] column read as ~27 minutes after 1970-01-01,
    and 1,013 daily bars collapse into one 1970 bar (with a time of day, so silently).

    The rule: every timestamp lies within _WRONG_UNIT_REACH of 1970-01-01 AND there are at least
    two rows per distinct date. Daily data in the wrong unit always has hundreds of rows per date;
    real bars from 1969-70 have one row per date (or two in a file written twice) and none has an
    intraday history from then. A file with one row, or only NaT, cannot be judged and passes.
    The message guesses the real unit: the one that puts the largest timestamp 1 to 292 years from
    1970 (each unit is 1000x the next, so at most one fits).
    """
    values = dates.to_numpy()
    values = values[~np.isnat(values)]
    if len(values) < 2 or not (np.abs(values - np.datetime64(0, "ns")) < _WRONG_UNIT_REACH).all():
        return
    days = len(np.unique(values.astype("datetime64[D]")))
    if len(values) < 2 * days:
        return
    largest, declared, guess = int(np.abs(values.astype(np.int64)).max()), _UNITS.index(date_type.unit), None
    for coarser in range(1, declared + 1):
        if 365 * 86400 * 10**9 <= largest * 1000**coarser <= np.iinfo(np.int64).max:
            guess = _UNITS[declared - coarser]
    stored = (f"{_UNIT_NAMES[guess]} stored as {_UNIT_NAMES[date_type.unit]}" if guess
              else f"numbers in a coarser unit than {_UNIT_NAMES[date_type.unit]}")
    seconds = largest / 1e9
    reach = (f"{seconds:.0f} second(s)" if seconds < 120 else f"{seconds / 60:.0f} minutes" if seconds < 7200
             else f"{seconds / 3600:.0f} hours" if seconds < 172800 else f"{seconds / 86400:.0f} days")
    raise DataError(f"symbol {symbol!r}: file {path!r}: column 'date' ({date_type}): its {len(values)} dates span only "
                    f"{reach} from 1970-01-01 ({days} distinct date(s)): {stored}? write the column in the unit of its "
                    "numbers" + (f" (timestamp[{guess}])" if guess else ""))


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
            twice = [c for c in COLUMNS if names.count(c) > 1]
            if twice:
                raise DataError(f"symbol {symbol!r}: file {path!r} has column {twice[0]!r} more than once; "
                                "which one holds the data is unknown")
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
    for name in COLUMNS[1:]:
        col_type = table.schema.field(name).type
        if not any(check(col_type) for check in _NUMERIC):
            raise DataError(f"symbol {symbol!r}: file {path!r}: column {name!r} has type {col_type}; "
                            "expected numbers (int or float)")
    arrays = []
    for name, target in zip(COLUMNS, (pa.timestamp("ns"), *[pa.float64()] * (len(COLUMNS) - 1))):
        try:  # a safe cast: a date past 2262 or an integer float64 cannot hold is an error, not a wrap
            arrays.append(table.column(name).cast(target))
        except pa.ArrowInvalid as exc:
            raise DataError(f"symbol {symbol!r}: file {path!r}: column {name!r}: {_first_line(exc)}") from None
    if pa.types.is_timestamp(date_type):  # a date32 column has no unit to get wrong
        _check_time_unit(arrays[0], date_type, path, symbol)
    return pa.table(arrays, names=list(COLUMNS))


def _partition_entries(symbol: str, ohlcv_path: str, storage_options: Mapping[str, Any] | None
                       ) -> tuple[pafs.FileSystem, str, list[_Entry]]:
    """(file system, partition path, every entry under it) of `symbol`'s partition."""
    validate_symbol_name(symbol)
    fs, root = _filesystem(ohlcv_path, storage_options)
    partition = f"{root}/{PARTITION_PREFIX}{symbol}"
    try:  # recursive: symbol=X/year=2024/part.parquet is the layout of a second partition key
        if fs is _LOCAL:
            entries = _local_tree(partition, symbol)
        else:  # object stores have no symlinks or FIFOs; a type other than file or folder is not read
            entries = [_Entry(info.path, info.type == pafs.FileType.File, info.size if info.size is not None else -1,
                              info.mtime_ns if info.mtime_ns is not None else -1)
                       for info in _list_dir(fs, partition, recursive=True) if info.type != pafs.FileType.Directory]
    except OSError as exc:
        raise DataError(f"symbol {symbol!r}: cannot list {partition!r}: {_first_line(exc)}") from None
    return fs, partition, entries


def _fingerprint(partition: str, entries: Sequence[_Entry]) -> str:
    """A digest of the partition's entries: names (relative), sizes and modification times. Any file
    added, removed, renamed, rewritten or touched changes it."""
    listing = "\n".join(f"{e.path[len(partition) + 1:]}\t{e.size}\t{e.mtime_ns}" for e in entries)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def symbol_fingerprint(symbol: str, ohlcv_path: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The fingerprint of `symbol`'s input files as they are now (ReadFacts.fingerprint when they
    were read): --resume compares the two. One listing of the partition, no file opened."""
    _, partition, entries = _partition_entries(symbol, ohlcv_path, storage_options)
    return _fingerprint(partition, entries)


@dataclasses.dataclass
class ReadFacts:
    """What read_symbol_data saw besides the bars, when asked for (its `facts` argument)."""

    repairs: Repairs = dataclasses.field(default_factory=Repairs)
    fingerprint: str = ""  # of the files read (symbol_fingerprint, from the same listing)
    content: str = ""      # of the bars returned (bars_digest): what a rerun compares (harness.reuse)


def read_symbol_data(symbol: str, ohlcv_path: str, lookback_days: int, end_date: pd.Timestamp | None = None,
                     storage_options: Mapping[str, Any] | None = None, facts: ReadFacts | None = None
                     ) -> pd.DataFrame:
    """Read ONE symbol's partition as clean daily bars.

    Returns a frame with a RangeIndex and exactly the columns date (datetime64[ns]), open, high,
    low, close, volume (all float64), sorted by date, one row per date (a timestamp with a time of
    day counts as its date, midnight), limited to the
    `lookback_days` calendar days ending at `end_date` (when given; rows after it are dropped) or
    else at the symbol's last bar: dates in (end - lookback_days, end].

    Edge cases:
    - all *.parquet files of the partition are read, sub-folders included (symbol=X/year=2024/
      a.parquet, symlinked folders too), in path order; other files, names starting with '.' or
      '_', and entries that are not regular files (a dangling symlink, a FIFO: never opened) are
      ignored and counted (ignored_files); a symlink back to a folder above it is a DataError;
    - a timestamp with a time of day is cut to its date (counted in time_of_day);
    - duplicate dates: the row read last wins (a later file overrides an earlier one); a dropped
      row with the same timestamp as the winner counts in duplicate_dates, one with another time
      of that day (an intraday file, collapsed to one bar a day) in intraday_rows;
    - a file whose timestamps all lie within ~107 days of 1970-01-01 with at least two rows per
      date (seconds, milliseconds or microseconds stored in a finer unit) raises DataError;
    - a volume of 0 is kept, as real volume, and counted (zero_volume_rows);
    - rows with an open/high/low/close that is NaN, infinite, below MIN_PRICE or above MAX_PRICE
      are dropped, and so are rows with a negative or infinite volume (a NaN volume is kept);
    - a lookback reaching before 1677-09-22 (what datetime64[ns] holds) means all history;
    - a missing partition, or one with no rows, gives an empty frame with the same columns;
    - a missing required column, a non-numeric price, a tz-aware date, a value the column's type
      cannot hold (a date past 2262, an integer above 2^53) or an unreadable file raises DataError
      naming the symbol and the file.
    `ohlcv_path` may be a URL (s3://, gs://); `storage_options` then configures the filesystem.
    `facts`: filled with the repairs made and the fingerprint of the files read, when given
    (harness.task.scan_symbol reports both).
    """
    fs, partition, entries = _partition_entries(symbol, ohlcv_path, storage_options)
    facts = facts if facts is not None else ReadFacts()
    facts.fingerprint = _fingerprint(partition, entries)
    repairs = facts.repairs
    tables = []
    for path, readable, *_ in entries:
        hidden = any(part.startswith((".", "_")) for part in path[len(partition) + 1:].split("/"))
        if hidden or not path.endswith(".parquet") or not readable:  # _SUCCESS, _temporary/, .crc, notes
            repairs.ignored_files += 1
            continue
        tables.append(_read_file(fs, path, symbol))
    if not tables:
        bars = empty_bars()
        facts.content = bars_digest(bars)
        return bars
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    # Plain numpy from here on: on ~2,500 rows pandas' per-operation overhead costs more than the work.
    columns = {name: table.column(name).to_numpy() for name in COLUMNS}
    days = columns["date"].astype("datetime64[D]").astype("datetime64[ns]")  # NaT stays NaT
    timed = ~np.isnat(days) & (days != columns["date"])
    stamps = columns["date"]  # as read: tells an intraday bar from a duplicate of the same bar
    if timed.any():  # a bar is a day: 2024-01-02 16:00 is the bar of 2024-01-02
        repairs.time_of_day = int(timed.sum())
        columns["date"] = days
    dates = columns["date"]
    with np.errstate(invalid="ignore"):
        good_price = ~np.isnat(dates)
        for name in PRICE_COLUMNS:
            good_price &= (columns[name] >= MIN_PRICE) & (columns[name] <= MAX_PRICE)  # False for NaN and inf too
        volume = columns["volume"]
        good_volume = np.isnan(volume) | ((volume >= 0) & (volume < np.inf))
    if not (good_price & good_volume).all():
        repairs.bad_price_rows = int((~good_price).sum())
        repairs.bad_volume_rows = int((good_price & ~good_volume).sum())
        columns = {name: values[good_price & good_volume] for name, values in columns.items()}
        dates, stamps = columns["date"], stamps[good_price & good_volume]
    steps = np.diff(dates)
    if not (steps > np.timedelta64(0)).all():
        repairs.unsorted = int((steps < np.timedelta64(0)).any())
        order = np.argsort(dates, kind="stable")
        ordered = dates[order]
        last_of_date = np.append(ordered[1:] != ordered[:-1], True)  # the row read last wins
        keep = order[last_of_date]
        # Each sorted row's winner is the last row of its date: the dropped rows whose own timestamp
        # differs from their winner's were other times of the same day, the rest true duplicates.
        winner = keep[np.cumsum(last_of_date) - last_of_date]
        dropped = ~last_of_date
        repairs.intraday_rows = int((stamps[order[dropped]] != stamps[winner[dropped]]).sum())
        repairs.duplicate_dates = len(dates) - len(keep) - repairs.intraday_rows
        columns = {name: values[keep] for name, values in columns.items()}
        dates = columns["date"]
    repairs.zero_volume_rows = int((columns["volume"] == 0).sum())
    if len(dates):
        end = np.datetime64(pd.Timestamp(end_date), "ns") if end_date is not None else dates[-1]
        stop, first = np.searchsorted(dates, end, side="right"), 0
        # A lookback reaching before the first day datetime64[ns] holds means all history; the
        # subtraction would wrap around instead.
        if lookback_days < int((end.astype("datetime64[D]") - _EARLIEST_DAY).astype(np.int64)):
            first = np.searchsorted(dates, end - np.timedelta64(lookback_days, "D"), side="right")
        if first > 0 or stop < len(dates):
            columns = {name: values[first:stop] for name, values in columns.items()}
    bars = pd.DataFrame(columns)
    facts.content = bars_digest(bars)
    return bars


"""The unit of work: one symbol, every detector, forward returns. Runs on a Dask worker or in-process.

scan_symbol is a top-level function so that it pickles by reference. It returns data only: no
file writes, no prints, no shared state, so running it twice (after a worker dies) is harmless.
A detector that raises does not raise out of the task: the error comes back as data, with the
symbol, the detector and the original traceback, and the driver decides what to do with it.

The result is kept small and cheap to move: numpy columns for all detectors' rows (pandas
per-detector frames cost more to build and to pickle than the detectors take to run, and a pickled
Arrow table ~0.2 ms per symbol), and a task's results travel as one set of concatenated arrays
(TaskResults).
"""

from __future__ import annotations

import dataclasses
import re
import time
import traceback
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from harness.cpuslots import cpu_slot
from harness.detectors import DetectorSpec
from harness.errors import DataError, DetectorOutputError, ScanError, StopRequested
from harness.eval import event_rows, forward_returns
from harness.io import is_url, load_symbol_bars

if TYPE_CHECKING:
    from harness.config import ScanConfig


@dataclasses.dataclass(frozen=True)
class ScanTask:
    """What every symbol's task needs besides the symbol; the same object for the whole run."""

    ohlcv_path: str
    lookback_days: int
    end_date: pd.Timestamp | None
    detectors: tuple[DetectorSpec, ...]
    windows: tuple[int, ...]
    storage_options: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs for s3:// data
    stop_on_error: bool = False  # on_error: fail: a task of several symbols stops at its first failure
    cpu_slots: int | None = None  # harness.cpuslots semaphore: a LocalCluster with more workers than cores

    @classmethod
    def from_config(cls, cfg: ScanConfig, detectors: Sequence[DetectorSpec]) -> ScanTask:
        """The task of a run of `cfg` with the resolved `detectors`."""
        return cls(cfg.ohlcv_path, cfg.lookback_days, pd.Timestamp(cfg.end_date) if cfg.end_date else None,
                   tuple(detectors), cfg.forward_windows, tuple(sorted(cfg.storage_options.items())),
                   cfg.on_error == "fail")


@dataclasses.dataclass
class SymbolError:
    detector: str | None   # None when the failure is not inside a detector (reading, a dead worker)
    message: str           # one line: "ExceptionType: text", or a ScanError's own text
    traceback: str = ""    # empty for a ScanError: the harness's own frames would not help the user
    exit_code: int = 1     # 2 when the symbol's data is at fault


@dataclasses.dataclass
class SymbolResult:
    """One symbol's output.

    rows: columns (numpy arrays of one length) with one row per event of every detector, grouped by
    detector in task order, dates ascending: detector (int16: index into ScanTask.detectors), bar
    (int32: the event's row in the symbol's bars), date (datetime64[ns]), score, close, fwd_<h>...
    (float64).
    extras: for detectors that return extra columns, those columns as float64 arrays by name, in the
    detector's order (rows as in `rows` for that detector).
    days, close: every bar's date (int32 days since 1970-01-01) and close, for the market index and
    the event-time paths, which need the whole universe and are computed by the driver's writer.
    seconds: CPU time of the whole symbol (read, detectors, forward returns), for task sizing.
    """

    symbol: str
    rows: dict[str, np.ndarray] | None = None
    extras: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    cpu_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    repairs: dict[str, int] = dataclasses.field(default_factory=dict)
    bars: int = 0
    days: np.ndarray | None = None
    close: np.ndarray | None = None
    seconds: float = 0.0
    error: SymbolError | None = None


_OUTPUT_NAMES = re.compile(r"symbol|date|detector|score|close|(fwd|abn)_.*")


def _check_events(events: object, bar_dates: np.ndarray) -> pd.DataFrame:
    """`events` if it keeps the detector output contract, else DetectorOutputError saying how not:
    a DataFrame with date and score, one row per date, dates ascending, each a date of `bar_dates`;
    extra columns named as text and not like an output column (symbol, detector, close, fwd_*,
    abn_*), which they would overwrite. (That extras are numbers is checked where they are cast.)"""
    if not isinstance(events, pd.DataFrame) or "date" not in events or "score" not in events:
        got = f"columns {list(events.columns)}" if isinstance(events, pd.DataFrame) else type(events).__name__
        raise DetectorOutputError(f"must return a DataFrame with columns date and score, got {got}")
    extra = [c for c in events.columns if c not in ("date", "score")]
    clash = [c for c in extra if not isinstance(c, str) or _OUTPUT_NAMES.fullmatch(c) or extra.count(c) > 1]
    if clash:
        raise DetectorOutputError(f"returned an extra column named {clash[0]!r}; extra columns need distinct text "
                                  "names unlike the outputs' (symbol, date, detector, score, close, fwd_*, abn_*)")
    dates = events["date"].to_numpy(dtype="datetime64[ns]")
    # bar_dates are sorted and unique: a binary search finds each (np.isin hashes, ~10x slower)
    at = np.minimum(np.searchsorted(bar_dates, dates), max(len(bar_dates) - 1, 0))
    strangers = bar_dates[at] != dates if len(bar_dates) else np.ones(len(dates), dtype=bool)
    steps = np.diff(dates)
    if strangers.any():
        raise DetectorOutputError(f"returned date {str(dates[strangers][0])[:10]}, which is not a bar of the symbol; "
                                  "events must be dates of df['date']")
    if (steps <= np.timedelta64(0)).any():
        i = int(np.argmax(steps <= np.timedelta64(0))) + 1
        how = "twice" if dates[i] == dates[i - 1] else f"after {str(dates[i - 1])[:10]}"
        raise DetectorOutputError(f"returned date {str(dates[i])[:10]} {how}; a detector returns one row per date, "
                                  "dates ascending")
    return events


def _run_detectors(bars: pd.DataFrame, task: ScanTask, result: SymbolResult, running: list[str | None]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every detector on `bars`: (detector code, bar number, score) of every event, detector after
    detector; fills result.cpu_seconds and result.extras. running[0] names the detector running."""
    dates = bars["date"].to_numpy()
    codes, rows, scores = [], [], []
    for code, spec in enumerate(task.detectors):
        running[0] = spec.name
        started = time.thread_time()
        # A user's detector gets its own copy of the bars: one that changes its input in place
        # (df["close"] *= 2, set_index(inplace=True)) would otherwise change every later
        # detector's events and the forward returns. The registered ones leave it unchanged
        # (tests/test_detectors.py), so they share it (a copy: ~35 us per detector and symbol).
        events = _check_events(spec.func(bars.copy() if spec.is_users else bars, spec.params), dates)
        result.cpu_seconds[spec.name] = time.thread_time() - started
        rows.append(event_rows(dates, events["date"].to_numpy(dtype="datetime64[ns]")))
        scores.append(events["score"].to_numpy(dtype="float64"))
        codes.append(np.full(len(events), code, dtype=np.int16))
        extra = [c for c in events.columns if c not in ("date", "score")]
        if extra:
            try:
                numeric = events[extra].astype("float64")
            except (TypeError, ValueError):
                raise DetectorOutputError("extra columns must hold numbers, got "
                                          f"{', '.join(f'{c} ({events[c].dtype})' for c in extra)}") from None
            result.extras[spec.name] = {str(c): numeric[c].to_numpy() for c in extra}
    running[0] = None
    return np.concatenate(codes), np.concatenate(rows).astype(np.int64), np.concatenate(scores)


def scan_symbol(symbol: str, task: ScanTask) -> SymbolResult:
    """Read `symbol`, run every detector, add forward returns; never raises for a symbol's own failure."""
    result = SymbolResult(symbol)
    running: list[str | None] = [None]
    began = time.thread_time()
    remote = is_url(task.ohlcv_path)
    try:
        # A CPU slot (harness.cpuslots) for the CPU work: reading a local file is CPU work like the
        # detectors', while a remote read mostly waits on I/O, so only the detectors hold one then.
        with cpu_slot(None if remote else task.cpu_slots):
            bars, repairs = load_symbol_bars(symbol, task.ohlcv_path, task.lookback_days, task.end_date,
                                             dict(task.storage_options))
            with cpu_slot(task.cpu_slots if remote else None):
                codes, at, scores = _run_detectors(bars, task, result, running)
        result.bars = len(bars)
        result.repairs = {k: v for k, v in dataclasses.asdict(repairs).items() if v}
        dates = bars["date"].to_numpy()
        close = bars["close"].to_numpy(dtype="float64")
        result.rows = {"detector": codes, "bar": at.astype(np.int32), "date": dates[at].astype("datetime64[ns]"),
                       "score": scores, "close": close[at], **forward_returns(close, at, task.windows)}
        result.days = dates.astype("datetime64[D]").astype(np.int32)
        result.close = close
        result.seconds = time.thread_time() - began
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a symbol's failure is data, see module docstring
        if isinstance(exc, StopRequested):  # the driver's Ctrl-C, not a detector's doing
            raise
        ours = isinstance(exc, ScanError)
        message = str(exc) if ours else f"{type(exc).__name__}: {exc}"
        result = SymbolResult(symbol, error=SymbolError(running[0], message.splitlines()[0] if message else "",
                                                        "" if ours else traceback.format_exc(),
                                                        2 if isinstance(exc, DataError) else 1))
    return result


class TaskResults(list):
    """scan_symbols' results: a list of SymbolResult that pickles as one set of arrays (each column
    concatenated over the symbols) and the small fields, so that sending a task's results costs
    about what sending one symbol's did. Unpickled, the symbols' arrays are views into those."""

    def __reduce__(self) -> tuple[Any, ...]:
        small, arrays = [], {}

        def put(key: tuple[str, ...], values: np.ndarray) -> int:
            arrays.setdefault(key, []).append(values)
            return len(values)

        for result in self:
            small.append((dataclasses.replace(result, rows=None, extras={}, days=None, close=None),
                          None if result.rows is None else {k: put(("rows", k), v) for k, v in result.rows.items()},
                          {d: {c: put(("extras", d, c), v) for c, v in columns.items()}
                           for d, columns in result.extras.items()},
                          None if result.days is None else put(("days",), result.days),
                          None if result.close is None else put(("close",), result.close)))
        return _unpack_results, (small, {key: np.concatenate(parts) for key, parts in arrays.items()})


def _unpack_results(small: list[tuple[Any, ...]], arrays: dict[tuple[str, ...], np.ndarray]) -> TaskResults:
    """TaskResults.__reduce__'s inverse."""
    taken = dict.fromkeys(arrays, 0)

    def take(key: tuple[str, ...], length: int) -> np.ndarray:
        taken[key] += length
        return arrays[key][taken[key] - length:taken[key]]

    return TaskResults(dataclasses.replace(
        result, rows=None if rows is None else {k: take(("rows", k), n) for k, n in rows.items()},
        extras={d: {c: take(("extras", d, c), n) for c, n in columns.items()} for d, columns in extras.items()},
        days=None if days is None else take(("days",), days), close=None if close is None else take(("close",), close))
        for result, rows, extras, days, close in small)


def scan_symbols(symbols: Sequence[str], task: ScanTask) -> TaskResults:
    """scan_symbol for consecutive symbols, the unit of a Dask task.

    With task.stop_on_error (on_error: fail) it stops at the first symbol that fails and returns
    the results so far, that one included: the run is about to stop, the rest would be wasted.
    """
    results = TaskResults()
    for symbol in symbols:
        results.append(scan_symbol(symbol, task))
        if results[-1].error is not None and task.stop_on_error:
            break
    return results

"""The unit of work: one symbol, every detector, forward returns. Runs on a Dask worker or in-process.

scan_symbol is a top-level function so that it pickles by reference. It returns data only: no
file writes, no prints, no shared state, so running it twice (after a worker dies) is harmless.
A detector that raises does not raise out of the task: the error comes back as data, with the
symbol, the detector and the original traceback, and the driver decides what to do with it. So
does one that calls os._exit (_call_guarded) or returns something that breaks the output contract
(_check_events, checked before the harness reads any of it); each call gets its own parameters.

The result is kept small and cheap to move: numpy columns for all detectors' rows (pandas
per-detector frames cost more to build and to pickle than the detectors take to run, and a pickled
Arrow table ~0.2 ms per symbol), and a task's results travel as one set of concatenated arrays
(TaskResults).

One symbol's way on: an executor (harness.executors: Serial in-process, or ScanFeed's tasks on
Dask) runs it and brings its result back to the driver; harness.run.stage_results puts it in its
chunk; harness.staging stages the chunk; harness.finish turns the chunk into the final files' bytes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

import numpy as np
import pandas as pd

from harness.detectors import DetectorSpec
from harness.errors import (DataError, DetectorExited, DetectorOutputError, DetectorParamsError, ScanError,
                            StopRequested)
from harness.eval import add_forward_returns
from harness.io import ReadFacts, is_url, read_symbol_data

if TYPE_CHECKING:
    from harness.config import ScanConfig


@dataclasses.dataclass(frozen=True)
class ScanSettings:
    """The run's settings that scanning a symbol needs besides the symbol (not a task: the same
    object for every task of the run)."""

    ohlcv_path: str
    lookback_days: int
    end_date: pd.Timestamp | None
    detectors: tuple[DetectorSpec, ...]
    windows: tuple[int, ...]
    storage_options: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs for s3:// data
    stop_on_error: bool = False  # on_error: fail: a task of several symbols stops at its first failure
    lookahead_symbols: frozenset[str] = frozenset()  # symbols whose detectors also run on cut bars (lookahead_check)

    @classmethod
    def from_config(cls, cfg: ScanConfig, detectors: Sequence[DetectorSpec]) -> ScanSettings:
        """The settings of a run of `cfg` with the resolved `detectors`."""
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
    detector in settings.detectors' order, dates ascending: detector (int16: index into ScanSettings.detectors), bar
    (int32: the event's row in the symbol's bars), date (datetime64[ns]), score, close, fwd_<h>...
    (float64).
    extras: for detectors that return extra columns, those columns as float64 arrays by name, in the
    detector's order (rows as in `rows` for that detector).
    days, close: every bar's date (int32 days since 1970-01-01) and close, for the market index and
    the event-time paths, which need the whole universe and are computed at the end of the run (harness.finish).
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
    fingerprint: str = ""  # of the symbol's input files (harness.io.symbol_fingerprint), "" if not listed
    content: str = ""      # of its clean bars (harness.io.bars_digest), "" if not read
    error: SymbolError | None = None
    lookahead: dict[str, str] | None = None  # checked symbols only: detector -> "" (ok) or what changed

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays: what sending it costs (run.json bytes_received)."""
        arrays = [*(self.rows or {}).values(), *(v for columns in self.extras.values() for v in columns.values()),
                  *(a for a in (self.days, self.close) if a is not None)]
        return sum(a.nbytes for a in arrays)


# Every column name the harness gives a row of its own (SymbolResult.rows, the staged rows and
# forward parts of harness.staging, the statistics' columns of harness.finish): an extra column so
# named would overwrite it (an extra `bar` replaced the bar numbers and crashed the end of the run).
_RESERVED_NAMES = re.compile(r"bar|symbol|date|detector|score|close|(fwd|abn|mkt)_.*")
_RESERVED_TEXT = "bar, symbol, date, detector, score, close, fwd_*, abn_*, mkt_*"
# pandas.api.types.infer_dtype of an object column whose values are all real numbers (or missing):
# an empty `pd.DataFrame(columns=["date", "score"])` has object columns, and so may a concat with one.
_REAL_KINDS = frozenset({"empty", "integer", "floating", "mixed-integer-float", "boolean", "decimal"})
_DAY_NS = 86_400 * 10**9
_FLOAT64, _DATETIME64 = np.dtype("float64"), np.dtype("datetime64[ns]")


@dataclasses.dataclass
class CheckedEvents:
    """A detector's output once it kept the contract: its events' rows in the symbol's bars, scores
    and extra columns (float64 arrays by name, in the detector's order)."""

    rows: np.ndarray
    scores: np.ndarray
    extras: dict[str, np.ndarray]


def _shown(value: object) -> str:
    """`value` as a message shows it: its repr, on one line, at most 60 characters."""
    if isinstance(value, np.generic):
        value = value.item()
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _not_a_number(value: object) -> bool:
    if value is None or value is pd.NA:
        return False  # missing: a NaN score
    if isinstance(value, (str, bytes, complex, np.complexfloating)):
        return True
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return True
    return False


def _floats(column: pd.Series, what: str, rule: str) -> np.ndarray:
    """`column` as float64, or DetectorOutputError naming `what` it is, its type and a value that is
    no number. Numbers are columns of a real numeric type (bool, int, float, pandas' nullable ones;
    NA becomes NaN), or of objects that are all real numbers; text is no number, even "1.5", nor is
    a complex number (its imaginary part would be dropped)."""
    dtype = column.dtype
    if dtype == _FLOAT64:  # what detectors return nearly always: no checks, no copy
        return column.to_numpy()
    if pd.api.types.is_object_dtype(dtype):
        numeric = pd.api.types.infer_dtype(column, skipna=True) in _REAL_KINDS
    else:
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    if numeric:
        try:
            return column.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError, OverflowError):  # e.g. an int beyond float64's range
            pass
    bad = next((v for v in column if _not_a_number(v)), column.iloc[0] if len(column) else None)
    raise DetectorOutputError(f"returned {what} of type {dtype} ({_shown(bad)}); {rule}")


def _event_dates(column: pd.Series) -> np.ndarray:
    """The `date` column as naive datetime64[ns]; DetectorOutputError for a time zone (converting
    would move the dates to UTC, silently) or values that are no dates. (A time of day is found
    among the dates that are no bar, in _check_events.)"""
    dtype = column.dtype
    if dtype == _DATETIME64:  # df['date']'s own type: no zone to find
        return column.to_numpy()
    tz = getattr(dtype, "tz", None) or getattr(getattr(dtype, "pyarrow_dtype", None), "tz", None)
    first = None  # the first date with a zone; datetimes held as objects may carry one each
    if tz is not None or pd.api.types.is_object_dtype(dtype):
        first = next((v for v in column if getattr(v, "tzinfo", None) is not None), None)
    if tz is not None or first is not None:
        value = "dates" if first is None else f"date {first}"  # none: a zoned column without rows
        raise DetectorOutputError(f"returned {value} with time zone {tz or first.tzinfo}; event dates must be "
                                  "naive, like df['date'] (dates of the exchange, no time zone)")
    try:
        return column.to_numpy(dtype="datetime64[ns]")
    except (TypeError, ValueError, OverflowError) as exc:  # OutOfBoundsDatetime is a ValueError
        value = next(iter(column), None)
        raise DetectorOutputError(f"returned dates of type {dtype} ({_shown(value)}) that are no dates: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                  "events must be dates of df['date']") from None


def _day(date: np.datetime64) -> str:
    return str(date)[:10]  # a bar's date: midnight, so the day says it all


def _check_events(events: object, bar_dates: np.ndarray) -> CheckedEvents:
    """`events` as CheckedEvents if it keeps the detector output contract, else DetectorOutputError
    (one line) saying how not. Checked before any of its columns is read, so that a broken output
    never reaches the harness's own code: a DataFrame with `date` and `score`; every column name
    text and given once (two `score` or `date` columns included); extra columns not named like one
    of the harness's own (_RESERVED_NAMES); scores and extra columns numbers (_floats); dates naive
    (no time zone), one row per date, ascending, each a date of `bar_dates` (sorted, unique, at
    midnight), so a date with a time of day is no bar and is reported as such."""
    # Names as a list, checked in Python: pandas' Index operations cost ~40 us each here, the
    # whole check of a usual output ~0.1 ms (it runs for every detector and symbol).
    names = list(events.columns) if isinstance(events, pd.DataFrame) else []
    if not isinstance(events, pd.DataFrame) or "date" not in names or "score" not in names:
        got = f"columns {names}" if isinstance(events, pd.DataFrame) else type(events).__name__
        raise DetectorOutputError(f"must return a DataFrame with columns date and score, got {got}")
    extra = [c for c in names if c not in ("date", "score")]
    rule = f"extra columns need distinct text names unlike the harness's own ({_RESERVED_TEXT})"
    odd = next((c for c in names if not isinstance(c, str)), None)  # a MultiIndex's names are tuples
    if odd is not None:
        raise DetectorOutputError(f"returned an extra column named {odd!r}; {rule}")
    if len(set(names)) < len(names):
        twice = next(c for n, c in enumerate(names) if c in names[:n])
        raise DetectorOutputError(f"returned the column {twice!r} more than once; a detector returns each "
                                  "column once")
    clash = next((c for c in extra if _RESERVED_NAMES.fullmatch(c)), None)
    if clash is not None:
        raise DetectorOutputError(f"returned an extra column named {clash!r}; {rule}")
    dates = _event_dates(events["date"])
    # bar_dates are sorted and unique: a binary search finds each (np.isin hashes, ~10x slower)
    at = np.minimum(np.searchsorted(bar_dates, dates), max(len(bar_dates) - 1, 0))
    strangers = bar_dates[at] != dates if len(bar_dates) else np.ones(len(dates), dtype=bool)
    if strangers.any():
        date = dates[strangers][0]
        if not np.isnat(date) and date.astype(np.int64) % _DAY_NS:
            raise DetectorOutputError(f"returned date {pd.Timestamp(date)}, which has a time of day; events "
                                      "must be dates of df['date'] (midnight)")
        raise DetectorOutputError(f"returned date {_day(date)}, which is not a bar of the symbol; "
                                  "events must be dates of df['date']")
    steps = np.diff(dates)
    if (steps <= np.timedelta64(0)).any():
        i = int(np.argmax(steps <= np.timedelta64(0))) + 1
        how = "twice" if dates[i] == dates[i - 1] else f"after {_day(dates[i - 1])}"
        raise DetectorOutputError(f"returned date {_day(dates[i])} {how}; a detector returns one row per date, "
                                  "dates ascending")
    scores = _floats(events["score"], "a score", "scores must be numbers (stored as float64)")
    extras = {c: _floats(events[c], f"extra column {c!r}", "extra columns must hold numbers (stored as float64)")
              for c in extra}
    return CheckedEvents(at, scores, extras)


_REAL_EXIT = os._exit
_guarded = threading.local()  # .pid: set while this thread runs a detector (in that process)
_HARNESS = os.path.dirname(os.path.realpath(__file__)) + os.sep


def _exit_from_detector(code: int) -> None:
    """os._exit while a detector runs: DetectorExited when the detector's code called it; any other
    caller exits as os._exit does: the Dask worker's own threads, a child process the detector
    forked (multiprocessing ends it with os._exit), and the harness itself, whose signal handler
    (harness.signals._exit_now: a second Ctrl-C) runs in the detector's thread, on top of its frames."""
    caller = os.path.realpath(sys._getframe(1).f_code.co_filename)
    if getattr(_guarded, "pid", None) == os.getpid() and not caller.startswith(_HARNESS):
        raise DetectorExited(f"called os._exit({code!r}), which would end the whole run without a "
                             "word; a detector returns its events or raises an exception")
    _REAL_EXIT(code)


def _call_guarded(spec: DetectorSpec, frame: pd.DataFrame, params: dict[str, Any]) -> object:
    """spec.func(frame, params), during which os._exit called by the detector raises DetectorExited
    (the symbol's failure, with the detector's traceback) instead of ending the process: in a
    serial run the CLI died with the detector's exit code and not a line said why. Also on Dask
    workers, where it fails the symbol at once instead of killing the worker (which the driver's
    KilledWorker retries then narrowed down to the symbol, naming no detector, after several worker
    restarts); a real death (SIGKILL, a segfault) still takes that path. os._exit is restored
    however the call ends; a call from another thread meanwhile exits as os._exit does. ~0.9 us
    per call (a contextlib.contextmanager took 4 us)."""
    saved, os._exit, _guarded.pid = os._exit, _exit_from_detector, os.getpid()
    try:
        return spec.func(frame, params)
    finally:
        _guarded.pid, os._exit = None, saved


def _own_params(spec: DetectorSpec) -> dict[str, Any]:
    """A deep copy of spec.params for one call: a detector that changes its parameters (a
    cfg.setdefault of the first symbol's median, a list it appends to) would otherwise carry that
    into the next symbol's call, and the events would depend on which symbols shared a process
    (issue 27: 141 events serially, 77 on 2 workers). Deep, as parameters may hold lists and dicts.
    Measured: 4-6 us per registered detector's parameters, 45 us for all nine per symbol
    (`copy.deepcopy(spec.params)` under timeit), ~0.1% of a symbol's 10-60 ms: not worth a fast path."""
    try:
        return copy.deepcopy(spec.params)
    except Exception as exc:  # e.g. a lock or an open file in a user's `defaults`
        raise DetectorParamsError(f"its parameters cannot be copied for each call ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}); parameters must be plain "
                                  "data (numbers, text, lists, dicts)") from None


def _run_detectors(bars: pd.DataFrame, settings: ScanSettings, result: SymbolResult, running: list[str | None]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[CheckedEvents]]:
    """Every detector on `bars`: (detector code, bar number, score) of every event, detector after
    detector, and each detector's CheckedEvents; fills result.cpu_seconds and result.extras.
    running[0] names the detector running."""
    dates = bars["date"].to_numpy()
    codes, rows, scores, every = [], [], [], []
    for code, spec in enumerate(settings.detectors):
        running[0] = spec.name
        started = time.thread_time()
        # A user's detector gets its own copy of the bars: one that changes its input in place
        # (df["close"] *= 2, set_index(inplace=True)) would otherwise change every later
        # detector's events and the forward returns. The registered ones leave it unchanged
        # (tests/test_detectors.py), so they share it (a copy: ~35 us per detector and symbol).
        # Every detector gets its own parameters (_own_params).
        frame, params = bars.copy() if spec.is_users else bars, _own_params(spec)
        checked = _check_events(_call_guarded(spec, frame, params), dates)
        result.cpu_seconds[spec.name] = time.thread_time() - started
        every.append(checked)
        rows.append(checked.rows)
        scores.append(checked.scores)
        codes.append(np.full(len(checked.rows), code, dtype=np.int16))
        if checked.extras:
            result.extras[spec.name] = checked.extras
    running[0] = None
    if not every:  # no detector to run (every one kept from the previous run: harness.reuse)
        return np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0, np.float64), every
    return np.concatenate(codes), np.concatenate(rows).astype(np.int64), np.concatenate(scores), every


CANNOT_CUT = "not checked: it raises on the bars cut"  # a finding that is no look-ahead (its symbol scans fine)
LOOKAHEAD_CUTS = (0.25, 0.5, 0.75)  # where the bars are cut, as shares of the symbol's history
LOOKAHEAD_MIN_BARS = 40  # fewer bars: the symbol is not checked (cut histories too short to say much)
_RELATIVE = 1e-12


def _score(value: float) -> str:
    return f"{value:.6g}"


def first_change(full: CheckedEvents, cut: CheckedEvents, dates: np.ndarray, last: int) -> str:
    """How the events of a detector on bars[:last + 1] (`cut`) differ from its events on all the
    bars (`full`) up to that bar, in words, "" when they do not: the first event (by date) present
    in one and not the other, or whose score differs by more than 1e-12 relative (NaN equals NaN).
    `dates`: the bars' dates; both events' rows index them."""
    full_rows = full.rows[full.rows <= last]
    for i in range(max(len(full_rows), len(cut.rows))):
        at_full = full_rows[i] if i < len(full_rows) else None
        at_cut = cut.rows[i] if i < len(cut.rows) else None
        if at_full is not None and (at_cut is None or at_full < at_cut):
            return (f"its event of {_day(dates[at_full])} (score {_score(full.scores[i])} on the full history) "
                    "is gone on the cut bars")
        if at_full is None or at_cut < at_full:
            return (f"it fires on {_day(dates[at_cut])} (score {_score(cut.scores[i])}) on the cut bars but not "
                    "on the full history")
        a, b = float(cut.scores[i]), float(full.scores[i])
        if not (a == b or (a != a and b != b) or abs(a - b) <= _RELATIVE * max(abs(a), abs(b))):
            return (f"its event of {_day(dates[at_cut])} has score {_score(a)} on the cut bars but "
                    f"{_score(b)} on the full history")
    return ""


def cut_bars(event_rows: np.ndarray, bars: int) -> list[int]:
    """The last bar of each cut of a symbol's `bars` bars (LOOKAHEAD_CUTS): at each share of the
    history, the detector's own event nearest to it, else the bar there. Cut at an event's bar,
    a detector that peeks even one bar ahead (shift(-1)) loses or changes that event for sure;
    cut elsewhere, only if it happens to fire on the cut's last bars. In order, each once."""
    cuts = []
    for share in LOOKAHEAD_CUTS:
        at = int(share * (bars - 1))
        if len(event_rows):
            at = int(event_rows[np.argmin(np.abs(event_rows - at))])
        cuts.append(at)
    return sorted(set(cuts))


def check_lookahead(bars: pd.DataFrame, settings: ScanSettings, full: Sequence[CheckedEvents],
                    running: list[str | None]) -> dict[str, str]:
    """Every detector again on `bars` cut after a few bars (cut_bars): detector -> "" when its
    events up to each cut are those of the full run (`full`, in settings.detectors' order), else one line saying
    at which cut what changed first; a detector that raises on cut bars (one that needs a long
    history) is not checked, and its line starts with CANNOT_CUT: the check never fails a symbol
    that scans fine, whose staged bytes are the same with the check or without. No cut for fewer
    than LOOKAHEAD_MIN_BARS bars: {}."""
    n = len(bars)
    if n < LOOKAHEAD_MIN_BARS:
        return {}
    dates = bars["date"].to_numpy()
    found: dict[str, str] = {}
    for spec, events in zip(settings.detectors, full):
        running[0] = spec.name
        found[spec.name] = ""
        for last in cut_bars(events.rows, n):
            frame = bars.iloc[:last + 1].copy()  # a frame of its own, as a detector may change it
            try:
                cut = _check_events(_call_guarded(spec, frame, _own_params(spec)), dates[:last + 1])
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # the check never fails a symbol
                if isinstance(exc, StopRequested):
                    raise
                detail = (str(exc).splitlines() or [""])[0]
                found[spec.name] = f"{CANNOT_CUT} after {_day(dates[last])} ({type(exc).__name__}: {detail})"
                break
            change = first_change(events, cut, dates, last)
            if change:
                found[spec.name] = f"cut after {_day(dates[last])}, {change}"
                break
    running[0] = None
    return found


def scan_symbol(symbol: str, settings: ScanSettings,
                cpu: Callable[[], ContextManager[None]] = contextlib.nullcontext) -> SymbolResult:
    """Read `symbol`, run every detector, add forward returns; never raises for a symbol's own failure.

    cpu: what the symbol's CPU work holds while it runs, the executor's (harness.executors.local:
    a CPU slot of cluster.cpuslots); nothing by default."""
    result = SymbolResult(symbol)
    running: list[str | None] = [None]
    began = time.thread_time()
    remote = is_url(settings.ohlcv_path)
    try:
        # Reading a local file is CPU work like the detectors', while a remote read mostly waits on
        # I/O, so only the detectors hold `cpu` then.
        with contextlib.nullcontext() if remote else cpu():
            read = ReadFacts()
            bars = read_symbol_data(symbol, settings.ohlcv_path, settings.lookback_days, settings.end_date,
                                    dict(settings.storage_options), facts=read)
            result.fingerprint, result.content = read.fingerprint, read.content
            with cpu() if remote else contextlib.nullcontext():
                codes, at, scores, every = _run_detectors(bars, settings, result, running)
                if symbol in settings.lookahead_symbols:
                    checking = time.thread_time()
                    result.lookahead = check_lookahead(bars, settings, every, running)
                    began += time.thread_time() - checking  # not the symbol's cost: task sizing reads it
        result.bars = len(bars)
        result.repairs = {k: v for k, v in dataclasses.asdict(read.repairs).items() if v}
        dates = bars["date"].to_numpy()
        close = bars["close"].to_numpy(dtype="float64")
        # every detector's events at once: close and fwd_<h> added (~0.3 ms a symbol, <1% of its cost)
        events = add_forward_returns(pd.DataFrame({"date": dates[at]}), bars, settings.windows)
        result.rows = {"detector": codes, "bar": at.astype(np.int32), "date": dates[at].astype("datetime64[ns]"),
                       "score": scores, **{name: column.to_numpy() for name, column in events.items() if name != "date"}}
        result.days = dates.astype("datetime64[D]").astype(np.int32)
        result.close = close
        result.seconds = time.thread_time() - began
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a symbol's failure is data, see module docstring
        if isinstance(exc, StopRequested):  # the driver's Ctrl-C, not a detector's doing
            raise
        ours = isinstance(exc, ScanError)  # the harness's own words: no traceback of its frames
        message = str(exc) if ours or isinstance(exc, DetectorExited) else f"{type(exc).__name__}: {exc}"
        result = SymbolResult(symbol, fingerprint=result.fingerprint, content=result.content,
                              error=SymbolError(running[0], message.splitlines()[0] if message else "",
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


def scan_symbols(symbols: Sequence[str], settings: ScanSettings,
                 cpu: Callable[[], ContextManager[None]] = contextlib.nullcontext) -> TaskResults:
    """scan_symbol for consecutive symbols, the unit of a Dask task (cpu: scan_symbol's).

    With settings.stop_on_error (on_error: fail) it stops at the first symbol that fails and returns
    the results so far, that one included: the run is about to stop, the rest would be wasted.
    """
    results = TaskResults()
    for symbol in symbols:
        results.append(scan_symbol(symbol, settings, cpu))
        if results[-1].error is not None and settings.stop_on_error:
            break
    return results

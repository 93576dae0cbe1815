"""Summary statistics of forward returns per (detector, window), score quantiles, event-time paths,
and their text rendering. Pure: the tests themselves live in harness.stats.inference.

The statistics of a summary row are a registry (STATISTICS) of pure functions, each taking the
events' columns it names and giving the columns it declares; the tables' columns follow it."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.eval import abnormal_column, flagged_column, forward_column, market_column
from harness.stats.inference import (MIN_STANDARD_ERROR, NO_DATA, SIGNIFICANCE, Estimate, benjamini_hochberg,
                               difference_estimate, estimate, holm, mean_estimate, two_way_variance)

PATH_COLUMNS = ["detector", "offset", "events", "mean_ret", "abn_events", "mean_abn", "abn_low", "abn_high"]
QUANTILE_COLUMNS = ["detector", "window", "quantile", "events", "score_low", "score_high", "abn_mean", "abn_se",
                    "abn_t", "abn_p", "note"]
QUANTILES = 5
SPREAD = f"{QUANTILES}-1"  # the quantile label of the top-minus-bottom row


def return_stats(returns: np.ndarray) -> dict[str, float | int]:
    """valid, mean, median, std (ddof=1), t_stat = mean / (std / sqrt(valid)), hit_rate = share > 0.

    NaN entries are not valid and are left out. With no valid return every statistic is NaN; with
    one, std and t_stat are NaN; t_stat (events taken as independent: a naive figure, never starred)
    is NaN when the standard error is below MIN_STANDARD_ERROR (std 0, or returns equal but for
    rounding).
    """
    values = returns[~np.isnan(returns)]
    n = len(values)
    if n == 0:
        return {"valid": 0, "mean": math.nan, "median": math.nan, "std": math.nan,
                "t_stat": math.nan, "hit_rate": math.nan}
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    t_stat = mean / (std / math.sqrt(n)) if n > 1 and std / math.sqrt(n) >= MIN_STANDARD_ERROR else math.nan
    return {"valid": n, "mean": mean, "median": float(np.median(values)), "std": std,
            "t_stat": t_stat, "hit_rate": share_positive(values)}


def share_positive(returns: np.ndarray) -> float:
    """The share of the returns that are above 0, NaN ones left out (none left: NaN)."""
    values = returns[~np.isnan(returns)]
    return float((values > 0).sum() / len(values)) if len(values) else math.nan


# ------------------------------------------------------------------ the statistics' registry
#
# A row of the summary (window_summary) is the statistics of STATISTICS, in order, over one
# detector's events at one window h. A statistic is a pure function whose parameters name what it
# takes (WindowInputs: an events' column of window h, h, the sign test's null share, or an estimate
# several statistics share) and which returns the columns its registry entry declares, no other.
# The tables' columns are the entries', in registry order (detector_columns, summary_columns).
# Every path runs window_summary: the driver's summarize(), a detector's only finish piece, a split
# detector's WindowJob (sent window_columns()). So adding a statistic is one function, one registry
# entry and one test row (tests/test_summary.py's STATISTIC_CASES; README, "Layout").


@dataclasses.dataclass(frozen=True)
class Statistic:
    """A registry entry: `function` gives the columns `gives` (and no other) from its parameters,
    each a WindowInputs name."""

    gives: tuple[str, ...]
    function: Callable[..., dict[str, Any]]

    @property
    def takes(self) -> tuple[str, ...]:
        """The WindowInputs it takes: its function's parameters."""
        return tuple(inspect.signature(self.function).parameters)

    def needs(self, h: int) -> list[str]:
        """The events' columns it reads at window h (those of the shared inputs it takes included)."""
        return sorted({column for name in self.takes for column in _columns_of(name, h)})


def statistic(*gives: str) -> Callable[[Callable[..., dict[str, Any]]], Statistic]:
    """Decorator: the function as a Statistic that gives the columns `gives`."""
    return lambda function: Statistic(gives, function)


def _values(returns: np.ndarray) -> np.ndarray:
    return returns[~np.isnan(returns)]


@statistic("events")
def events_count(date: np.ndarray) -> dict[str, Any]:
    """How many events the detector has (with a return at this window or not)."""
    return {"events": len(date)}


@statistic("valid", "mean", "median", "std", "t_stat")
def raw_returns(fwd: np.ndarray) -> dict[str, Any]:
    """return_stats() of the raw forward return over the events where it exists (t_stat: as if the
    events were independent)."""
    stats = return_stats(fwd)
    return {column: stats[column] for column in ("valid", "mean", "median", "std", "t_stat")}


@statistic("t_clustered")
def raw_clustered_t(fwd: np.ndarray, date: np.ndarray, symbol: np.ndarray) -> dict[str, Any]:
    """The two-way clustered t of the raw mean."""
    ok = ~np.isnan(fwd)
    return {"t_clustered": mean_estimate(fwd[ok], date[ok], symbol[ok]).t}


@statistic("hit_rate")
def raw_hit_rate(fwd: np.ndarray) -> dict[str, Any]:
    """The share of positive raw forward returns."""
    return {"hit_rate": share_positive(fwd)}


@statistic("market_mean")
def market_mean(abn: np.ndarray, mkt: np.ndarray) -> dict[str, Any]:
    """The market's mean return over the same bars as the events with an abnormal return."""
    good = ~np.isnan(abn)
    return {"market_mean": float(mkt[good].mean()) if good.any() else math.nan}


@statistic("abn_valid")
def abnormal_count(abn: np.ndarray) -> dict[str, Any]:
    """How many events have an abnormal return (none where the market was thin or, for
    market_model, the estimation window too short)."""
    return {"abn_valid": len(_values(abn))}


@statistic("flagged")
def flagged_count(flagged: np.ndarray) -> dict[str, Any]:
    """How many events' h bars cross a flagged outlier bar, whether or not the run left them out
    (exclude_flagged: their returns are NaN)."""
    return {"flagged": int(flagged.sum())}


@statistic("abn_mean", "abn_median")
def abnormal_location(abn: np.ndarray) -> dict[str, Any]:
    """The mean and median abnormal return."""
    values = _values(abn)
    if not len(values):
        return {"abn_mean": math.nan, "abn_median": math.nan}
    return {"abn_mean": float(values.mean()), "abn_median": float(np.median(values))}


@statistic("abn_se", "abn_t", "abn_df", "abn_p")
def abnormal_test(abn_test: Estimate) -> dict[str, Any]:
    """The two-way clustered test of abn_mean = 0 (harness.stats.inference)."""
    return {"abn_se": abn_test.se, "abn_t": abn_test.t, "abn_df": abn_test.df, "abn_p": abn_test.p}


@statistic("abn_hit_rate")
def abnormal_hit_rate(abn: np.ndarray) -> dict[str, Any]:
    """The share of positive abnormal returns."""
    return {"abn_hit_rate": share_positive(abn)}


@statistic("null_hit_rate", "sign_t", "sign_p")
def sign_test(abn: np.ndarray, date: np.ndarray, symbol: np.ndarray, null_hit_rate: float) -> dict[str, Any]:
    """The generalized sign test (Cowan 1992) of abn_hit_rate against null_hit_rate, as the two-way
    clustered t of the mean of 1[abn > 0] - null_hit_rate (NaN null: no test)."""
    good = ~np.isnan(abn)
    null = float(null_hit_rate)
    sign = mean_estimate((abn[good] > 0) - null, date[good], symbol[good]) if null == null else NO_DATA
    return {"null_hit_rate": null, "sign_t": sign.t, "sign_p": sign.p}


@statistic("event_dates", "event_symbols")
def abnormal_clusters(abn_test: Estimate) -> dict[str, Any]:
    """The abnormal test's clusters: how many distinct event dates and symbols it has."""
    return {"event_dates": abn_test.dates, "event_symbols": abn_test.symbols}


NO_RETURN = "no event has a return at this window (each is within {h} bars of its symbol's last bar)"


@statistic("note")
def abnormal_note(abn_test: Estimate, fwd: np.ndarray, abn: np.ndarray, flagged: np.ndarray, h: int) -> dict[str, Any]:
    """Why abn_t is NaN, if it is: the abnormal test's note ("no events", too few clusters, ...);
    but for events without any h-bar return (each within h bars of its symbol's last bar:
    NO_RETURN, or every one with a return left out as flagged) or with returns and no abnormal one,
    where "no events" would be false, what is true."""
    ok, good = ~np.isnan(fwd), ~np.isnan(abn)
    if len(fwd) and not ok.any():
        left_out = int(flagged.sum())
        return {"note": NO_RETURN.format(h=h) if not left_out else (
            f"every event with a return at this window crosses a flagged bar ({left_out} left out: exclude_flagged)")}
    if ok.any() and not good.any():
        return {"note": "no abnormal return (every span crosses a thin market, or, "
                        "for market_model, no estimation window is long enough)"}
    return {"note": abn_test.note}


def valid_mean_estimate(abn: np.ndarray, date: np.ndarray, symbol: np.ndarray) -> Estimate:
    """mean_estimate() of the abnormal returns that exist: the test several statistics report."""
    good = ~np.isnan(abn)
    return mean_estimate(abn[good], date[good], symbol[good])


# The registry: the statistics of a summary row, in the order of their columns.
STATISTICS: tuple[Statistic, ...] = (
    events_count, raw_returns, raw_clustered_t, raw_hit_rate, market_mean, abnormal_count, flagged_count,
    abnormal_location, abnormal_test, abnormal_hit_rate, sign_test, abnormal_clusters, abnormal_note)

# What a statistic may take, by parameter name: an events' column (its name at window h), ...
COLUMNS: dict[str, Callable[[int], str]] = {
    "date": lambda h: "date", "symbol": lambda h: "symbol", "score": lambda h: "score",
    "fwd": forward_column, "abn": abnormal_column, "mkt": market_column, "flagged": flagged_column}
# ... an estimate that several statistics report, computed once per row from its parameters' inputs ...
SHARED: dict[str, Callable[..., Any]] = {"abn_test": valid_mean_estimate}
# ... or the window h and the sign test's null share at h (a universe-wide number: harness.finish).
NUMBERS = ("h", "null_hit_rate")


def _columns_of(name: str, h: int) -> list[str]:
    """The events' columns that WindowInputs' `name` reads at window h."""
    if name in COLUMNS:
        return [COLUMNS[name](h)]
    if name in SHARED:
        return [c for taken in inspect.signature(SHARED[name]).parameters for c in _columns_of(taken, h)]
    if name in NUMBERS:
        return []
    raise KeyError(f"no statistic input is named {name!r}")


class WindowInputs(dict):
    """The inputs of one summary row, each computed when a statistic first takes it: the events'
    columns of window h as numpy arrays (returns as float64; flagged_<h> all False when the frame
    has none), the shared estimates, h and null_hit_rate."""

    def __init__(self, frame: pd.DataFrame, h: int, null_hit_rate: float):
        super().__init__(h=h, null_hit_rate=null_hit_rate)
        self.frame = frame

    def __missing__(self, name: str) -> Any:
        if name in SHARED:
            value = SHARED[name](**{taken: self[taken] for taken in inspect.signature(SHARED[name]).parameters})
        elif name == "flagged":
            column = flagged_column(self["h"])
            value = self.frame[column].to_numpy() if column in self.frame else np.zeros(len(self.frame), bool)
        elif name in ("date", "symbol"):
            value = self.frame[name].to_numpy()
        else:
            value = self.frame[COLUMNS[name](self["h"])].to_numpy(dtype="float64")
        self[name] = value
        return value


def detector_columns() -> list[str]:
    """detector_summary()'s columns: window, then each registered statistic's, in registry order."""
    return ["window", *(column for entry in STATISTICS for column in entry.gives)]


# summarize()'s own columns, over the whole table: first, after a statistic's column (the
# multiplicity adjustments of abn_p, the comparison with the baseline), and last.
TABLE_COLUMNS_FIRST = ("detector", "baseline")
TABLE_COLUMNS_AFTER = {"abn_p": ("abn_p_holm", "abn_q_bh", "abn_significant"),
                       "event_symbols": ("baseline_mean", "vs_baseline", "vs_baseline_se", "vs_baseline_df",
                                         "vs_baseline_t", "vs_baseline_p", "vs_p_holm", "vs_q_bh", "vs_significant")}
TABLE_COLUMNS_LAST = ("symbols", "failed_symbols")


def summary_columns() -> list[str]:
    """summarize()'s columns: the detector_columns() with summarize()'s own among them."""
    return [*TABLE_COLUMNS_FIRST,
            *(c for column in detector_columns() for c in (column, *TABLE_COLUMNS_AFTER.get(column, ()))),
            *TABLE_COLUMNS_LAST]


DETECTOR_COLUMNS = detector_columns()  # the registry's, as shipped
SUMMARY_COLUMNS = summary_columns()


def detector_summary(frame: pd.DataFrame, windows: Sequence[int], null_hit_rates: Mapping[int, float]) -> pd.DataFrame:
    """One detector's part of the summary: detector_columns(), one row per window (window_summary()).
    No events: every statistic NaN (valid 0)."""
    return pd.DataFrame([window_summary(frame, h, null_hit_rates.get(h, math.nan)) for h in windows],
                        columns=detector_columns())


def window_summary(frame: pd.DataFrame, h: int, null_hit_rate: float) -> dict[str, Any]:
    """detector_summary()'s row of window h: each registered statistic of the events (STATISTICS,
    each given only the inputs it takes). frame: the events' date (event date), symbol (symbol
    code), fwd_<h>, abn_<h> and mkt_<h> (the market over the same bars), flagged_<h> (whether its h
    bars cross a flagged outlier bar; optional), whatever else a registered statistic takes.
    null_hit_rate: the share of positive h-bar abnormal returns over every symbol-day of the run
    (the sign test's null; NaN: no sign test).
    - valid, mean, median, std, t_stat, hit_rate: of the raw forward return over the events where
      it exists; t_stat as if events were independent; t_clustered: the same mean's two-way t;
    - over the events that also have an abnormal return (abn_valid of them): market_mean, the
      market's mean return over the same bars; abn_mean, abn_median, abn_hit_rate; abn_se, abn_t,
      abn_df, abn_p: the two-way clustered test of abn_mean = 0, with event_dates and event_symbols
      its clusters; sign_t, sign_p: the generalized sign test; note: why abn_t is NaN, if it is;
    - flagged: how many events' h bars cross a flagged outlier bar.
    No events: every statistic NaN (valid 0), note "no events"; events without any h-bar return:
    the same, and the note says so (NO_RETURN).
    """
    inputs = WindowInputs(frame, h, null_hit_rate)
    row: dict[str, Any] = {"window": h}
    for entry in STATISTICS:
        row.update(entry.function(**{name: inputs[name] for name in entry.takes}))
    return row


def window_columns(h: int) -> list[str]:
    """The events' columns window_statistics() reads at window h: the registered statistics' and
    the quantiles' (date, symbol, score, abn_<h>)."""
    return sorted({*(column for entry in STATISTICS for column in entry.needs(h)),
                   "date", "symbol", "score", abnormal_column(h)})


def window_statistics(frame: pd.DataFrame, bucket: np.ndarray, h: int, null_hit_rate: float, detector: str
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A detector's statistics at window h: (its window_summary() row, its window_quantiles() rows).
    What harness.finish computes per window, for a detector finished in one piece or in several
    (then one job per window). bucket: score_buckets() of the frame's scores."""
    return window_summary(frame, h, null_hit_rate), window_quantiles(frame, bucket, h, detector)


def statistics_tables(rows: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(detector_summary(), score_quantiles()) of a detector from its window_statistics(), windows in
    order: the same tables."""
    return (pd.DataFrame([summary for summary, _ in rows], columns=detector_columns()),
            pd.DataFrame([row for _, quantiles in rows for row in quantiles], columns=QUANTILE_COLUMNS))


def score_quantiles(frame: pd.DataFrame, windows: Sequence[int], detector: str) -> pd.DataFrame:
    """QUANTILE_COLUMNS: the mean abnormal return of the detector's events by score quintile, per
    window, and the top-minus-bottom spread, as alphalens does for factors (window_quantiles()).

    frame: as detector_summary takes it, plus score.
    """
    bucket = score_buckets(frame["score"].to_numpy(dtype="float64"))
    return pd.DataFrame([row for h in windows for row in window_quantiles(frame, bucket, h, detector)],
                        columns=QUANTILE_COLUMNS)


def score_buckets(score: np.ndarray) -> np.ndarray:
    """Each event's score quintile among all the events with a score: 1 the lowest .. QUANTILES,
    0 for no score (NaN). Tied scores share the lower quintile, so a score that takes few values
    leaves some quintiles empty."""
    scored = ~np.isnan(score)
    bucket = np.zeros(len(score), dtype=np.int64)
    ranks = np.searchsorted(np.sort(score[scored]), score[scored], side="left")
    bucket[scored] = ranks * QUANTILES // max(int(scored.sum()), 1) + 1
    return bucket


def window_quantiles(frame: pd.DataFrame, bucket: np.ndarray, h: int, detector: str) -> list[dict[str, Any]]:
    """score_quantiles()'s rows of window h (QUANTILE_COLUMNS). frame: date, symbol, score and
    abn_<h> of the events; bucket: their score_buckets(). Each quintile's events with an abnormal
    return give events, score_low/high (its scores' range), abn_mean and its two-way clustered
    test (abn_se, abn_t, abn_p); the row of quantile SPREAD has the difference of quintile 5's mean
    and quintile 1's with the two-way test of that difference (the stacked regression of
    harness.stats.inference.difference_estimate). note: why a t is NaN.
    """
    score = frame["score"].to_numpy(dtype="float64")
    dates, symbols = frame["date"].to_numpy(), frame["symbol"].to_numpy()
    abn = frame[abnormal_column(h)].to_numpy(dtype="float64")
    good = ~np.isnan(abn)
    members = {q: good & (bucket == q) for q in range(1, QUANTILES + 1)}
    rows = []
    for q, mine in members.items():
        test = mean_estimate(abn[mine], dates[mine], symbols[mine])
        rows.append({"detector": detector, "window": h, "quantile": str(q), "events": int(mine.sum()),
                     "score_low": float(score[mine].min()) if mine.any() else math.nan,
                     "score_high": float(score[mine].max()) if mine.any() else math.nan,
                     "abn_mean": test.value, "abn_se": test.se, "abn_t": test.t, "abn_p": test.p,
                     "note": test.note})
    low, high = members[1], members[QUANTILES]
    spread = difference_estimate(abn[low], dates[low], symbols[low], abn[high], dates[high], symbols[high])
    rows.append({"detector": detector, "window": h, "quantile": SPREAD, "events": int(low.sum() + high.sum()),
                 "score_low": math.nan, "score_high": math.nan, "abn_mean": spread.value, "abn_se": spread.se,
                 "abn_t": spread.t, "abn_p": spread.p, "note": spread.note})
    return rows


def summarize(forward: Mapping[str, pd.DataFrame], windows: Sequence[int], baselines: Mapping[str, str | None],
              symbols: int = 0, failed_symbols: int = 0, null_hit_rates: Mapping[int, float] | None = None,
              detector_tables: Mapping[str, pd.DataFrame] | None = None,
              lookahead: Collection[str] = ()) -> pd.DataFrame:
    """One row per (detector, window) with summary_columns() (SUMMARY_COLUMNS as shipped).

    forward: detector name -> its event rows (as detector_summary takes them), in the order the
    detectors should appear. baselines: detector -> the baseline it varies, or None.
    detector_tables: detector_summary() of some detectors, computed elsewhere (harness.finish's
    jobs compute them beside the events); the others' are computed here. Each detector gets its
    detector_summary rows and:
    - for a variant whose baseline ran: baseline_mean (the baseline's raw mean), vs_baseline
      (abn_mean minus the baseline's) and its two-way clustered test of that difference
      (vs_baseline_se, vs_baseline_df: the degrees of freedom of its t, 0 without a test,
      vs_baseline_t, vs_baseline_p); NaN (df 0) for baselines;
    - multiplicity: abn_p_holm (Holm, family-wise) and abn_q_bh (Benjamini-Hochberg, false
      discovery rate) over every row's abn_p, the run's detector x window tests; vs_p_holm and
      vs_q_bh likewise over the variant comparisons, a family of their own; abn_significant and
      vs_significant: the star, is_significant() of the Holm-adjusted value.
    symbols / failed_symbols: how many symbols were scanned / failed (skipped), repeated on every
    row so that summary.csv says on its own how much of the universe it covers.
    lookahead: detectors that failed the look-ahead check (lookahead_check: warn): their rows say so
    in `note` and get no star, nor does a variant's comparison with one of them as its baseline
    (their p-values stay, and stay in the Holm/BH families).
    """
    given = detector_tables or {}
    nulls = null_hit_rates or {}
    table = pd.concat([(given[detector] if detector in given else detector_summary(frame, windows, nulls))
                       .assign(detector=detector, baseline=baselines.get(detector) or "")
                       for detector, frame in forward.items()], ignore_index=True)
    means = {(r.detector, r.window): (r.mean, r.abn_mean) for r in table.itertuples()}

    def valid(detector: str, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # of the events with abn
        frame = forward[detector]
        abn = frame[abnormal_column(h)].to_numpy(dtype="float64")
        good = ~np.isnan(abn)
        return abn[good], frame["date"].to_numpy()[good], frame["symbol"].to_numpy()[good]

    compared = []
    for detector, base, h in zip(table["detector"], table["baseline"], table["window"]):
        if base and (base, h) in means:
            samples = {"the baseline": (base, valid(base, h)), "this detector": (detector, valid(detector, h))}
            test = difference_estimate(*samples["the baseline"][1], *samples["this detector"][1])
            lacking = [who for who, (name, sample) in samples.items() if len(forward[name]) and not len(sample[0])]
            if lacking:  # events, but none to compare: "no events" would be false
                test = dataclasses.replace(test, note=f"no event of {' or '.join(lacking)} has an abnormal return "
                                                      "at this window")
            compared.append({"baseline_mean": means[(base, h)][0], "vs_baseline": test.value,
                             "vs_baseline_se": test.se, "vs_baseline_df": test.df, "vs_baseline_t": test.t,
                             "vs_baseline_p": test.p,
                             "vs_note": test.note})
        else:
            compared.append({"baseline_mean": math.nan, "vs_baseline": math.nan, "vs_baseline_se": math.nan,
                             "vs_baseline_df": 0, "vs_baseline_t": math.nan, "vs_baseline_p": math.nan, "vs_note": ""})
    compared = pd.DataFrame(compared, index=table.index)
    table = pd.concat([table, compared.drop(columns="vs_note")], axis=1)
    table["note"] = [("; ".join(n for n in (note, f"vs baseline: {vs}" if vs else "") if n))
                     for note, vs in zip(table["note"], compared["vs_note"])]
    table["abn_p_holm"], table["abn_q_bh"] = holm(table["abn_p"]), benjamini_hochberg(table["abn_p"])
    table["vs_p_holm"], table["vs_q_bh"] = holm(table["vs_baseline_p"]), benjamini_hochberg(table["vs_baseline_p"])
    peeks = table["detector"].isin(list(lookahead)).to_numpy()
    # a comparison with a baseline that looks ahead compares with a detector that is not valid: no star either
    base_peeks = table["baseline"].isin(list(lookahead)).to_numpy()
    table["note"] = [("; ".join(n for n in (LOOKS_AHEAD if peek else "", note,
                                            f"vs baseline: its baseline {LOOKS_AHEAD}" if base_peek else "") if n))
                     for note, peek, base_peek in zip(table["note"], peeks, base_peeks)]
    table["abn_significant"] = [is_significant(p) and not peek for p, peek in zip(table["abn_p_holm"], peeks)]
    peeks_against = peeks | base_peeks
    table["vs_significant"] = [is_significant(p) and not peek for p, peek in zip(table["vs_p_holm"], peeks_against)]
    table["symbols"] = symbols
    table["failed_symbols"] = failed_symbols
    return table[summary_columns()]


LOOKS_AHEAD = "looks ahead (lookahead_check: warn)"


def is_significant(adjusted_p: float) -> bool:
    """Whether a test is starred: its multiplicity-adjusted p is below SIGNIFICANCE (NaN: never)."""
    return bool(adjusted_p < SIGNIFICANCE)


class PathSums:
    """Running sums for the event-time paths of one detector, per offset.

    offsets: the offsets k (bars from the event, negative = before); dates: the market's dates
    (every event date is one); symbols: how many symbols the run has (event symbols are codes
    below it). add() takes events in symbol order, chunk by chunk; add_sums() adds another
    PathSums' totals (harness.finish's units, in unit order); paths() turns the sums into the paths
    table. Kept: per (event date, offset) the returns' and abnormal returns' sums and counts, per
    (symbol, offset) the abnormal returns' sums and counts, per offset the sum of squared abnormal
    returns: what the two-way clustered band needs. Memory: (4 x dates + 2 x symbols + 1) x offsets
    numbers, whatever the number of events.
    """

    FIELDS = ("ret", "ret_count", "abn", "abn_count", "symbol_abn", "symbol_count", "squares")

    def __init__(self, offsets: Sequence[int], dates: np.ndarray, symbols: int):
        self.offsets = list(offsets)
        self.dates = np.asarray(dates)
        by_date, by_symbol = (len(self.dates), len(self.offsets)), (symbols, len(self.offsets))
        self.ret, self.abn = np.zeros(by_date), np.zeros(by_date)
        self.ret_count, self.abn_count = np.zeros(by_date, dtype=np.int64), np.zeros(by_date, dtype=np.int64)
        self.symbol_abn, self.symbol_count = np.zeros(by_symbol), np.zeros(by_symbol, dtype=np.int64)
        self.squares = np.zeros(len(self.offsets))

    def add(self, event_dates: np.ndarray, event_symbols: np.ndarray, ret: np.ndarray, abn: np.ndarray) -> None:
        """Add events: their dates and symbol codes, and [event, offset] arrays of their return and
        abnormal return (NaN where the bar does not exist, or there is no abnormal return)."""
        # Sums over the event dates (and symbols) present only (a chunk of a rare detector has few):
        # the same bits as over every date, since np.bincount adds in input order (events in symbol
        # order) and a date without events would add 0.0.
        width = len(self.offsets)
        by_date = np.unique(np.searchsorted(self.dates, event_dates), return_inverse=True)
        by_symbol = np.unique(np.asarray(event_symbols), return_inverse=True)
        ret_ok, abn_ok = ~np.isnan(ret), ~np.isnan(abn)
        for (present, at), pairs in ((by_date, ((ret, ret_ok, self.ret, self.ret_count),
                                                (abn, abn_ok, self.abn, self.abn_count))),
                                     (by_symbol, ((abn, abn_ok, self.symbol_abn, self.symbol_count),))):
            grid = at.reshape(-1)[:, None] * width + np.arange(width)[None, :]  # [event, offset] cell numbers
            size, shape = present.size * width, (present.size, width)
            for values, ok, sums, counts in pairs:
                cells = grid[ok]
                sums[present] += np.bincount(cells, weights=values[ok], minlength=size).reshape(shape)
                counts[present] += np.bincount(cells, minlength=size).reshape(shape)
        offset = np.broadcast_to(np.arange(width)[None, :], abn.shape)[abn_ok]  # in event order
        self.squares += np.bincount(offset, weights=abn[abn_ok] * abn[abn_ok], minlength=width)

    def arrays(self) -> dict[str, np.ndarray]:
        """The sums by name (FIELDS), e.g. to save them."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def add_sums(self, **arrays: np.ndarray) -> None:
        """Add another PathSums' arrays() (of the same offsets, dates and symbols)."""
        for name in self.FIELDS:
            getattr(self, name).__iadd__(arrays[name])

    def paths(self, detector: str) -> pd.DataFrame:
        """PATH_COLUMNS, one row per offset: events with that bar and their mean_ret; abn_events with an
        abnormal return there, their mean_abn and its 95% band mean_abn -+ the t(G - 1) critical value
        x the two-way clustered standard error (as harness.stats.inference.mean_estimate computes it). NaN
        means where no event has that bar; NaN band where the test has no t (fewer than
        MIN_CLUSTERS event dates or symbols)."""
        rows = []
        for k, offset in enumerate(self.offsets):
            events, n = int(self.ret_count[:, k].sum()), int(self.abn_count[:, k].sum())
            mean_ret = float(self.ret[:, k].sum() / events) if events else math.nan
            low = high = mean_abn = math.nan
            if n:
                total = float(self.abn[:, k].sum())
                mean_abn = total / n
                by_date = self.abn[:, k] - self.abn_count[:, k] * mean_abn
                by_symbol = self.symbol_abn[:, k] - self.symbol_count[:, k] * mean_abn
                by_event = float(self.squares[k]) - total * mean_abn  # sum of (abn - mean)^2: one event per pair
                clusters = (int((self.abn_count[:, k] > 0).sum()), int((self.symbol_count[:, k] > 0).sum()), n)
                squares = (float((by_date * by_date).sum()) / (n * n), float((by_symbol * by_symbol).sum()) / (n * n),
                           by_event / (n * n))
                low, high = estimate(mean_abn, two_way_variance(squares, clusters, n, 1),
                                     clusters[0], clusters[1]).interval()
            rows.append({"detector": detector, "offset": offset, "events": events, "mean_ret": mean_ret,
                         "abn_events": n, "mean_abn": mean_abn, "abn_low": low, "abn_high": high})
        return pd.DataFrame(rows, columns=PATH_COLUMNS)


SUMMARY_LEGEND = ("*: p (Holm) < 5% (vs t: Holm over the comparisons with baselines)  -: no test, see note  "
                  "abn n: events with an abnormal return, used by abn mean, abn t, p (Holm)")


def format_summary(table: pd.DataFrame) -> str:
    """A fixed-width text table for the terminal, one row per (detector, window), returns in %, and
    SUMMARY_LEGEND on the line below it.

    Shows events (all), the raw mean, abn n (the events with an abnormal return: events less those
    whose window crosses a thin market or, for market_model, has too short an estimation window),
    the abnormal mean with its two-way clustered t and Holm-adjusted p, and for a variant the
    difference of abnormal means against its baseline with the t of that difference. A t is
    starred when summary.csv stars it (abn_significant, vs_significant: Holm-adjusted p below 5%,
    none for a detector that looks ahead); a test that has no t (too few event dates or symbols)
    shows '-' and the note column says why.
    """
    percent = lambda v: "" if pd.isna(v) else f"{100 * v:+.2f}%"  # noqa: E731

    def t_value(t: float, starred: bool, tested: bool) -> str:
        if not tested:
            return ""
        return "-" if pd.isna(t) else f"{t:.2f}" + ("*" if starred else " ")

    has_vs = [bool(b) and not pd.isna(v) for v, b in zip(table["vs_baseline"], table["baseline"])]
    shown = pd.DataFrame({
        "detector": table["detector"], "window": table["window"], "events": table["events"],
        "mean": table["mean"].map(percent), "abn n": table["abn_valid"], "abn mean": table["abn_mean"].map(percent),
        "abn t": [t_value(t, star, True) for t, star in zip(table["abn_t"], table["abn_significant"])],
        "p (Holm)": ["-" if pd.isna(p) else f"{p:.3f}" for p in table["abn_p_holm"]],
        "vs baseline": [f"{percent(v)} vs {b}" if shown else ""
                        for v, b, shown in zip(table["vs_baseline"], table["baseline"], has_vs)],
        "vs t": [t_value(t, star, shown) for t, star, shown in zip(table["vs_baseline_t"], table["vs_significant"],
                                                                     has_vs)],
        "note": table["note"].fillna("")})
    return f"{shown.to_string(index=False)}\n{SUMMARY_LEGEND}"


def intervals(mean: pd.Series, se: pd.Series, df: pd.Series, level: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of mean -+ the t(df) critical value x se, the (1 - level) intervals of
    summary.csv's rows; NaN where se is NaN (no test)."""
    rows = [Estimate(m, s, math.nan, math.nan, int(d), 0, 0).interval(level) if s == s else (math.nan, math.nan)
            for m, s, d in zip(mean, se, df)]
    return np.array([r[0] for r in rows], dtype="float64"), np.array([r[1] for r in rows], dtype="float64")


def events_per_year(dates: pd.Series) -> pd.Series:
    """Number of events per calendar year, indexed by year, every year from first to last present."""
    if dates.empty:
        return pd.Series([], dtype="int64")
    years = np.asarray(dates, dtype="datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970
    counts = np.bincount(years - years.min())
    return pd.Series(counts, index=np.arange(years.min(), years.max() + 1))


def histogram(values: np.ndarray, pooled: np.ndarray, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(density, edges) of `values` on bins spanning the 1st-99th percentile of `pooled` (so that
    several detectors share bins); NaN values are left out, and so are values outside the range."""
    pooled = pooled[~np.isnan(pooled)]
    values = values[~np.isnan(values)]
    if len(pooled) == 0:
        return np.zeros(bins), np.linspace(-0.1, 0.1, bins + 1)
    low, high = np.percentile(pooled, [1, 99])
    if low == high:
        low, high = low - 0.01, high + 0.01
    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    width = edges[1] - edges[0]
    return (counts / (counts.sum() * width) if counts.sum() else counts.astype("float64")), edges


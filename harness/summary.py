"""Summary statistics of forward returns per (detector, window), and their text rendering. Pure."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.eval import abnormal_column, forward_column, market_column

SUMMARY_COLUMNS = ["detector", "baseline", "window", "events", "valid", "mean", "median", "std", "t_stat",
                   "t_clustered", "hit_rate", "market_mean", "abn_mean", "abn_median", "abn_hit_rate", "abn_t",
                   "baseline_mean", "vs_baseline", "vs_baseline_t", "symbols", "failed_symbols"]
PATH_COLUMNS = ["detector", "offset", "events", "mean_ret", "mean_abn", "abn_low", "abn_high"]
Z_95 = 1.959963984540054  # two-sided 95% normal quantile
# A t-statistic needs a standard error above floating-point rounding. Returns are fractions: a
# real one's standard error is above 1e-7 even for millions of events, while returns that are
# constant but for rounding (the abnormal returns of a one-symbol universe, whose market is the
# stock itself: ~1e-17 each) have one near 1e-17 and would give any t at all, "significant" too.
MIN_STANDARD_ERROR = 1e-12


def return_stats(returns: np.ndarray) -> dict[str, float | int]:
    """valid, mean, median, std (ddof=1), t_stat = mean / (std / sqrt(valid)), hit_rate = share > 0.

    NaN entries are not valid and are left out. With no valid return every statistic is NaN; with
    one, std and t_stat are NaN; t_stat is NaN when the standard error is below MIN_STANDARD_ERROR
    (std 0, or returns equal but for rounding).
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
            "t_stat": t_stat, "hit_rate": float((values > 0).sum() / n)}


def _cluster_ids(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """(cluster number of each value, number of clusters) for any array of labels (dates): the
    clusters numbered in the labels' sorted order."""
    if groups.dtype.kind == "M":  # midnights (event dates): day numbers, which need no sort
        days, rest = np.divmod(groups.astype("datetime64[ns]").view(np.int64), 86_400 * 10**9)
        groups = groups if rest.any() else days
    if groups.dtype.kind in "iu" and len(groups) and int(groups.max()) - int(groups.min()) < 4 * len(groups) + 1024:
        at = groups.astype(np.int64) - int(groups.min())  # int64: a narrow type would wrap
        number = np.cumsum(np.bincount(at) > 0) - 1
        return number[at], int(number[-1]) + 1
    _, ids = np.unique(groups, return_inverse=True)
    ids = ids.reshape(-1)
    return ids, int(ids.max()) + 1 if len(ids) else 0


def clustered_mean_t(values: np.ndarray, groups: np.ndarray) -> float:
    """t-value of the mean of `values` with the standard error clustered by `groups` (event dates).

    The same number as the constant's t in statsmodels
    `OLS(values, ones).fit(cov_type="cluster", cov_kwds={"groups": groups})`: with residuals
    u = values - mean and S_g their sum over cluster g, var(mean) = G / (G - 1) * sum_g S_g^2 / N^2
    (statsmodels' default small-sample correction; (N - 1) / (N - K) is 1 for K = 1 regressor).
    Written out with +, -, *, / and sqrt only (no BLAS), so the bytes are the same on every CPU.
    NaN with fewer than two clusters or when the standard error is below MIN_STANDARD_ERROR.
    """
    ids, clusters = _cluster_ids(groups)
    if clusters < 2:
        return math.nan
    mean = values.mean()
    scores = np.bincount(ids, weights=values - mean, minlength=clusters)
    var = clusters / (clusters - 1) * float((scores * scores).sum()) / (len(values) * len(values))
    return float(mean / math.sqrt(var)) if var >= MIN_STANDARD_ERROR ** 2 else math.nan


def clustered_difference_t(base: np.ndarray, base_groups: np.ndarray, other: np.ndarray,
                           other_groups: np.ndarray) -> float:
    """t-value of the dummy in the stacked OLS y ~ 1 + is_other over both samples, clustered by group.

    The same number as statsmodels' `OLS(y, [1, d]).fit(cov_type="cluster", ...)` t of d, with its
    default correction G / (G - 1) * (N - 1) / (N - 2). The coefficient is mean(other) - mean(base);
    with residuals u (each value less its own sample's mean), per cluster the scores
    s_g = (sum_g u, sum_g d*u), and bread B = inv(X'X) written out for the dummy design, the
    variance of the coefficient is c * (B M B)[1, 1] with M = sum_g s_g s_g'. Only +, -, *, /, sqrt.
    NaN when either sample is empty, with fewer than two clusters, or a standard error below
    MIN_STANDARD_ERROR.
    """
    n_base, n_other = len(base), len(other)
    if n_base == 0 or n_other == 0:
        return math.nan
    ids, clusters = _cluster_ids(np.concatenate([base_groups, other_groups]))
    if clusters < 2 or n_base + n_other < 3:
        return math.nan
    mean_base, mean_other = base.mean(), other.mean()
    residual = np.concatenate([base - mean_base, other - mean_other])
    dummy_residual = np.concatenate([np.zeros(n_base), other - mean_other])
    s0 = np.bincount(ids, weights=residual, minlength=clusters)
    s1 = np.bincount(ids, weights=dummy_residual, minlength=clusters)
    m00, m01, m11 = float((s0 * s0).sum()), float((s0 * s1).sum()), float((s1 * s1).sum())
    n = n_base + n_other
    # B = inv([[n, n_other], [n_other, n_other]]); its second row is (-1/n_base, n/(n_other*n_base)).
    b10, b11 = -1.0 / n_base, n / (n_other * n_base)
    meat = b10 * b10 * m00 + 2 * b10 * b11 * m01 + b11 * b11 * m11
    var = clusters / (clusters - 1) * (n - 1) / (n - 2) * meat
    return float((mean_other - mean_base) / math.sqrt(var)) if var >= MIN_STANDARD_ERROR ** 2 else math.nan


DETECTOR_COLUMNS = ["window", "events", "valid", "mean", "median", "std", "t_stat", "t_clustered", "hit_rate",
                    "market_mean", "abn_mean", "abn_median", "abn_hit_rate", "abn_t"]


def detector_summary(frame: pd.DataFrame, windows: Sequence[int]) -> pd.DataFrame:
    """One detector's part of the summary: DETECTOR_COLUMNS, one row per window.

    frame: its event rows, with columns date (the event date, the cluster of the clustered
    statistics), fwd_<h>, abn_<h> and mkt_<h> (the market over the same bars) for each window.
    Over the events whose fwd_<h> is valid (not NaN):
    - valid, mean, median, std, t_stat, hit_rate: of the raw forward return, t_stat as if events
      were independent; t_clustered: the same mean's t with errors clustered by event date;
    - market_mean: the mean of the market's return over the same bars; abn_mean, abn_median,
      abn_hit_rate, abn_t: of the abnormal return fwd - market, abn_t clustered by date.
    No events: every statistic NaN (valid 0).
    """
    dates = frame["date"].to_numpy()
    rows = []
    for h in windows:
        raw = frame[forward_column(h)].to_numpy(dtype="float64")
        ok = ~np.isnan(raw)
        abn = frame[abnormal_column(h)].to_numpy(dtype="float64")[ok]
        market = frame[market_column(h)].to_numpy(dtype="float64")[ok]
        stats = return_stats(raw)
        abn_stats = return_stats(abn)
        rows.append({"window": h, "events": len(frame), **stats, "t_clustered": clustered_mean_t(raw[ok], dates[ok]),
                     "market_mean": float(market.mean()) if len(market) else math.nan,
                     "abn_mean": abn_stats["mean"], "abn_median": abn_stats["median"],
                     "abn_hit_rate": abn_stats["hit_rate"], "abn_t": clustered_mean_t(abn, dates[ok])})
    return pd.DataFrame(rows, columns=DETECTOR_COLUMNS)


def summarize(forward: Mapping[str, pd.DataFrame], windows: Sequence[int], baselines: Mapping[str, str | None],
              symbols: int = 0, failed_symbols: int = 0,
              detector_tables: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per (detector, window) with SUMMARY_COLUMNS.

    forward: detector name -> its event rows (as detector_summary takes them), in the order the
    detectors should appear. baselines: detector -> the baseline it varies, or None.
    detector_tables: detector_summary() of some detectors, computed elsewhere (harness.finish's
    jobs compute them beside the events); the others' are computed here. Each detector gets its
    detector_summary rows and:
    - for a variant whose baseline ran: baseline_mean (the baseline's raw mean), vs_baseline
      (abn_mean minus the baseline's) and vs_baseline_t (the stacked, date-clustered test of that
      difference); NaN for baselines.
    symbols / failed_symbols: how many symbols were scanned / failed (skipped), repeated on every
    row so that summary.csv says on its own how much of the universe it covers.
    """
    given = detector_tables or {}
    table = pd.concat([(given[detector] if detector in given else detector_summary(frame, windows))
                       .assign(detector=detector, baseline=baselines.get(detector) or "")
                       for detector, frame in forward.items()], ignore_index=True)
    means = {(r.detector, r.window): (r.mean, r.abn_mean) for r in table.itertuples()}

    def valid(detector: str, h: int) -> tuple[np.ndarray, np.ndarray]:  # (abn, dates) of the valid events
        frame = forward[detector]
        ok = ~np.isnan(frame[forward_column(h)].to_numpy(dtype="float64"))
        return frame[abnormal_column(h)].to_numpy(dtype="float64")[ok], frame["date"].to_numpy()[ok]

    base_mean, vs, vs_t = [], [], []
    for detector, base, h in zip(table["detector"], table["baseline"], table["window"]):
        if base and (base, h) in means:
            base_mean.append(means[(base, h)][0])
            vs.append(means[(detector, h)][1] - means[(base, h)][1])
            vs_t.append(clustered_difference_t(*valid(base, h), *valid(detector, h)))
        else:
            base_mean.append(math.nan)
            vs.append(math.nan)
            vs_t.append(math.nan)
    table["baseline_mean"], table["vs_baseline"], table["vs_baseline_t"] = base_mean, vs, vs_t
    table["symbols"] = symbols
    table["failed_symbols"] = failed_symbols
    return table[SUMMARY_COLUMNS]


class PathSums:
    """Running sums for the event-time paths of one detector, per (event date, offset).

    offsets: the offsets k (bars from the event, negative = before); dates: the market's dates
    (every event date is one). add() takes events in symbol order, chunk by chunk; add_sums() adds
    another PathSums' totals (harness.finish's units, in unit order); paths() turns the sums into
    the paths table. Memory: 3 x dates x offsets numbers, whatever the number of events.
    """

    def __init__(self, offsets: Sequence[int], dates: np.ndarray):
        self.offsets = list(offsets)
        self.dates = np.asarray(dates)
        shape = (len(self.dates), len(self.offsets))
        self.ret, self.abn, self.count = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)

    def add(self, event_dates: np.ndarray, ret: np.ndarray, mkt: np.ndarray) -> None:
        """Add events: their dates, and [event, offset] arrays of their return and the market's over
        the same bars (NaN where the bar does not exist)."""
        # Sums over the event dates present only (a chunk of a rare detector has few): the same
        # bits as over every date, since np.bincount adds in input order (events in symbol order)
        # and a date without events would add 0.0.
        dates, at = np.unique(np.searchsorted(self.dates, event_dates), return_inverse=True)
        width = len(self.offsets)
        ok = ~np.isnan(ret)
        cells = (at.reshape(-1)[:, None] * width + np.arange(width)[None, :])[ok]
        shape = (len(dates), width)
        self.ret[dates] += np.bincount(cells, weights=ret[ok], minlength=dates.size * width).reshape(shape)
        self.abn[dates] += np.bincount(cells, weights=ret[ok] - mkt[ok], minlength=dates.size * width).reshape(shape)
        self.count[dates] += np.bincount(cells, minlength=dates.size * width).reshape(shape)

    def add_sums(self, ret: np.ndarray, abn: np.ndarray, count: np.ndarray) -> None:
        """Add another PathSums' ret, abn and count (of the same offsets and dates)."""
        self.ret += ret
        self.abn += abn
        self.count += count

    def paths(self, detector: str) -> pd.DataFrame:
        """PATH_COLUMNS, one row per offset: events with that bar, mean_ret, mean_abn and its 95% band
        mean_abn -+ 1.96 x the date-clustered standard error (as in clustered_mean_t). NaN means
        where no event has that bar; NaN band with fewer than two event dates."""
        rows = []
        for k, offset in enumerate(self.offsets):
            n = self.count[:, k]
            total = int(n.sum())
            mean_ret = float(self.ret[:, k].sum() / total) if total else math.nan
            mean_abn = float(self.abn[:, k].sum() / total) if total else math.nan
            clusters = int((n > 0).sum())
            low = high = math.nan
            if clusters >= 2:
                scores = self.abn[:, k] - n * mean_abn
                var = clusters / (clusters - 1) * float((scores * scores).sum()) / (total * total)
                half = Z_95 * math.sqrt(var)
                low, high = mean_abn - half, mean_abn + half
            rows.append({"detector": detector, "offset": offset, "events": total, "mean_ret": mean_ret,
                         "mean_abn": mean_abn, "abn_low": low, "abn_high": high})
        return pd.DataFrame(rows, columns=PATH_COLUMNS)


def format_summary(table: pd.DataFrame) -> str:
    """A fixed-width text table for the terminal, one row per (detector, window), returns in %.

    Shows events, the raw mean, the abnormal (market-adjusted) mean with its date-clustered t, and
    for a variant the difference of abnormal means against its baseline with the t of that
    difference; a t whose size is at least 1.96 (5% two-sided) is marked with '*'.
    """
    percent = lambda v: "" if pd.isna(v) else f"{100 * v:+.2f}%"  # noqa: E731
    t_value = lambda v: "" if pd.isna(v) else f"{v:.2f}" + ("*" if abs(v) >= 1.96 else " ")  # noqa: E731
    shown = pd.DataFrame({
        "detector": table["detector"], "window": table["window"], "events": table["events"],
        "mean": table["mean"].map(percent), "abn mean": table["abn_mean"].map(percent),
        "abn t": table["abn_t"].map(t_value),
        "vs baseline": [f"{percent(v)} vs {b}" if b and not pd.isna(v) else ""
                        for v, b in zip(table["vs_baseline"], table["baseline"])],
        "vs t": table["vs_baseline_t"].map(t_value)})
    return shown.to_string(index=False)


def clustered_interval(mean: pd.Series, t: pd.Series, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of mean -+ z * se with se = |mean / t| (the clustered standard error behind t).

    NaN where t is NaN or 0.
    """
    mean = np.asarray(mean, dtype="float64")
    t = np.asarray(t, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(t != 0, z * np.abs(mean / t), np.nan)
    return mean - half, mean + half


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


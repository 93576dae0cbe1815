"""Inference for event studies: two-way clustered tests of means and differences, and multiplicity.

Events crowd on market-wide days and repeat on the same names with overlapping windows, so their
returns are correlated within an event date and within a symbol. Every test here clusters by both
(Cameron, Gelbach & Miller 2011): var = V_date + V_symbol - V_date&symbol, each V the one-way
cluster-robust (CR1) variance with its own small-sample factor G / (G - 1) * (N - 1) / (N - K) --
the same numbers as statsmodels' OLS(...).fit(cov_type="cluster", cov_kwds={"groups": [dates,
symbols]}), which tests/test_inference.py checks at rtol 1e-9. The reference distribution is
Student's t with G - 1 degrees of freedom, G the smaller of the numbers of dates and symbols
(statsmodels' choice too); with fewer than MIN_CLUSTERS of either there is no t at all: the
estimate says why in `note`.

Sums are added in input order (np.bincount) with +, -, *, /, sqrt only, so the bits do not depend
on the CPU (harness.stats.distributions for the p-values).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from harness.stats.distributions import t_critical_value, t_two_sided_p

# Below this many event dates or symbols a clustered standard error is itself too noisy to judge a
# mean by (the placebo study in STATISTICS.md: with 2-5 dates the old date-clustered t was starred
# 13-30% of the time at a nominal 5%).
MIN_CLUSTERS = 10
# A t-statistic needs a standard error above floating-point rounding. Returns are fractions: a
# real one's standard error is above 1e-7 even for millions of events, while returns that are
# constant but for rounding (the abnormal returns of a one-symbol universe, whose market is the
# stock itself: ~1e-17 each) have one near 1e-17 and would give any t at all.
MIN_STANDARD_ERROR = 1e-12
SIGNIFICANCE = 0.05  # the level of every star, after the multiplicity adjustment


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean (or difference) with its two-way clustered test.

    se, t, p: NaN when there is no test, and then `note` says why; a note with a test says that
    the larger one-way variance stood in for a two-way one that was not positive (ONE_WAY_NOTE).
    df: degrees of freedom of the t (clusters - 1; 0 without a test).
    dates, symbols: how many distinct event dates and symbols the sample has.
    """

    value: float
    se: float
    t: float
    p: float
    df: int
    dates: int
    symbols: int
    note: str = ""

    def interval(self, level: float = 0.05) -> tuple[float, float]:
        """value -+ the t(df) critical value x se: the (1 - level) interval; NaN without a test."""
        if not self.se == self.se:
            return math.nan, math.nan
        half = t_critical_value(self.df, level) * self.se
        return self.value - half, self.value + half


NO_DATA = Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0, 0, "no events")


def cluster_ids(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(cluster number of each label, number of clusters) for any array of labels (dates, codes):
    the clusters numbered in the labels' sorted order."""
    if labels.dtype.kind == "M":  # midnights (event dates): day numbers, which need no sort
        days, rest = np.divmod(labels.astype("datetime64[ns]").view(np.int64), 86_400 * 10**9)
        labels = labels if rest.any() else days
    if labels.dtype.kind in "iu" and len(labels) and int(labels.max()) - int(labels.min()) < 4 * len(labels) + 1024:
        at = labels.astype(np.int64) - int(labels.min())  # int64: a narrow type would wrap
        number = np.cumsum(np.bincount(at) > 0) - 1
        return number[at], int(number[-1]) + 1
    _, ids = np.unique(labels, return_inverse=True)
    ids = ids.reshape(-1)
    return ids, int(ids.max()) + 1 if len(ids) else 0


def _pair_ids(date_ids: np.ndarray, dates: int, symbol_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Cluster numbers of the (date, symbol) intersections; one event per pair (one detector's
    events, in symbol and date order) needs no sort."""
    key = symbol_ids.astype(np.int64) * max(dates, 1) + date_ids
    if len(key) and (np.diff(key) > 0).all():
        return np.arange(len(key)), len(key)
    return cluster_ids(key)


def _square_sum(scores: np.ndarray, ids: np.ndarray, clusters: int) -> float:
    """sum over clusters of (the sum of `scores` in the cluster) squared."""
    sums = np.bincount(ids, weights=scores, minlength=clusters)
    return float((sums * sums).sum())


ONE_WAY_NOTE = "two-way variance not positive: the larger one-way one used"


def two_way_variance(square_sums: tuple[float, float, float], clusters: tuple[int, int, int],
                     n: int, k: int) -> tuple[float, str]:
    """(V_date + V_symbol - V_pair, "") from each grouping's sum of squared cluster scores (scores
    projected on the coefficient, i.e. already multiplied by its row of the bread), with the CR1
    factor G / (G - 1) * (N - 1) / (N - K) each. NaN with fewer than 2 clusters in a grouping.

    The difference can be 0 or negative (Cameron, Gelbach & Miller 2011, section 2.3), typically when
    a variant is a filter of its baseline: their shared events sit in one intersection cluster with
    scores of opposite sign, and overlapping windows make neighbouring scores cancel within a date
    and a symbol. Then the larger of V_date and V_symbol is used, conservative where the two-way
    one breaks down, with ONE_WAY_NOTE as the second element (statsmodels would give no t).
    """
    if min(clusters) < 2 or n <= k:
        return math.nan, ""
    date, symbol, pair = (g / (g - 1) * (n - 1) / (n - k) * s for g, s in zip(clusters, square_sums))
    both = date + symbol - pair
    return (both, "") if both > 0 else (max(date, symbol), ONE_WAY_NOTE)


def estimate(value: float, variance: tuple[float, str], dates: int, symbols: int) -> Estimate:
    """The Estimate of `value` with two_way_variance() `variance`: a t and p from
    t(min(dates, symbols) - 1) when both have at least MIN_CLUSTERS clusters and the standard error
    is a number above MIN_STANDARD_ERROR; else NaN ones and a note saying why."""
    variance, remark = variance
    note = ""
    if not value == value:
        note = "no valid return"
    elif dates < MIN_CLUSTERS or symbols < MIN_CLUSTERS:
        few = [f"{dates} event date{'s' * (dates != 1)}"] * (dates < MIN_CLUSTERS) \
            + [f"{symbols} symbol{'s' * (symbols != 1)}"] * (symbols < MIN_CLUSTERS)
        note = f"{' and '.join(few)}: no t below {MIN_CLUSTERS}"
    elif not variance > 0:
        note = "no variation"
    elif math.sqrt(variance) < MIN_STANDARD_ERROR:
        note = "no variation beyond rounding"
    if note:
        return Estimate(value, math.nan, math.nan, math.nan, 0, dates, symbols, note)
    se = math.sqrt(variance)
    df = min(dates, symbols) - 1
    t = value / se
    return Estimate(value, se, t, t_two_sided_p(t, df), df, dates, symbols, remark)


def mean_estimate(values: np.ndarray, dates: np.ndarray, symbols: np.ndarray) -> Estimate:
    """The mean of `values` with its two-way clustered t: statsmodels' OLS(values, 1) with
    groups (dates, symbols). dates: event dates (datetime64) or any labels; symbols: symbol codes.
    NaN values are the caller's to leave out. No values: NO_DATA."""
    n = len(values)
    if n == 0:
        return NO_DATA
    mean = float(values.mean())
    residual = (values - mean) / n  # the score projected on the mean: bread 1 / N
    date_ids, n_dates = cluster_ids(dates)
    symbol_ids, n_symbols = cluster_ids(symbols)
    pair_ids, n_pairs = _pair_ids(date_ids, n_dates, symbol_ids)
    squares = tuple(_square_sum(residual, ids, g) for ids, g in
                    ((date_ids, n_dates), (symbol_ids, n_symbols), (pair_ids, n_pairs)))
    return estimate(mean, two_way_variance(squares, (n_dates, n_symbols, n_pairs), n, 1), n_dates, n_symbols)


def difference_estimate(base: np.ndarray, base_dates: np.ndarray, base_symbols: np.ndarray,
                        other: np.ndarray, other_dates: np.ndarray, other_symbols: np.ndarray) -> Estimate:
    """mean(other) - mean(base) with its two-way clustered t: the dummy's coefficient in the stacked
    OLS y ~ 1 + is_other over both samples, groups (dates, symbols), as statsmodels computes it
    (K = 2). An event of both samples on one (date, symbol) is one intersection cluster.
    Either sample empty: NO_DATA with the note "no events"."""
    n_base, n_other = len(base), len(other)
    if n_base == 0 or n_other == 0:
        return NO_DATA
    n = n_base + n_other
    mean_base, mean_other = float(base.mean()), float(other.mean())
    # The bread's row of the dummy, inv([[n, n_other], [n_other, n_other]])[1] = (-1/n_base,
    # n/(n_other n_base)): a score (u, d u) projects to -u/n_base (base) or u/n_other (other).
    projected = np.concatenate([-(base - mean_base) / n_base, (other - mean_other) / n_other])
    date_ids, n_dates = cluster_ids(np.concatenate([base_dates, other_dates]))
    symbol_ids, n_symbols = cluster_ids(np.concatenate([base_symbols, other_symbols]))
    pair_ids, n_pairs = cluster_ids(symbol_ids.astype(np.int64) * max(n_dates, 1) + date_ids)
    squares = tuple(_square_sum(projected, ids, g) for ids, g in
                    ((date_ids, n_dates), (symbol_ids, n_symbols), (pair_ids, n_pairs)))
    return estimate(mean_other - mean_base, two_way_variance(squares, (n_dates, n_symbols, n_pairs), n, 2),
                    n_dates, n_symbols)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error) of the non-NaN entries of `p`, which
    form the family; NaN stays NaN. adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = np.asarray(p, dtype="float64")
    out = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate) of the non-NaN entries of `p`; NaN stays
    NaN. q_(i) = min over j >= i of min(1, m p_(j) / j)."""
    p = np.asarray(p, dtype="float64")
    out = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, m * float(p[i]) / (rank + 1))
        out[i] = running
    return out

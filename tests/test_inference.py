"""Two-way clustered tests and multiplicity adjustments, against statsmodels on the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from conftest import statsmodels_fit
from harness.stats.inference import (MIN_CLUSTERS, ONE_WAY_NOTE, benjamini_hochberg, cluster_ids, difference_estimate,
                               holm, mean_estimate)

RTOL = 1e-9  # statsmodels solves the same OLS by pinv; the last bits of its sums differ from ours


def panel(rng, n, dates, symbols, date_shock=0.03, symbol_shock=0.02):
    d, s = rng.integers(0, dates, n), rng.integers(0, symbols, n)
    y = rng.normal(0.002, 0.05, n) + date_shock * rng.normal(size=dates)[d] + symbol_shock * rng.normal(size=symbols)[s]
    return y, d, s


@pytest.mark.parametrize("n, dates, symbols", [(800, 60, 25), (300, 12, 200), (2000, 500, 10), (400, 400, 400)])
def test_mean_estimate_equals_statsmodels_two_way(n, dates, symbols):
    rng = np.random.default_rng(n + dates)
    y, d, s = panel(rng, n, dates, symbols)
    fit, mine = statsmodels_fit(y, d, s), mean_estimate(y, d, s)
    assert mine.value == pytest.approx(fit.params[0], rel=1e-12)
    assert mine.se == pytest.approx(fit.bse[0], rel=RTOL) and mine.t == pytest.approx(fit.tvalues[0], rel=RTOL)
    assert mine.df == fit.df_resid_inference and mine.p == pytest.approx(fit.pvalues[0], rel=1e-8)
    assert (mine.dates, mine.symbols, mine.note) == (len(set(d)), len(set(s)), "")


def test_one_detectors_events_take_the_unsorted_path_and_the_sorted_one_alike():
    # one event per (symbol, date) in symbol, date order: the intersections need no sort
    rng = np.random.default_rng(5)
    symbols = np.repeat(np.arange(30), 40)
    dates = np.concatenate([np.sort(rng.choice(300, 40, replace=False)) for _ in range(30)])
    y = rng.normal(0.001, 0.04, len(dates)) + 0.02 * rng.normal(size=300)[dates]
    order = rng.permutation(len(y))
    sorted_t, shuffled_t = mean_estimate(y, dates, symbols).t, mean_estimate(y[order], dates[order], symbols[order]).t
    assert sorted_t == pytest.approx(statsmodels_fit(y, dates, symbols).tvalues[0], rel=RTOL)
    assert shuffled_t == pytest.approx(sorted_t, rel=1e-12)


def test_difference_estimate_equals_statsmodels_two_way():
    rng = np.random.default_rng(8)
    y, d, s = panel(rng, 700, 80, 30)
    y2, d2, s2 = panel(rng, 300, 80, 30)
    d2[:50], s2[:50] = d[:50], s[:50]  # some events of both samples on one (date, symbol)
    fit = statsmodels_fit(np.concatenate([y, y2]), np.concatenate([d, d2]), np.concatenate([s, s2]),
                          np.concatenate([np.zeros(len(y)), np.ones(len(y2))]))
    mine = difference_estimate(y, d, s, y2, d2, s2)
    assert mine.value == pytest.approx(fit.params[1], rel=1e-10)
    assert mine.se == pytest.approx(fit.bse[1], rel=RTOL) and mine.t == pytest.approx(fit.tvalues[1], rel=RTOL)
    assert mine.p == pytest.approx(fit.pvalues[1], rel=1e-8) and mine.df == fit.df_resid_inference


@pytest.mark.parametrize("dates, symbols, has_t, note", [
    (MIN_CLUSTERS, MIN_CLUSTERS, True, ""),
    (MIN_CLUSTERS - 1, 50, False, "9 event dates: no t below 10"),
    (50, 2, False, "2 symbols: no t below 10"),
    (1, 1, False, "1 event date and 1 symbol: no t below 10"),
])
def test_too_few_clusters_give_no_t_and_say_why(dates, symbols, has_t, note):
    rng = np.random.default_rng(1)
    n = 400
    d, s = np.arange(n) % dates, (np.arange(n) // dates) % symbols
    mine = mean_estimate(rng.normal(0.01, 0.05, n), d, s)
    assert (not math.isnan(mine.t)) == has_t and mine.note == note
    assert math.isnan(mine.p) != has_t and math.isnan(mine.se) != has_t
    assert math.isnan(mine.interval()[0]) != has_t


def test_two_events_on_two_dates_no_longer_give_a_t_of_a_hundred():
    # the case: +1.00% and +1.02% on two dates gave a date-clustered t of 101
    mine = mean_estimate(np.array([0.0100, 0.0102]), np.array([1, 2]), np.array([7, 8]))
    assert math.isnan(mine.t) and "2 event dates" in mine.note and mine.value == pytest.approx(0.0101)


def test_no_t_from_rounding_noise_nor_from_a_variance_that_is_not_positive():
    rng = np.random.default_rng(7)
    raw = rng.normal(0.01, 0.05, 300)
    noise = raw - (raw + 1e-3 - 1e-3)  # ~1e-17: a one-symbol universe's abnormal returns
    d, s = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    assert mean_estimate(noise, d, s).note == "no variation beyond rounding"
    assert math.isnan(difference_estimate(noise, d, s, noise[::2], d[::2], s[::2]).t)
    assert not math.isnan(mean_estimate(raw * 1e-4, d, s).t)  # the smallest real returns keep theirs
    assert mean_estimate(np.zeros(50), np.arange(50), np.arange(50)).note == "no variation"


def test_a_two_way_variance_that_is_not_positive_gives_way_to_the_larger_one_way_one():
    # every date's returns sum to zero (the whole market on each date): V_date is 0, V_two-way < 0
    rng = np.random.default_rng(5)  # a draw where V_symbol is below V_pair as well
    d, s = np.repeat(np.arange(12), 20), np.tile(np.arange(20), 12)
    y = rng.normal(0, 0.05, (12, 20))
    y = (y - y.mean(axis=1, keepdims=True)).reshape(-1) + 0.001
    assert math.isnan(statsmodels_fit(y, d, s).bse[0]), "statsmodels: a negative variance, no standard error"
    mine = mean_estimate(y, d, s)
    by_symbol = sm.OLS(y, np.ones((len(y), 1))).fit(cov_type="cluster", cov_kwds={"groups": s})
    assert mine.note == ONE_WAY_NOTE and mine.se == pytest.approx(by_symbol.bse[0], rel=RTOL)
    assert mine.df == 11  # still the fewer clusters less one


def test_empty_samples():
    assert mean_estimate(np.array([]), np.array([]), np.array([])).note == "no events"
    assert math.isnan(difference_estimate(np.array([]), np.array([]), np.array([]), np.array([0.1]),
                                          np.array([1]), np.array([1])).value)


def test_crowded_events_get_a_smaller_t_than_spread_ones():
    # 200 events whose returns share a shock per date: crowded on 10 dates, or each on its own date
    rng = np.random.default_rng(3)
    values = np.repeat(rng.normal(0.01, 0.03, 10), 20) + rng.normal(0, 0.005, 200)
    symbols = np.arange(200) % 40
    spread, crowded = mean_estimate(values, np.arange(200), symbols), mean_estimate(values, np.repeat(np.arange(10), 20), symbols)
    assert abs(crowded.t) < abs(spread.t) / 2 and crowded.df == 9


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_benjamini_hochberg_equal_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = rng.random(20) ** 4
    p[rng.integers(0, 20, 3)] = np.nan  # tests without a p are not in the family
    p[5] = p[6]  # a tie
    tested = ~np.isnan(p)
    for mine, method in ((holm(p), "holm"), (benjamini_hochberg(p), "fdr_bh")):
        assert np.isnan(mine[~tested]).all()
        np.testing.assert_allclose(mine[tested], multipletests(p[tested], method=method)[1], rtol=1e-12)


def test_adjustments_of_no_test():
    assert holm(np.array([np.nan])).tolist() != [0.0] and len(benjamini_hochberg(np.array([]))) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=60), st.sampled_from(["int", "int8", "midnight", "time of day"]))
def test_cluster_ids_number_the_labels_in_sorted_order_as_np_unique_does(labels, kind):
    groups = np.array(labels, dtype=np.int64)
    if kind == "int8":  # a difference of two labels may overflow int8
        groups = (groups % 201 - 100).astype(np.int8)
    elif kind != "int":
        groups = np.datetime64("2001-01-01", "ns") + groups.astype("timedelta64[D]")
        if kind == "time of day":  # two times of one day are two clusters
            groups = groups + (np.arange(len(groups)) % 2).astype("timedelta64[h]")
    ids, clusters = cluster_ids(groups)
    expected = np.unique(groups, return_inverse=True)[1].reshape(-1)
    assert ids.tolist() == expected.tolist() and clusters == len(set(groups.tolist()))

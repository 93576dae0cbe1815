"""The size study in small (benchmarks/placebo.py has the whole one, `make placebo`): placebo events
on random dates must not come out significant much more often than the nominal 5%."""

import sys

import numpy as np

from conftest import REPO
from harness.stats.benchmark import Benchmark, BenchmarkReturns
from harness.stats.inference import SIGNIFICANCE, mean_estimate

sys.path.insert(0, str(REPO / "benchmarks"))
from placebo import Universe, date_clustered_p  # noqa: E402


def test_concentrated_placebo_at_40_bars_is_starred_near_5_percent_not_40():
    # A random 10% of 100 symbols with ~40 random events a year each: repeats on the same names and
    # overlapping 40-bar windows, on a universe with market and industry factors. 4 universes x 10
    # draws (fixed seeds): errors clustered by date only starred 40% of them (checked below, so that
    # this test could fail); two-way clustering with t(G - 1) stars 2.5%.
    before = after = draws = 0
    for u in range(4):
        universe = Universe(100, 6, 500 + u)
        benchmark = BenchmarkReturns(universe.market, Benchmark("market"))
        rng = np.random.default_rng(u)
        for _ in range(10):
            events = universe.returns(benchmark, *universe.concentrated(rng, per_year=40.0))
            valid = events[events["abn_40"].notna()]
            abn, dates = valid["abn_40"].to_numpy(), valid["date"].to_numpy()
            before += date_clustered_p(abn, dates) < SIGNIFICANCE
            after += mean_estimate(abn, dates, valid["symbol"].to_numpy()).p < SIGNIFICANCE
            draws += 1
    assert draws == 40
    assert before / draws >= 0.25, f"the old statistic starred only {before} of {draws}: the test lost its power"
    assert after / draws <= 0.2, f"{after} of {draws} placebo draws starred at 5%"


def test_run_up_placebo_is_not_starred_by_the_market_model():
    # Events on random bars after a trailing 250-bar return above +30%, nothing after them by
    # construction: what breakouts and momentum detectors select. The market model's estimation
    # window (-250 .. -21) lies inside that run-up, so its fitted alpha carries the selection:
    # extrapolated as h x alpha (checked below, so that this test could fail) it starred nearly every
    # draw; with alpha not extrapolated the draws are starred near the nominal 5%.
    extrapolated = after = draws = 0
    for u in range(4):
        universe = Universe(100, 8, 700 + u)
        benchmark = BenchmarkReturns(universe.market, Benchmark("market_model"))
        rng = np.random.default_rng(u)
        for _ in range(10):
            symbols, bars = universe.after_run_up(rng, share=0.02)
            events = universe.returns(benchmark, symbols, bars)
            alpha, _ = benchmark._fit(universe.days, universe.close, (universe.first, universe.length),
                                      universe.first[symbols] + bars, universe.first[symbols],
                                      universe.length[symbols])
            valid = events["abn_40"].notna().to_numpy()
            abn, dates, names = (events["abn_40"].to_numpy()[valid], events["date"].to_numpy()[valid],
                                 events["symbol"].to_numpy()[valid])
            extrapolated += mean_estimate(abn - 40 * alpha[valid], dates, names).p < SIGNIFICANCE
            after += mean_estimate(abn, dates, names).p < SIGNIFICANCE
            draws += 1
    assert draws == 40
    assert extrapolated / draws >= 0.8, f"h x alpha starred only {extrapolated} of {draws}: the test lost its power"
    assert after / draws <= 0.2, f"{after} of {draws} run-up placebo draws starred at 5%"

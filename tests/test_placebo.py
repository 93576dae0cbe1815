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

"""Task planning: guided self-scheduling sizes, by hand and as properties."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.plan import MAX_TASK_SECONDS, MIN_TASK_SECONDS, fixed_task_sizes, plan_task_sizes


def test_sizes_by_hand():
    # 100 symbols, 2 workers, 10 ms each: smallest 20 symbols (0.2 s), largest 400 (4 s);
    # ceil(100/4) = 25, ceil(75/4) = 19 -> 20, ceil(55/4) = 14 -> 20, then the last 15.
    assert plan_task_sizes(100, 2, 0.01) == [25, 20, 20, 20, 15]
    # 2 s per symbol: tasks of at most 2 symbols, shrinking to single symbols
    assert plan_task_sizes(10, 2, 2.0) == [2, 2, 2, 1, 1, 1, 1]
    assert plan_task_sizes(0, 8, 0.01) == []
    assert plan_task_sizes(1, 8, 0.0) == [1]


def test_fixed_sizes():
    assert fixed_task_sizes(7, 3) == [3, 3, 1]
    assert fixed_task_sizes(6, 3) == [3, 3]
    assert fixed_task_sizes(3, 1) == [1, 1, 1]
    with pytest.raises(ValueError):
        fixed_task_sizes(3, 0)


@given(symbols=st.integers(0, 20_000), workers=st.integers(1, 64),
       cost=st.one_of(st.just(0.0), st.floats(1e-5, 30.0)))
def test_plan_properties(symbols, workers, cost):
    sizes = plan_task_sizes(symbols, workers, cost)
    assert sum(sizes) == symbols
    assert all(s >= 1 for s in sizes)
    assert all(a >= b for a, b in zip(sizes, sizes[1:])), "non-increasing"
    if cost > 0 and sizes:
        largest = max(1, math.floor(MAX_TASK_SECONDS / cost), math.ceil(MIN_TASK_SECONDS / cost))
        assert sizes[0] <= largest
        smallest = max(1, math.ceil(MIN_TASK_SECONDS / cost))
        assert all(s >= smallest for s in sizes[:-1]), "only the last task may be below the minimum"
        # the end is small: the last task is at most what one worker's share of the tail is
        assert sizes[-1] <= max(smallest, math.ceil(symbols / (2 * workers)))
    if symbols >= 2 * workers and cost > 0:
        # enough tasks to keep every worker busy, few enough to submit at once
        assert len(sizes) >= min(workers, symbols // max(1, math.ceil(MIN_TASK_SECONDS / cost)))
        assert len(sizes) <= symbols


def test_the_task_planner_fixed_sends_every_task_at_once_auto_sends_pilots_first():
    from cluster.plan import TaskPlanner
    assert TaskPlanner(workers=2, symbols_per_task=3).first(7) == ([3, 3, 1], False)
    assert TaskPlanner(workers=2).first(7) == ([1, 1], True)
    assert TaskPlanner(workers=4).first(2) == ([1, 1], True)  # never more pilots than symbols
    assert TaskPlanner(workers=4).first(0) == ([], True)
    assert TaskPlanner(workers=2).rest(40, 0.05) == plan_task_sizes(40, 2, 0.05)

"""Student's t p-values and critical values written with + - * / sqrt only, against scipy."""

import math

import pytest
from scipy import stats

from harness.stats.distributions import t_critical_value, t_two_sided_p


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 10, 19, 30, 99, 100, 999, 4999, 5000])
@pytest.mark.parametrize("t", [0.001, 0.3, 1.0, 1.96, 2.5, 4.0, 8.0, 20.0, 300.0])
def test_two_sided_p_equals_scipy(t, df):
    expected = 2 * stats.t.sf(t, df)
    if expected < 1e-290:  # below what doubles hold with room to spare
        assert t_two_sided_p(t, df) < 1e-280
    else:
        assert t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-11)
        assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)


@pytest.mark.parametrize("df", [1, 2, 5, 9, 11, 24, 199, 5000])
@pytest.mark.parametrize("level", [0.05, 0.01])
def test_critical_value_equals_scipy(df, level):
    assert t_critical_value(df, level) == pytest.approx(stats.t.ppf(1 - level / 2, df), rel=1e-11)


@pytest.mark.parametrize("t, df, expected", [
    (0.0, 5, 1.0),              # no evidence at all
    (math.inf, 5, 0.0),
    (-math.inf, 5, 0.0),
    (math.nan, 5, math.nan),
    (2.0, 0, math.nan),         # no degrees of freedom: no test
])
def test_two_sided_p_edge_cases(t, df, expected):
    p = t_two_sided_p(t, df)
    assert (math.isnan(p) and math.isnan(expected)) or p == expected


def test_critical_value_without_degrees_of_freedom_is_nan():
    assert math.isnan(t_critical_value(0))

"""Student's t distribution: two-sided p-values and critical values, the same bits on every machine.

p-values and band widths are written to the output files, whose bytes are promised to be the same
on every CPU. scipy's and libm's special functions (pow, exp, log, lgamma) may differ in their last
bits between CPUs, so these use only +, -, *, /, sqrt and comparisons, which IEEE 754 rounds the
same everywhere, in plain Python floats:

    two-sided p of t with df degrees of freedom = I_x(df / 2, 1 / 2),  x = df / (df + t^2)

with I the regularized incomplete beta function, evaluated by its continued fraction (Lentz's
method, as in Numerical Recipes' betacf) and a prefactor x^a (1 - x)^b / B(a, b) whose powers are
integer powers (repeated squaring) times square roots, and whose beta function is a running product
from B(1, 1/2) = 2 or B(1/2, 1/2) = pi. Degrees of freedom are whole numbers (clusters - 1).
Accuracy: relative error below 1e-12 against scipy.stats.t (tests/test_distributions.py).
"""

from __future__ import annotations

import functools
import math

_PI = 3.141592653589793
_TINY = 1e-300
_EPSILON = 1e-16
_MAX_TERMS = 100_000


def _power(x: float, n: int) -> float:
    """x ** n for a whole n >= 0 by repeated squaring (no libm pow)."""
    result, base = 1.0, x
    while n:
        if n & 1:
            result *= base
        base *= base
        n >>= 1
    return result


@functools.lru_cache(maxsize=4096)
def _beta_half(df: int) -> float:
    """B(df / 2, 1 / 2), from B(a + 1, b) = B(a, b) * a / (a + b)."""
    a, value = (1.0, 2.0) if df % 2 == 0 else (0.5, _PI)
    while a < df / 2:
        value *= a / (a + 0.5)
        a += 1.0
    return value


def _half_power(x: float, twice: int) -> float:
    """x ** (twice / 2) for x >= 0."""
    whole = _power(x, twice // 2)
    return whole * math.sqrt(x) if twice % 2 else whole


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes' betacf), by Lentz's method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2.0 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) >= _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) >= _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPSILON:
            break
    return h


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for T ~ Student's t with `df` (>= 1, whole) degrees of freedom.

    NaN when t is NaN or df < 1; 1.0 at t = 0; 0.0 at infinite t (and where the true value is
    below the smallest float).
    """
    if not (df >= 1 and t == t):
        return math.nan
    if math.isinf(t):
        return 0.0
    t2 = t * t
    if t2 == 0.0:
        return 1.0
    x, y = df / (df + t2), t2 / (df + t2)  # y = 1 - x without the cancellation
    a, b = df / 2.0, 0.5
    # front = x^a y^b / B(a, b); the fraction converges fast for x < (a + 1) / (a + b + 2)
    front = _half_power(x, df) * math.sqrt(y) / _beta_half(df)
    if x < (a + 1.0) / (a + b + 2.0):
        return min(1.0, front * _continued_fraction(a, b, x) / a)
    return max(0.0, 1.0 - front * _continued_fraction(b, a, y) / b)


@functools.lru_cache(maxsize=4096)
def t_critical_value(df: int, level: float = 0.05) -> float:
    """The c > 0 with t_two_sided_p(c, df) = level (1.96 for large df at 5%): bisection to the last
    bit. NaN when df < 1."""
    if not df >= 1:
        return math.nan
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > level:
        low, high = high, high * 2.0
    while True:
        middle = (low + high) / 2.0
        if middle in (low, high):
            return high
        if t_two_sided_p(middle, df) > level:
            low = middle
        else:
            high = middle

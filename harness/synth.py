"""A synthetic universe of daily bars that behaves like real equities, for `make run` and the tests.

    python -m harness.synth --out data/ohlcv --symbols 500 --years 10 --seed 7

What it imitates: a business-day calendar with market holidays; returns with common structure, a
market factor (each symbol's beta from 0.4 to 1.6) and ten industry factors, plus the symbol's own
part, each with GARCH-style volatility clustering and Student-t (fat-tailed) shocks; consistent OHLC
(low <= open, close <= high); volume with persistence and spikes on large moves; occasional
overnight gaps; late starts (IPOs) and early ends (delistings); a few symbols with missing days;
a few partitions split into one file per year; ticker-like names, some with '.' and '-'.
Everything derives from the seed, so the same arguments give the same bytes, on any machine:
prices lie on a one-cent grid and volumes are whole shares, and every number is made from the
random generator's uniform draws with +, -, *, / and sqrt only. IEEE 754 rounds those exactly
the same way everywhere, whereas numpy's exp/log (and the libm calls behind rng.normal or
rng.standard_t) pick CPU-specific code whose last bits differ between machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import string
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

END_DATE = pd.Timestamp("2025-12-31")  # fixed, so output does not depend on today's date


def trading_calendar(years: int, rng: np.random.Generator) -> pd.DatetimeIndex:
    """Business days of the last `years` years up to END_DATE, less fixed and a few random holidays."""
    days = pd.bdate_range(END_DATE - pd.DateOffset(years=years) + pd.Timedelta(days=1), END_DATE)
    fixed = (days.month == 1) & (days.day == 1) | (days.month == 7) & (days.day == 4) \
        | (days.month == 12) & (days.day == 25)
    random_holidays = rng.random(len(days)) < 6 / 252
    return days[~(fixed | random_holidays)]


def ticker_names(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct ticker-like names; about 3% carry a class suffix such as BRK.B or PBR-A."""
    letters = np.array(list(string.ascii_uppercase))
    names: set[str] = set()
    while len(names) < count:
        name = "".join(rng.choice(letters, size=int(rng.integers(1, 5))))
        roll = rng.random()
        if roll < 0.015:
            name += "." + str(rng.choice(letters[:3]))
        elif roll < 0.03:
            name += "-" + str(rng.choice(letters[:3]))
        names.add(name)
    return sorted(names)


def standard_normals(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Approximately standard normal draws: the sum of 12 uniforms minus 6 (Irwin-Hall), in [-6, 6].

    Only uniform draws and additions, so the values are the same on every CPU (see module docstring).
    """
    uniforms = rng.random((12, *np.atleast_1d(size)))
    total = uniforms[0].copy()
    for k in range(1, 12):  # a fixed order of additions: no reduction whose order could vary
        total += uniforms[k]
    return total - 6.0


def student_t4(rng: np.random.Generator, n: int) -> np.ndarray:
    """n fat-tailed shocks with unit variance: Student-t with 4 degrees of freedom, z0 / sqrt(chi2_4 / 4),
    divided by sqrt(2) (the t4 variance)."""
    z = standard_normals(rng, (5, n))
    chi2 = z[1] * z[1] + z[2] * z[2] + z[3] * z[3] + z[4] * z[4]
    return z[0] / np.sqrt(chi2 / 4.0) / np.sqrt(2.0)


def to_cents(prices: np.ndarray) -> np.ndarray:
    """Prices rounded to the one-cent tick, at least one cent."""
    return np.maximum(np.rint(prices * 100.0) / 100.0, 0.01)


def garch_returns(shocks: np.ndarray, omega: float, start: float) -> tuple[np.ndarray, np.ndarray]:
    """(returns, variances) of a GARCH(1,1) driven by unit-variance `shocks`: today's variance
    omega + 0.08 x yesterday's squared return + 0.9 x yesterday's variance, starting at `start`
    times the long-run variance omega / 0.02; returns clipped to [-0.5, 0.5]."""
    alpha, beta = 0.08, 0.9
    n = len(shocks)
    var, ret = [0.0] * n, [0.0] * n
    if n:
        var[0] = omega / (1 - alpha - beta) * start
    for i, shock in enumerate(shocks.tolist()):  # today's variance depends on yesterday's shock
        if i:
            var[i] = omega + alpha * ret[i - 1] * ret[i - 1] + beta * var[i - 1]
        ret[i] = min(max(math.sqrt(var[i]) * shock, -0.5), 0.5)
    return np.array(ret), np.array(var)


# Long-run daily volatilities: market 0.9%, industry 0.6%, a symbol's own part 1.2% (omega = 0.02 x var).
MARKET_OMEGA, INDUSTRY_OMEGA, OWN_OMEGA = 0.02 * 0.009 * 0.009, 0.02 * 0.006 * 0.006, 0.02 * 0.012 * 0.012
MARKET_DRIFT = 0.0003  # per day, about 7.5% a year
INDUSTRIES = 10


@dataclasses.dataclass(frozen=True)
class Factors:
    """The common part of every symbol's returns, one value per calendar day."""

    market: np.ndarray                 # the market factor's daily return
    industries: np.ndarray             # [industry, day] the industry factors' daily returns

    @classmethod
    def simulate(cls, days: int, rng: np.random.Generator) -> Factors:
        shocks = student_t4(rng, (1 + INDUSTRIES) * days).reshape(1 + INDUSTRIES, days)
        market, _ = garch_returns(shocks[0], MARKET_OMEGA, 1.0)
        industries = np.stack([garch_returns(row, INDUSTRY_OMEGA, 1.0)[0] for row in shocks[1:]])
        return cls(market + MARKET_DRIFT, industries)


@dataclasses.dataclass(frozen=True)
class Exposure:
    """A symbol's loadings on the factors."""

    beta: float                        # on the market, 0.4 to 1.6
    industry: int                      # its industry, 0 .. INDUSTRIES - 1
    loading: float                     # on its industry's factor, 0.5 to 1.5

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Exposure:
        return cls(float(rng.uniform(0.4, 1.6)), int(rng.integers(0, INDUSTRIES)), float(rng.uniform(0.5, 1.5)))


def simulate_bars(n: int, rng: np.random.Generator, common: np.ndarray | None = None) -> pd.DataFrame:
    """n rows of open/high/low/close (on a cent grid) and volume (whole shares), no dates, for one symbol.

    common: the factors' part of each day's return (beta x market + loading x industry); none
    without it."""
    own, var = garch_returns(student_t4(rng, n), OWN_OMEGA, float(rng.uniform(0.5, 2.0)))
    drift = 0.0001 * standard_normals(rng, 1)[0]  # the symbol's own drift, beyond the market's
    ret = np.clip(own + drift + (0.0 if common is None else common), -0.5, 0.5)
    close = rng.uniform(5, 300) * np.cumprod(1.0 + ret)

    # Overnight gap: part of each day's move happens at the open; now and then a large jump.
    overnight = ret * rng.uniform(0.1, 0.5, size=n)
    jumps = rng.random(n) < 0.01
    overnight[jumps] += rng.choice([-1.0, 1.0], size=jumps.sum()) * rng.uniform(0.03, 0.08, size=jumps.sum())
    prev_close = np.concatenate([[close[0] / (1.0 + ret[0])], close[:-1]])
    open_ = prev_close * (1.0 + overnight)
    spread = np.minimum(np.abs(standard_normals(rng, (2, n)) * np.sqrt(var)), 0.5)
    high = np.maximum(open_, close) * (1.0 + spread[0])
    low = np.minimum(open_, close) * (1.0 - spread[1])

    # Volume: AR(1) around the symbol's typical level, with spikes on large moves.
    level = rng.uniform(2e5, 5e7)
    noise = 0.25 * standard_normals(rng, n)
    relative = [1.0] * n
    for i, step in enumerate(noise.tolist()[1:], start=1):
        relative[i] = max(1.0 + 0.7 * (relative[i - 1] - 1.0) + step, 0.05)
    relative = np.array(relative)
    surprise = np.abs(own) / np.sqrt(var)
    spike = 1.0 + 0.0875 * np.clip(surprise - 1.5, 0, None)
    relative *= (spike * spike) * (spike * spike)  # (1 + y/4)^4, about exp(y) for y = 0.35 x
    volume = np.rint(level * relative).astype(np.int64)
    # Rounding is monotone, so low <= open, close <= high still holds on the cent grid.
    return pd.DataFrame({"open": to_cents(open_), "high": to_cents(high), "low": to_cents(low),
                         "close": to_cents(close), "volume": volume})


@dataclasses.dataclass(frozen=True)
class SymbolBars:
    """One synthetic symbol: its bars and how they are to be stored."""

    name: str
    bars: pd.DataFrame                 # date, open, high, low, close, volume
    exposure: Exposure
    date_type: pa.DataType             # date32 or timestamp[ns] in the file
    yearly_files: bool                 # one file per year instead of part-0.parquet


def simulate_universe(symbols: int, years: int, seed: int) -> list[SymbolBars]:
    """The universe's symbols, sorted by name: everything derives from `seed`."""
    root = np.random.SeedSequence(seed)
    meta_rng = np.random.default_rng(root.spawn(1)[0])
    calendar = trading_calendar(years, meta_rng)
    names = ticker_names(symbols, meta_rng)
    children = root.spawn(len(names) + 1)[1:]
    factors = Factors.simulate(len(calendar), np.random.default_rng(root.spawn(1)[0]))
    universe = []
    for name, child in zip(names, children):
        rng = np.random.default_rng(child)
        n = len(calendar)
        start = int(rng.integers(n // 4, n - 300)) if rng.random() < 0.1 else 0       # IPO
        stop = int(rng.integers(start + 300, n)) if rng.random() < 0.05 else n        # delisting
        exposure = Exposure.draw(rng)
        common = exposure.beta * factors.market[start:stop] \
            + exposure.loading * factors.industries[exposure.industry, start:stop]
        bars = simulate_bars(stop - start, rng, common)
        bars.insert(0, "date", calendar[start:stop])
        if rng.random() < 0.03:  # a few symbols miss some days
            bars = bars[rng.random(len(bars)) > 0.02].reset_index(drop=True)
        date_type = pa.date32() if rng.random() < 0.5 else pa.timestamp("ns")
        universe.append(SymbolBars(name, bars, exposure, date_type, bool(rng.random() < 0.05)))
    return universe


def write_universe(out: Path, symbols: int, years: int, seed: int) -> list[str]:
    """Write the universe under `out` (replacing what is there) and return the symbol names."""
    universe = simulate_universe(symbols, years, seed)
    if out.exists():
        shutil.rmtree(out)
    for symbol in universe:
        part = out / f"symbol={symbol.name}"
        part.mkdir(parents=True)
        table = pa.Table.from_pandas(symbol.bars, preserve_index=False)
        table = table.set_column(0, "date", table.column("date").cast(symbol.date_type)).replace_schema_metadata()
        if symbol.yearly_files:
            years_col = symbol.bars["date"].dt.year.to_numpy()
            for year in np.unique(years_col):
                pq.write_table(table.filter(pa.array(years_col == year)), part / f"{year}.parquet")
        else:
            pq.write_table(table, part / "part-0.parquet")
    return [symbol.name for symbol in universe]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write symbol=XXX/ partitions into")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.symbols < 1 or args.years < 2:
        parser.error("--symbols must be >= 1 and --years >= 2")
    names = write_universe(Path(args.out), args.symbols, args.years, args.seed)
    print(f"wrote {len(names)} symbols x {args.years} years to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

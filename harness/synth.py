"""A synthetic universe of daily bars that behaves like real equities, for `make run` and the tests.

    python -m harness.synth --out data/ohlcv --symbols 500 --years 10 --seed 7

What it imitates: a business-day calendar with market holidays; log prices that follow a random
walk with GARCH-style volatility clustering and Student-t (fat-tailed) shocks; consistent OHLC
(low <= open, close <= high); volume with persistence and spikes on large moves; occasional
overnight gaps; late starts (IPOs) and early ends (delistings); a few symbols with missing days;
a few partitions split into one file per year; ticker-like names, some with '.' and '-'.
Everything derives from the seed, so the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
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


def simulate_bars(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n rows of open/high/low/close/volume (no dates) for one symbol."""
    omega, alpha, beta = 2e-6, 0.08, 0.9
    shocks = rng.standard_t(4, size=n) / np.sqrt(2.0)  # unit variance for df=4
    var = np.empty(n)
    ret = np.empty(n)
    var[0] = omega / (1 - alpha - beta) * rng.uniform(0.5, 2.0)
    for i in range(n):  # GARCH(1,1): today's variance depends on yesterday's shock
        if i:
            var[i] = omega + alpha * ret[i - 1] ** 2 + beta * var[i - 1]
        ret[i] = np.sqrt(var[i]) * shocks[i]
    drift = rng.normal(0.0003, 0.0003)
    log_close = np.log(rng.uniform(5, 300)) + np.cumsum(ret + drift)
    close = np.exp(log_close)

    # Overnight gap: part of each day's move happens at the open; now and then a large jump.
    overnight = ret * rng.uniform(0.1, 0.5, size=n)
    jumps = rng.random(n) < 0.01
    overnight[jumps] += rng.choice([-1.0, 1.0], size=jumps.sum()) * rng.uniform(0.03, 0.08, size=jumps.sum())
    prev_close = np.concatenate([[close[0] * np.exp(-ret[0])], close[:-1]])
    open_ = prev_close * np.exp(overnight)
    spread = np.abs(rng.normal(0, np.sqrt(var), size=(2, n)))
    high = np.maximum(open_, close) * np.exp(spread[0])
    low = np.minimum(open_, close) * np.exp(-spread[1])

    log_vol = np.empty(n)
    level = np.log(rng.uniform(2e5, 5e7))
    noise = rng.normal(0, 0.25, size=n)
    log_vol[0] = level
    for i in range(1, n):  # AR(1) persistence around the symbol's typical volume
        log_vol[i] = level + 0.7 * (log_vol[i - 1] - level) + noise[i]
    surprise = np.abs(ret) / np.sqrt(var)
    log_vol += 0.35 * np.clip(surprise - 1.5, 0, None)  # volume spikes on large moves
    volume = np.round(np.exp(log_vol)).astype(np.int64)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})


def write_universe(out: Path, symbols: int, years: int, seed: int) -> list[str]:
    """Write the universe under `out` (replacing what is there) and return the symbol names."""
    root = np.random.SeedSequence(seed)
    meta_rng = np.random.default_rng(root.spawn(1)[0])
    calendar = trading_calendar(years, meta_rng)
    names = ticker_names(symbols, meta_rng)
    if out.exists():
        shutil.rmtree(out)
    for name, child in zip(names, root.spawn(len(names) + 1)[1:]):
        rng = np.random.default_rng(child)
        n = len(calendar)
        start = int(rng.integers(n // 4, n - 300)) if rng.random() < 0.1 else 0       # IPO
        stop = int(rng.integers(start + 300, n)) if rng.random() < 0.05 else n        # delisting
        dates = calendar[start:stop]
        bars = simulate_bars(len(dates), rng)
        bars.insert(0, "date", dates)
        if rng.random() < 0.03:  # a few symbols miss some days
            bars = bars[rng.random(len(bars)) > 0.02]
        part = out / f"symbol={name}"
        part.mkdir(parents=True)
        date_type = pa.date32() if rng.random() < 0.5 else pa.timestamp("ns")
        table = pa.Table.from_pandas(bars, preserve_index=False)
        table = table.set_column(0, "date", table.column("date").cast(date_type)).replace_schema_metadata()
        if rng.random() < 0.05:  # several files per partition, one per year
            years_col = bars["date"].dt.year.to_numpy()
            for year in np.unique(years_col):
                pq.write_table(table.filter(pa.array(years_col == year)), part / f"{year}.parquet")
        else:
            pq.write_table(table, part / "part-0.parquet")
    return names


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

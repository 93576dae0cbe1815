"""The size study: how often detectors with no edge come out "significant" at 5%.

    python benchmarks/placebo.py [--universes 40] [--per-universe 5] [--symbols 200] [--years 10]

Placebo detectors fire on random dates, so the null of no edge is true by construction; a test of
the right size rejects it 5% of the time. Each replication draws new placebo events on a synthetic
universe with common structure (harness.synth: a market factor, betas 0.4-1.6, ten industry
factors, GARCH volatility, fat tails, IPOs and delistings) and runs them through the scan's own
statistics: the market index (harness.stats.market), the benchmark (harness.stats.benchmark, both kinds),
harness.stats.summary.detector_summary and score_quantiles, and the variant test of harness.stats.inference.
Shapes, as a real detector's events can look:

- spread: every symbol, about one event a year at random bars;
- concentrated: a random 10% of the symbols, about ten events a year each (repeats on the same
  names, overlapping windows);
- industry days: every symbol of one random industry on the same 30 random dates;
- few days: a random 30% of the symbols on each of 12 random dates (few date clusters: Student's
  t with 11 df). (Every symbol on the same dates would be the market itself: its abnormal returns
  average to zero by construction.)
- run-up: a random 1% of the bars whose trailing 250-bar return is above +30%, as breakouts,
  moving-average crosses and momentum detectors select: nothing after the event by construction,
  but a benchmark fitted on the selected bars carries the selection into the abnormal return;
- variant: an independent concentrated draw tested against a concentrated baseline (vs_baseline);
- filter variant: a random half of a concentrated baseline's events, tested against it: how real
  variants look (a baseline plus a condition), every variant event shared with the baseline.

Per shape, benchmark and horizon it counts the share of replications whose p is below 5% (abn_t;
for the variant vs_baseline_t) with a 95% Wilson interval, and beside it the same share for the
statistic before the two-way clustering (errors clustered by event date only, normal 1.96, market
benchmark). The sign test (against the run's share of positive abnormal returns) and the score
quintiles' top-minus-bottom spread are counted too. Writes benchmarks/results/placebo-<time>.json
and, with --write, the table into STATISTICS.md. Replications of one universe share its market
paths, so universes are the unit that matters for the noise: 40 x 5 by default.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.stats.benchmark import DEFAULT_OUTLIER_MOVE, Benchmark, BenchmarkReturns  # noqa: E402
from harness.eval import abnormal_column, forward_column, market_column  # noqa: E402
from harness.stats.inference import SIGNIFICANCE, cluster_ids, difference_estimate  # noqa: E402
from harness.stats.market import chunk_sums, day_numbers, market_index  # noqa: E402
from harness.stats.summary import SPREAD, detector_summary, score_quantiles  # noqa: E402
from harness.synth import simulate_universe  # noqa: E402

WINDOWS = (5, 10, 20, 40)
SHAPES = ("spread", "concentrated", "industry days", "few days", "run-up", "variant", "filter variant")
VARIANTS = ("variant", "filter variant")
BENCHMARKS = ("market", "market_model")
Z_95 = 1.959963984540054
RUN_UP_BARS, RUN_UP_RISE = 250, 0.3  # the run-up shape: a trailing 250-bar return above +30%


class Universe:
    """A synthetic universe laid out as the scan's finish does: every bar one after another."""

    def __init__(self, symbols: int, years: int, seed: int):
        bars = simulate_universe(symbols, years, seed)
        self.industry = np.array([s.exposure.industry for s in bars])
        series = [(day_numbers(s.bars["date"].to_numpy()), s.bars["close"].to_numpy(dtype="float64")) for s in bars]
        self.market = market_index([chunk_sums(series, DEFAULT_OUTLIER_MOVE)])  # as the scan's default
        self.days = np.concatenate([d for d, _ in series])
        self.close = np.concatenate([c for _, c in series])
        self.length = np.array([len(d) for d, _ in series], dtype=np.int64)
        self.first = np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)
        self.calendar = np.unique(self.days)

    def returns(self, benchmark: BenchmarkReturns, symbols: np.ndarray, bars: np.ndarray) -> pd.DataFrame:
        """The events' frame as harness.finish hands it to the statistics (symbols, bars sorted)."""
        first, length = self.first[symbols], self.length[symbols]
        ret, mkt, expected = benchmark.returns(self.days, self.close, (self.first, self.length), first, length, bars,
                                               WINDOWS)
        frame = {"date": (self.days[first + bars].astype("datetime64[D]")).astype("datetime64[ns]"),
                 "symbol": symbols.astype(np.int32), "score": np.arange(len(bars), dtype=np.float64)}
        for k, h in enumerate(WINDOWS):
            frame.update({forward_column(h): ret[:, k], abnormal_column(h): ret[:, k] - expected[:, k],
                          market_column(h): mkt[:, k]})
        return pd.DataFrame(frame)

    def null_hit_rates(self, benchmark: BenchmarkReturns) -> dict[int, float]:
        """The share of positive abnormal returns over every symbol-day (harness.finish.null_counts)."""
        symbols = np.repeat(np.arange(len(self.length)), self.length)
        bars = np.arange(len(self.days)) - self.first[symbols]
        frame = self.returns(benchmark, symbols, bars)
        return {h: float((frame[abnormal_column(h)] > 0).sum() / frame[abnormal_column(h)].notna().sum())
                for h in WINDOWS}

    # ------------------------------------------------------------------ placebo events

    def at_random(self, rng: np.random.Generator, symbols: np.ndarray, per_year: float) -> tuple[np.ndarray, np.ndarray]:
        """Each bar of `symbols` an event with probability per_year / 252: (symbols, bars) sorted."""
        picked_symbols, picked_bars = [], []
        for s in np.sort(symbols):
            bars = np.flatnonzero(rng.random(self.length[s]) < per_year / 252)
            picked_symbols.append(np.full(len(bars), s))
            picked_bars.append(bars)
        return np.concatenate(picked_symbols).astype(np.int64), np.concatenate(picked_bars).astype(np.int64)

    def on_dates(self, rng: np.random.Generator, symbols: np.ndarray, dates: int) -> tuple[np.ndarray, np.ndarray]:
        """Every one of `symbols` on the same `dates` random market dates (where it has a bar)."""
        chosen = np.sort(rng.choice(self.calendar, size=dates, replace=False))
        picked_symbols, picked_bars = [], []
        for s in np.sort(symbols):
            own = self.days[self.first[s]:self.first[s] + self.length[s]]
            bars = np.flatnonzero(np.isin(own, chosen))
            picked_symbols.append(np.full(len(bars), s))
            picked_bars.append(bars)
        return np.concatenate(picked_symbols).astype(np.int64), np.concatenate(picked_bars).astype(np.int64)

    def concentrated(self, rng: np.random.Generator, per_year: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
        """A random 10% of the symbols, `per_year` events a year each."""
        count = max(1, len(self.length) // 10)
        return self.at_random(rng, rng.choice(len(self.length), size=count, replace=False), per_year)

    def after_run_up(self, rng: np.random.Generator, lookback: int = RUN_UP_BARS, rise: float = RUN_UP_RISE,
                     share: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
        """A random `share` of the bars whose trailing `lookback`-bar return is above `rise`: what a
        breakout, trend or momentum detector selects on, with nothing after the event by construction."""
        picked_symbols, picked_bars = [], []
        for s in range(len(self.length)):
            close = self.close[self.first[s]:self.first[s] + self.length[s]]
            trailing = np.full(len(close), -np.inf)
            trailing[lookback:] = close[lookback:] / close[:-lookback] - 1
            bars = np.flatnonzero((trailing > rise) & (rng.random(len(close)) < share))
            picked_symbols.append(np.full(len(bars), s))
            picked_bars.append(bars)
        return np.concatenate(picked_symbols).astype(np.int64), np.concatenate(picked_bars).astype(np.int64)

    def draw(self, shape: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        everyone = np.arange(len(self.length))
        if shape == "run-up":
            return self.after_run_up(rng)
        if shape == "spread":
            return self.at_random(rng, everyone, 1.0)
        if shape in ("concentrated", *VARIANTS):
            return self.concentrated(rng)
        if shape == "industry days":
            return self.on_dates(rng, np.flatnonzero(self.industry == rng.integers(0, self.industry.max() + 1)), 30)
        chosen = self.on_dates(rng, everyone, 12)
        keep = rng.random(len(chosen[0])) < 0.3
        return chosen[0][keep], chosen[1][keep]


def date_clustered_p(values: np.ndarray, dates: np.ndarray) -> float:
    """The statistic before this change, for comparison: errors clustered by event date only, the
    normal distribution whatever the number of clusters (two-sided p)."""
    ids, clusters = cluster_ids(dates)
    if clusters < 2 or len(values) == 0:
        return math.nan
    scores = np.bincount(ids, weights=values - values.mean(), minlength=clusters)
    var = clusters / (clusters - 1) * float((scores * scores).sum()) / len(values) ** 2
    return math.erfc(abs(values.mean() / math.sqrt(var)) / math.sqrt(2)) if var > 0 else math.nan


def replicate(task: tuple[int, int, int, int, int]) -> list[dict]:
    """Every shape on one universe, `per_universe` times: one record per (replication, shape,
    benchmark, window) with the p-values of each test."""
    universe_seed, per_universe, symbols, years, base_seed = task
    universe = Universe(symbols, years, universe_seed)
    records = []
    for kind in BENCHMARKS:
        benchmark = BenchmarkReturns(universe.market, Benchmark(kind))
        nulls = universe.null_hit_rates(benchmark)
        shape_rng = np.random.default_rng([base_seed, universe_seed, BENCHMARKS.index(kind)])
        # the run-up shape draws from a stream of its own: the other shapes' draws stay as they were
        # before it was added (their figures in STATISTICS.md are reproduced)
        run_up_rng = np.random.default_rng([base_seed, universe_seed, BENCHMARKS.index(kind), 1])
        for rep in range(per_universe):
            for shape in SHAPES:
                rng = run_up_rng if shape == "run-up" else shape_rng
                frame = universe.returns(benchmark, *universe.draw(shape, rng))
                frame["score"] = rng.random(len(frame))
                if shape in VARIANTS:
                    if shape == "variant":
                        base = universe.returns(benchmark, *universe.draw(shape, rng))
                    else:
                        base, frame = frame, frame[rng.random(len(frame)) < 0.5]
                    for h in WINDOWS:
                        a, b = (f[f[abnormal_column(h)].notna()] for f in (base, frame))
                        test = difference_estimate(a[abnormal_column(h)].to_numpy(), a["date"].to_numpy(),
                                                   a["symbol"].to_numpy(), b[abnormal_column(h)].to_numpy(),
                                                   b["date"].to_numpy(), b["symbol"].to_numpy())
                        records.append({"universe": universe_seed, "rep": rep, "shape": shape, "benchmark": kind,
                                        "window": h, "p": test.p, "events": len(b)})
                    continue
                summary = detector_summary(frame, WINDOWS, nulls).set_index("window")
                spreads = score_quantiles(frame, WINDOWS, "placebo")
                spreads = spreads[spreads["quantile"] == SPREAD].set_index("window")
                for h in WINDOWS:
                    good = frame[frame[abnormal_column(h)].notna()]
                    records.append({"universe": universe_seed, "rep": rep, "shape": shape, "benchmark": kind,
                                    "window": h, "p": summary.loc[h, "abn_p"], "sign_p": summary.loc[h, "sign_p"],
                                    "spread_p": spreads.loc[h, "abn_p"], "events": len(frame),
                                    "before_p": date_clustered_p(good[abnormal_column(h)].to_numpy(),
                                                                 good["date"].to_numpy())})
    return records


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a binomial share."""
    if n == 0:
        return math.nan, math.nan
    share = hits / n
    centre = (share + Z_95 ** 2 / (2 * n)) / (1 + Z_95 ** 2 / n)
    half = Z_95 / (1 + Z_95 ** 2 / n) * math.sqrt(share * (1 - share) / n + Z_95 ** 2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rejection_rates(records: pd.DataFrame, column: str = "p") -> pd.DataFrame:
    """Per (shape, benchmark, window): replications, the share with `column` below 5% (a NaN p
    counts as not starred, as in the outputs), its Wilson interval; and pooled over windows."""
    rows = []
    for (shape, kind), group in records.groupby(["shape", "benchmark"], sort=False):
        cells = [(h, group[group["window"] == h]) for h in WINDOWS] + [("pooled", group)]
        for window, cell in cells:
            hits, n = int((cell[column] < SIGNIFICANCE).sum()), len(cell)
            low, high = wilson(hits, n)
            rows.append({"shape": shape, "benchmark": kind, "window": window, "replications": n,
                         "starred": hits / n if n else math.nan, "low": low, "high": high,
                         "no_test": float(cell[column].isna().mean()) if n else math.nan})
    return pd.DataFrame(rows)


def run(universes: int, per_universe: int, symbols: int, years: int, seed: int = 2024, processes: int = 2
        ) -> pd.DataFrame:
    """Every record of the study (replicate()), universes spread over `processes` processes."""
    tasks = [(seed * 1000 + u, per_universe, symbols, years, seed) for u in range(universes)]
    if processes > 1:
        with multiprocessing.get_context("forkserver").Pool(processes) as pool:
            chunks = pool.map(replicate, tasks, chunksize=1)
    else:
        chunks = [replicate(task) for task in tasks]
    return pd.DataFrame([r for chunk in chunks for r in chunk])


def markdown(records: pd.DataFrame, settings: dict) -> str:
    """STATISTICS.md's size table."""
    def table(rates: pd.DataFrame, title: str, shapes=SHAPES, benchmarks=BENCHMARKS) -> list[str]:
        lines = [f"#### {title}", "", "| shape | benchmark | " + " | ".join(f"{h} bars" for h in WINDOWS)
                 + " | pooled |", "|---|---|" + "---|" * (len(WINDOWS) + 1)]
        for shape in shapes:
            for kind in benchmarks:
                cells = rates[(rates["shape"] == shape) & (rates["benchmark"] == kind)].set_index("window")
                if cells.empty:
                    continue
                shown = [f"{100 * c.starred:.1f}% ({100 * c.low:.1f}-{100 * c.high:.1f})"
                         + (f", {100 * c.no_test:.1f}% no t" if c.no_test > 0 else "")
                         for c in (cells.loc[w] for w in [*WINDOWS, "pooled"])]
                lines.append(f"| {shape} | {kind} | " + " | ".join(shown) + " |")
        return lines + [""]

    lines = [f"Measured by `{settings['command']}` on {settings['date']}: {settings['universes']} universes x "
             f"{settings['per_universe']} replications = {settings['replications']} per cell, {settings['symbols']} "
             f"symbols x {settings['years']} years each ({settings['seconds']:.0f} s). Cells: the share of "
             "replications starred at 5% (p < 0.05, before any multiplicity adjustment), with its 95% Wilson "
             "interval; 'no t': replications with too few clusters for a t (never starred).", ""]
    lines += table(rejection_rates(records), "abn_t (variant: vs_baseline_t), after: two-way clustered, t(G - 1)")
    before = records[~records["shape"].isin(VARIANTS)].dropna(subset=["before_p"], how="all")
    lines += table(rejection_rates(before, "before_p"), "the same events, before: clustered by date only, normal "
                   "1.96, market benchmark", shapes=SHAPES[:-2], benchmarks=("market",))
    lines += table(rejection_rates(records.dropna(subset=["sign_p"], how="all"), "sign_p"),
                   "generalized sign test (sign_t), two-way clustered", shapes=SHAPES[:-2])
    lines += table(rejection_rates(records.dropna(subset=["spread_p"], how="all"), "spread_p"),
                   "score quintiles' top-minus-bottom spread (random scores), two-way clustered", shapes=SHAPES[:-2])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--universes", type=int, default=40)
    parser.add_argument("--per-universe", type=int, default=5)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write", action="store_true", help="put the table into STATISTICS.md")
    args = parser.parse_args(argv)
    started = time.time()
    records = run(args.universes, args.per_universe, args.symbols, args.years, processes=args.processes)
    settings = {"command": "python " + " ".join(["benchmarks/placebo.py", *(argv or sys.argv[1:])]),
                "date": time.strftime("%Y-%m-%d"), "universes": args.universes, "per_universe": args.per_universe,
                "replications": args.universes * args.per_universe, "symbols": args.symbols, "years": args.years,
                "seconds": time.time() - started}
    text = markdown(records, settings)
    print(text)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    saved = results / f"placebo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps({"settings": settings,
                                 "rates": rejection_rates(records).to_dict("records"),
                                 "before": rejection_rates(records.dropna(subset=["before_p"]), "before_p")
                                 .to_dict("records")}, indent=1, default=str))
    if args.write:
        path = ROOT / "STATISTICS.md"
        head, marker, _ = path.read_text().partition("<!-- size table -->")
        path.write_text(head + marker + "\n" + text + "\n")
    print(f"saved {saved}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summary statistics of forward returns per (detector, window), and their text rendering. Pure."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.eval import forward_column

SUMMARY_COLUMNS = ["detector", "baseline", "window", "events", "valid", "mean", "median", "std",
                   "t_stat", "hit_rate", "baseline_mean", "symbols", "failed_symbols"]


def return_stats(returns: np.ndarray) -> dict[str, float | int]:
    """valid, mean, median, std (ddof=1), t_stat = mean / (std / sqrt(valid)), hit_rate = share > 0.

    NaN entries are not valid and are left out. With no valid return every statistic is NaN; with
    one, std and t_stat are NaN; t_stat is NaN when std is 0.
    """
    values = returns[~np.isnan(returns)]
    n = len(values)
    if n == 0:
        return {"valid": 0, "mean": math.nan, "median": math.nan, "std": math.nan,
                "t_stat": math.nan, "hit_rate": math.nan}
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    t_stat = mean / (std / math.sqrt(n)) if n > 1 and std > 0 else math.nan
    return {"valid": n, "mean": mean, "median": float(np.median(values)), "std": std,
            "t_stat": t_stat, "hit_rate": float((values > 0).sum() / n)}


def summarize(forward: Mapping[str, pd.DataFrame], windows: Sequence[int],
              baselines: Mapping[str, str | None], symbols: int = 0, failed_symbols: int = 0) -> pd.DataFrame:
    """One row per (detector, window) with SUMMARY_COLUMNS.

    forward: detector name -> its forward-return rows (columns fwd_<h> for each window), in the
    order the detectors should appear. baselines: detector -> the baseline it varies, or None.
    baseline_mean is the baseline's mean for the same window when the baseline ran, else NaN.
    symbols / failed_symbols: how many symbols were scanned / failed (skipped), repeated on every row
    so that summary.csv says on its own how much of the universe it covers.
    """
    rows = []
    for detector, frame in forward.items():
        for h in windows:
            stats = return_stats(frame[forward_column(h)].to_numpy(dtype="float64"))
            rows.append({"detector": detector, "baseline": baselines.get(detector) or "", "window": h,
                         "events": len(frame), **stats})
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS[:-3])
    means = {(r.detector, r.window): r.mean for r in table.itertuples()}
    table["baseline_mean"] = [means.get((b, w), math.nan) if b else math.nan
                              for b, w in zip(table["baseline"], table["window"])]
    table["symbols"] = symbols
    table["failed_symbols"] = failed_symbols
    return table


def format_summary(table: pd.DataFrame) -> str:
    """A fixed-width text table for the terminal, returns in %, rows in the table's order."""
    shown = table.copy()
    for col in ("mean", "median", "std", "baseline_mean"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{100 * v:+.2f}%")
    shown["hit_rate"] = shown["hit_rate"].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}%")
    shown["t_stat"] = shown["t_stat"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    shown = shown.drop(columns=["symbols", "failed_symbols"])
    shown = shown.rename(columns={"baseline": "vs baseline", "baseline_mean": "baseline mean"})
    return shown.to_string(index=False)


def confidence_interval(mean: pd.Series, std: pd.Series, valid: pd.Series, z: float = 1.96
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of mean +- z * std / sqrt(valid): a normal-approximation 95% interval by default.

    NaN where std is NaN (fewer than two valid returns).
    """
    half = z * np.asarray(std, dtype="float64") / np.sqrt(np.maximum(np.asarray(valid, dtype="float64"), 1))
    return np.asarray(mean, dtype="float64") - half, np.asarray(mean, dtype="float64") + half


def events_per_year(dates: pd.Series) -> pd.Series:
    """Number of events per calendar year, indexed by year, every year from first to last present."""
    if dates.empty:
        return pd.Series([], dtype="int64")
    years = pd.DatetimeIndex(dates).year
    counts = pd.Series(years).value_counts().sort_index()
    return counts.reindex(range(counts.index.min(), counts.index.max() + 1), fill_value=0)


def histogram(values: np.ndarray, pooled: np.ndarray, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(density, edges) of `values` on bins spanning the 1st-99th percentile of `pooled` (so that
    several detectors share bins); NaN values are left out, and so are values outside the range."""
    pooled = pooled[~np.isnan(pooled)]
    values = values[~np.isnan(values)]
    if len(pooled) == 0:
        return np.zeros(bins), np.linspace(-0.1, 0.1, bins + 1)
    low, high = np.percentile(pooled, [1, 99])
    if low == high:
        low, high = low - 0.01, high + 0.01
    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    width = edges[1] - edges[0]
    return (counts / (counts.sum() * width) if counts.sum() else counts.astype("float64")), edges


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

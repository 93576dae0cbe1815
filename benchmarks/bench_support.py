"""Helpers of benchmarks/bench.py that worker processes must import (tasks refer to them by name)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SLEEP_SECONDS = 0.02


def sleepy(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """A detector that only sleeps: every CPU cycle of its task is overhead. No events."""
    time.sleep(SLEEP_SECONDS)
    return pd.DataFrame({"date": df["date"].iloc[:0], "score": pd.Series([], dtype="float64")})


def one_bar_universe(root: Path, symbols: int) -> Path:
    """`symbols` partitions of one bar each under root/ohlcv (the cheapest symbols to read)."""
    data = root / "ohlcv"
    table = pa.table({"date": pa.array([pd.Timestamp("2024-01-02")], pa.timestamp("ns")),
                      **{c: pa.array([1.0]) for c in ("open", "high", "low", "close", "volume")}})
    for n in range(symbols):
        folder = data / f"symbol=S{n:05d}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-0.parquet")
    return data

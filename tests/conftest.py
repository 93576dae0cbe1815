"""Shared fixtures: small real universes on disk and a helper that runs the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.synth import write_universe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_universe(tmp_path_factory) -> Path:
    """20 symbols x 3 years from harness.synth (seed 11): the universe of the end-to-end tests."""
    root = tmp_path_factory.mktemp("universe") / "ohlcv"
    write_universe(root, symbols=20, years=3, seed=11)
    return root


def bars(n: int = 30, start: str = "2024-01-01", close=None, volume=None) -> pd.DataFrame:
    """A hand-made frame in read_symbol_data's shape: business days, flat prices unless given."""
    close = np.full(n, 100.0) if close is None else np.asarray(close, dtype="float64")
    n = len(close)
    volume = np.full(n, 1000.0) if volume is None else np.asarray(volume, dtype="float64")
    return pd.DataFrame({"date": pd.bdate_range(start, periods=n).astype("datetime64[ns]"),
                         "open": close, "high": close, "low": close, "close": close, "volume": volume})


def write_partition(root: Path, symbol: str, frame: pd.DataFrame, name: str = "part-0.parquet") -> Path:
    """Write `frame` as one parquet file of `symbol`'s partition under `root`."""
    folder = root / f"symbol={symbol}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def write_config(path: Path, **keys) -> Path:
    import yaml
    path.write_text(yaml.safe_dump(keys))
    return path


TESTS = Path(__file__).resolve().parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: the repo and tests/ (user_detectors) importable, plus `extra`."""
    return {**os.environ, "PYTHONPATH": f"{REPO}:{TESTS}", **extra}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            **kwargs) -> subprocess.CompletedProcess:
    """`python -m harness.run ARGS` in a subprocess; returns the completed process (text output)."""
    env = env or cli_env()
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)

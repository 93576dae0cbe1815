"""Shared fixtures: small real universes on disk and a helper that runs the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Sequence
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
    path = root / f"symbol={symbol}" / name  # `name` may hold sub-folders: year=2024/part.parquet
    path.parent.mkdir(parents=True, exist_ok=True)
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


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A real `dask scheduler` and `dask worker`s on 127.0.0.1, as separate processes; stopped on exit."""

    def __init__(self, workers: int = 2, tls: dict | None = None, python: str = sys.executable,
                 env: dict | None = None, cwd: Path | None = None, worker_flags: Sequence[str] = ()):
        self.port = free_port()
        self.protocol = "tls" if tls else "tcp"
        self.address = f"{self.protocol}://127.0.0.1:{self.port}"
        tls_flags = ["--tls-ca-file", tls["ca_file"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]] if tls else []
        env = env or cli_env()
        out = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        self.procs = [subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                        "--port", str(self.port), "--protocol", self.protocol,
                                        "--dashboard-address", "127.0.0.1:0", *tls_flags], **out)]
        self.procs += [subprocess.Popen([python, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1",
                                         "--host", "127.0.0.1", "--no-dashboard", *tls_flags, *worker_flags], **out)
                       for _ in range(workers)]
        self.tls, self.workers = tls, workers

    def wait(self, timeout: float = 60) -> "DaskProcesses":
        from distributed import Client
        from distributed.security import Security
        security = Security(tls_ca_file=self.tls["ca_file"], tls_client_cert=self.tls["cert"],
                            tls_client_key=self.tls["key"], require_encryption=True) if self.tls else None
        with Client(self.address, timeout=30, security=security) as client:
            client.wait_for_workers(self.workers, timeout=timeout)
        return self

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def __enter__(self) -> "DaskProcesses":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


# --- helpers shared by several test modules (no test module imports another) ---

# every registered detector, in the config's order
DETECTORS = ["volume_spike", "volume_spike_trend", "breakout_52w", "breakout_52w_volume", "gap",
             "rsi_oversold", "rsi_oversold_fast", "squeeze_breakout", "ma_cross"]


def output_files(out: Path, record: bool = False) -> dict[str, bytes]:
    """Every output file the determinism contract covers: not run.json and report.html (they hold
    timings), not the resumable staging folder nor the lock file; the reuse record only with
    `record` (it holds the digest of the config: a run of the same data from s3:// and one from
    disk, or one with the look-ahead check and one without, write the same files but not the same
    record)."""
    from harness.outdir import LOCK_FILE, REUSE_RECORD, STAGING
    left_out = ("run.json", "report.html") + (() if record else (REUSE_RECORD,))
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name not in left_out
                   and not {STAGING, LOCK_FILE} & set(p.relative_to(out).parts))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.fixture()
def marked_universe(tmp_path, small_universe):
    """A copy of the small universe in which one symbol carries the marker volume."""
    from user_detectors import MARKER_VOLUME
    root = tmp_path / "marked"
    shutil.copytree(small_universe, root)
    victim = sorted(p.name for p in root.iterdir())[7].split("=")[1]
    path = next((root / f"symbol={victim}").glob("*.parquet"))
    table = pq.read_table(path).to_pandas()
    table.loc[len(table) // 2, "volume"] = MARKER_VOLUME
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    return root, victim


def marked_processes(marker: str) -> list:
    """The processes whose environment has SCAN_TEST_MARKER=marker (psutil.Process)."""
    import psutil
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SCAN_TEST_MARKER") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def same_tree(a: Path, b: Path) -> bool:
    """Whether two folders hold the same files with the same bytes."""
    import filecmp
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def statsmodels_fit(y, dates, symbols, dummy=None):
    """statsmodels' OLS with two-way clustered errors (Cameron, Gelbach & Miller) and t(G - 1)."""
    import statsmodels.api as sm
    exog = np.ones((len(y), 1)) if dummy is None else np.column_stack([np.ones(len(y)), dummy])
    groups = np.column_stack([pd.factorize(np.asarray(dates))[0], pd.factorize(np.asarray(symbols))[0]])
    return sm.OLS(np.asarray(y), exog).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)

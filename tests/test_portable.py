"""Same bytes on every machine: the sample universe and a scan's outputs do not depend on numpy's SIMD code.

NPY_DISABLE_CPU_FEATURES makes numpy run its baseline code instead of the AVX2/AVX-512 loops it
would pick on this CPU, which is how another machine's numpy behaves (DESIGN.md, "Same bytes on
every machine"). Each test compares a subprocess run under it with a plain run, byte for byte.
On a CPU without those features the two runs take the same code and the tests pass trivially; on
this project's AVX2 machines numpy's float64 exp/log happen to give the same bits either way (tanh
and float32 exp do not), so tests/test_synth.py also nudges those functions directly.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import DETECTORS, REPO, cli_env, output_files, run_cli, same_tree, write_config

OTHER_CPU = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 X86_V3"}


def test_the_switch_reaches_numpy():
    proc = subprocess.run([sys.executable, "-c", "import numpy.lib.introspect as i; "
                           "print(i.opt_func_info(func_name='exp')['exp']['dd']['current'])"],
                          env=cli_env(**OTHER_CPU), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("baseline"), proc.stdout + proc.stderr


def test_generator_writes_the_same_bytes_with_numpy_baseline_code(tmp_path, small_universe):
    # small_universe is write_universe(root, symbols=20, years=3, seed=11), run in this process.
    proc = subprocess.run([sys.executable, "-m", "harness.synth", "--out", str(tmp_path / "other"),
                           "--symbols", "20", "--years", "3", "--seed", "11"],
                          cwd=REPO, env=cli_env(**OTHER_CPU), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert same_tree(small_universe, tmp_path / "other")


def test_scan_writes_the_same_bytes_with_numpy_baseline_code(tmp_path, small_universe):
    outputs = {}
    for name, env in (("plain", {}), ("other", OTHER_CPU)):
        # market_model: the benchmark with the most arithmetic (running sums, a fit per event)
        config = write_config(tmp_path / f"{name}.yaml", ohlcv_path=str(small_universe), detectors=DETECTORS,
                              out_dir=str(tmp_path / name), flush_every=3, benchmark="market_model",
                              min_market_symbols=19)
        proc = run_cli("--config", str(config), "--workers", "1", env=cli_env(**env))
        assert proc.returncode == 0, proc.stderr
        outputs[name] = output_files(tmp_path / name)
    assert {"summary.csv", "quantiles.csv", "gap/events.parquet", "gap/forward.parquet"} <= set(outputs["plain"])
    assert outputs["plain"] == outputs["other"]

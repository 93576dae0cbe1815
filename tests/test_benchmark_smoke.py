"""The benchmark runs end to end on a tiny universe and writes its JSON (no timing asserted)."""

import json
import subprocess
import sys

from conftest import REPO


def test_bench_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--smoke", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr
    [saved] = list(tmp_path.glob("bench-*.json"))
    report = json.loads(saved.read_text())
    assert set(report["full"]) == {"serial", "dask-2", "dask-8", "dask-2-per1", "limit-2"}
    assert set(report["sample"]) == {"serial", "dask-8"}
    for mode in report["full"].values():
        assert mode["wall_median"] > 0 and mode["cpu_median"] > 0 and mode["timings_median"]["scan"] > 0
    assert report["full"]["dask-2-per1"]["tasks_median"] == 12 and report["full"]["serial"]["tasks_median"] == 0
    assert report["dask_overhead"]["bare_cpu_ms_per_task"] > 0 and report["projection_8_cores"]["speedup"] > 0
    assert 0 < report["projection_8_cores"]["largest_units_share"] <= 1
    assert "| full | dask-2 |" in proc.stdout


def test_bench_pair_measures_dask_2_against_the_limit(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--pair", "--symbols", "8",
                           "--years", "2", "--rounds", "2", "--data-root", str(tmp_path / "data"),
                           "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr
    [saved] = list((tmp_path / "results").glob("pair-*.json"))
    report = json.loads(saved.read_text())
    assert set(report["walls"]) == {"dask-2", "limit-2"} and all(len(w) == 2 for w in report["walls"].values())
    assert len(report["per_round"]) == 2 and all(r > 0 for r in report["per_round"])
    assert report["timings"]["dask-2"][0]["cluster_start"] > 0 and report["timings"]["limit-2"][0]["cluster_start"] == 0
    assert "dask-2 vs limit-2:" in proc.stdout

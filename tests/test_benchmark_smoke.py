"""The scaling benchmark runs end to end on a tiny universe and writes its JSON (no timing asserted)."""

import json
import subprocess
import sys

from conftest import REPO


def test_scaling_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scaling.py"), "--symbols", "6", "--years", "2",
                           "--workers", "2", "--noop-tasks", "50", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [saved] = list(tmp_path.glob("scaling-*.json"))
    report = json.loads(saved.read_text())
    modes = {(r["mode"], r["workers"]) for r in report["scaling"]}
    assert modes == {("serial", 1), ("dask", 2), ("ppe", 2), ("limit", 2), ("dask/4", 2)}
    for row in report["scaling"]:
        assert row["scan_seconds"] > 0 and row["rss_mb"] > 0 and row["symbols_per_second"] > 0
    assert report["read"]["read_symbol_data_ms"] > 0 and report["dask_overhead"]["tasks_per_second"] > 0
    assert "| dask | 2 |" in proc.stdout


def test_ab_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ab.py"), "--symbols", "4", "--years", "1",
                           "--pairs", "1", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [saved] = list(tmp_path.glob("ab-*.json"))
    runs = json.loads(saved.read_text())["runs"]
    assert [r["mode"] for r in runs] == ["ppe", "dask"]
    for run in runs:
        assert run["wall_seconds"] > 0 and run["worker_cpu_seconds"] > 0 and run["detector_cpu_seconds"] > 0
    assert "ppe / dask = " in proc.stdout

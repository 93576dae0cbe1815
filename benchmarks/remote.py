"""The remote path against a LocalCluster: whole CLI processes, side by side, modes alternated.

    python benchmarks/remote.py [--symbols 1000] [--years 20] [--rounds 3]     (make remote)

Modes, one of each per round, each one `python -m harness.run` process from its start to its exit:
- serial: --workers 1;
- local-2: --workers 2 (a LocalCluster of this run: the end's jobs read the staging folder);
- remote-2: --scheduler at a `dask scheduler` and two `dask worker --nthreads 1` processes started
  as separate processes on this machine before the rounds (the remote path: the staged chunks are
  sent to the workers through Dask, run.json `bytes_shipped`).
Records wall seconds, run.json's timings (finalize: the end of the run), the end's jobs, the
driver's peak RSS and the bytes the remote end moved (`bytes_shipped`: the staged chunks' rows and
series files, about what the scan's results weighed on their way in). Saves JSON under
benchmarks/results/; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench import universe  # noqa: E402

EXTRA: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_remote(workers: int) -> tuple[str, list[subprocess.Popen]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", "127.0.0.1:0"], **quiet)]
    procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                "--host", "127.0.0.1", "--no-dashboard", *EXTRA], **quiet) for _ in range(workers)]
    from distributed import Client
    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def run_once(config: Path, flags: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.run", "--config", str(config), "-q", "--no-reuse", *flags], cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{proc.stderr}")
    out = Path(yaml.safe_load(config.read_text())["out_dir"])
    run = json.loads((out / "run.json").read_text())
    return {"wall": wall, "timings": run["timings"], "finish_jobs": run["finish_jobs"],
            "bytes_shipped": run.get("bytes_shipped", 0), "tasks": run["tasks"],
            "driver_peak_rss_mb": run["driver_peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", default=str(REPO / "data" / "bench"))
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    from harness.detectors import REGISTERED
    data = universe(args.symbols, args.years, Path(args.data_root))
    address, procs = start_remote(2)
    runs: dict[str, list[dict]] = {"serial": [], "local-2": [], "remote-2": []}
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            configs = {}
            for mode in runs:
                configs[mode] = tmp / f"{mode}.yaml"
                configs[mode].write_text(yaml.safe_dump({
                    "ohlcv_path": str(data), "detectors": list(REGISTERED), "out_dir": str(tmp / mode),
                    "workers": 1 if mode == "serial" else 2, "dashboard_address": "127.0.0.1:0"}))
            flags = {"serial": [], "local-2": [], "remote-2": ["--scheduler", address]}
            for r in range(args.rounds):
                for mode in runs:
                    runs[mode].append(run_once(configs[mode], flags[mode]))
                    print(f"  round {r + 1}/{args.rounds} {mode:9s} {runs[mode][-1]['wall']:7.2f} s "
                          f"(finalize {runs[mode][-1]['timings']['finalize']:.2f} s)", file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)

    def median(mode: str, key) -> float:
        return statistics.median(key(run) for run in runs[mode])

    summary = {mode: {"wall_median": median(mode, lambda r: r["wall"]),
                      "finalize_median": median(mode, lambda r: r["timings"]["finalize"]),
                      "scan_median": median(mode, lambda r: r["timings"]["scan"]),
                      "driver_peak_rss_mb_median": median(mode, lambda r: r["driver_peak_rss_mb"]),
                      "walls": [r["wall"] for r in runs[mode]],
                      "finalizes": [r["timings"]["finalize"] for r in runs[mode]],
                      "finish_jobs": runs[mode][0]["finish_jobs"], "bytes_shipped": runs[mode][0]["bytes_shipped"]}
               for mode in runs}
    ratios = {"remote_vs_local_wall": summary["remote-2"]["wall_median"] / summary["local-2"]["wall_median"],
              "remote_vs_local_finalize": summary["remote-2"]["finalize_median"] / summary["local-2"]["finalize_median"],
              "local_vs_serial_finalize": summary["local-2"]["finalize_median"] / summary["serial"]["finalize_median"],
              "remote_vs_serial_finalize": summary["remote-2"]["finalize_median"] / summary["serial"]["finalize_median"]}
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "universe": {"symbols": args.symbols, "years": args.years,
                                                                      "rounds": args.rounds},
              "modes": summary, "ratios": ratios}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"remote-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for mode, s in summary.items():
        print(f"{mode:9s} wall {s['wall_median']:7.2f} s  finalize {s['finalize_median']:6.2f} s  "
              f"scan {s['scan_median']:6.2f} s  driver RSS {s['driver_peak_rss_mb_median']:.0f} MB  "
              f"shipped {s['bytes_shipped'] / 1e6:.0f} MB")
    print("ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print(f"saved {path}")


if __name__ == "__main__":
    main()

"""Load: the driver's and the workers' peak memory as the universe grows, on the default 8-worker LocalCluster.

    python benchmarks/load.py [--sizes 500,5000] [--years 2] [--repo CHECKOUT]      (make load)

For each size, generates a universe of short histories (to keep it quick), runs the real CLI
(all nine detectors, default 8 workers) as a subprocess and records the driver's peak RSS (run.json
`driver_peak_rss_mb`: the driver's own getrusage, not its workers'), the peak of its cluster's
processes' memory together (PSS, sampled every 0.25 s) and the wall time. Bounded
memory means the peak barely moves with the size. Saves JSON under benchmarks/results/; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from harness.synth import write_universe  # noqa: E402


def workers_memory(proc: subprocess.Popen, started: float, every: float = 0.25) -> list[tuple[float, float]]:
    """(seconds since `started`, the time.time() just before `proc` started, MB) samples, taken every `every` seconds until `proc` exits,
    of the sum of the proportional set size (PSS: shared pages split between the processes that
    share them, so the forkserver's pages are not counted once per worker) of every process below
    `proc`: its cluster's workers, nannies and forkserver."""
    import psutil
    parent, samples = psutil.Process(proc.pid), []  # (not create_time(): up to a second off)
    while proc.poll() is None:
        total = 0
        try:
            children = parent.children(recursive=True)
        except psutil.Error:
            break
        for child in children:
            try:
                total += child.memory_full_info().pss
            except psutil.Error:
                pass
        samples.append((time.time() - started, total / 2**20))
        time.sleep(every)
    return samples


def peaks_by_phase(samples: list[tuple[float, float]], timings: dict[str, float]) -> dict[str, float]:
    """The largest sample overall, and within the scan (cluster start included) and within
    finalize, placed by run.json's timings (seconds from the process's start, step after step)."""
    scan_end = timings["imports"] + timings["prepare"] + timings["cluster_start"] + timings["scan"]
    phases = {"all": (0.0, float("inf")), "scan": (0.0, scan_end),
              "finalize": (scan_end, scan_end + timings["finalize"])}
    return {name: round(max((mb for t, mb in samples if a <= t < b), default=0.0), 1)
            for name, (a, b) in phases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000")
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--repo", default=str(REPO), help="the checkout whose code runs (e.g. a git worktree "
                        "of an older commit, to compare)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for size in (int(s) for s in args.sizes.split(",")):
            data = tmp / f"u{size}"
            write_universe(data, size, args.years, seed=7)
            config = tmp / f"c{size}.yaml"
            config.write_text(yaml.safe_dump({"ohlcv_path": str(data), "out_dir": str(tmp / f"out{size}"),
                                              "workers": args.workers, "dashboard_address": "127.0.0.1:0"}))
            t0, started = time.perf_counter(), time.time()
            with open(tmp / "stderr", "w+") as err:  # a file, not a pipe: nobody reads it while it runs
                proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config), "--no-reuse"], cwd=args.repo,
                                        stdout=subprocess.DEVNULL, stderr=err, text=True)
                samples = workers_memory(proc, started)
                proc.wait()
                err.seek(0)
                stderr = err.read()
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(stderr)
            run = json.loads((tmp / f"out{size}" / "run.json").read_text())
            peaks = peaks_by_phase(samples, run["timings"])
            workers_peak = peaks["all"]
            rows.append({"repo": args.repo, "symbols": size, "years": args.years, "workers": args.workers, "wall_seconds": wall,
                         "driver_peak_rss_mb": run["driver_peak_rss_mb"], "workers_peak_pss_mb": workers_peak,
                         "workers_peak_pss_mb_scan": peaks["scan"], "workers_peak_pss_mb_finalize": peaks["finalize"],
                         "timings": run["timings"]})
            print(f"{size} symbols: {wall:.1f}s, driver peak RSS {run['driver_peak_rss_mb']:.0f} MB, "
                  f"workers' peak PSS {workers_peak:.0f} MB (scan {peaks['scan']:.0f}, finalize "
                  f"{peaks['finalize']:.0f})", flush=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": rows}, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()

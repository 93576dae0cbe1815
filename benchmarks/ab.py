"""A/B pairs: the execute step alone (tasks out, results back), two modes alternating.

    python benchmarks/ab.py [--modes ppe,dask] [--pairs 3] [--workers 2] [--symbols 400] [--years 10]

On this kind of shared 2-vCPU machine a full `make bench` run moves by +-15% between runs, which
hides 5-10% effects. This script times only what differs between executors (no listing, flushes,
summary or report), alternates the modes so that a slow moment of the machine hits both, and
reports per pair the wall seconds, the CPU seconds of the driver process and of its children
(workers), and the detectors' own CPU. Each run is a fresh child process. Modes: ppe, dask
(symbols_per_task from --symbols-per-task). JSON in benchmarks/results/ab-*.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def child(mode: str, workers: int, per_task: int, data: str, out: str) -> dict:
    import psutil

    from harness.config import load_config
    from harness.detectors import resolve_detectors
    from harness.run import execute_on_dask, select_symbols
    from harness.task import ScanTask
    from scaling import DETECTORS, ppe_execute

    cfg = load_config({"ohlcv_path": data, "detectors": DETECTORS},
                      {"workers": workers, "out_dir": out, "dashboard_address": "127.0.0.1:0",
                       "symbols_per_task": per_task})
    symbols = select_symbols(cfg)[0]
    task = ScanTask.from_config(cfg, resolve_detectors(cfg.detectors, cfg.params))
    opener = ppe_execute(workers) if mode == "ppe" else execute_on_dask
    me = psutil.Process()

    def cpu() -> tuple[float, float]:
        kids = 0.0
        for kid in me.children(recursive=True):
            try:
                times = kid.cpu_times()
                kids += times.user + times.system
            except psutil.Error:
                pass
        own = me.cpu_times()
        return own.user + own.system, kids

    with opener(cfg, symbols, 0, task, {}) as results:
        (driver0, workers0), t0 = cpu(), time.perf_counter()
        detector_cpu = sum(sum(r.cpu_seconds.values()) for _, r in results)
        wall = time.perf_counter() - t0
        driver1, workers1 = cpu()
    return {"mode": mode, "wall_seconds": wall, "driver_cpu_seconds": driver1 - driver0,
            "worker_cpu_seconds": workers1 - workers0, "detector_cpu_seconds": detector_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="ppe,dask")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--symbols-per-task", type=int, default=1)
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as out:
            print(json.dumps(child(args.child, args.workers, args.symbols_per_task, args.data, out)))
        return

    from harness.synth import write_universe
    modes = args.modes.split(",")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "ohlcv")
        write_universe(Path(data), args.symbols, args.years, seed=7)
        for pair in range(args.pairs):
            for mode in modes:
                proc = subprocess.run([sys.executable, __file__, "--child", mode, "--data", data,
                                       "--workers", str(args.workers), "--symbols-per-task", str(args.symbols_per_task)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
                runs.append({"pair": pair, **json.loads(proc.stdout.strip().splitlines()[-1])})
                r = runs[-1]
                print(f"pair {pair} {mode:5s} wall {r['wall_seconds']:6.2f} s  driver CPU {r['driver_cpu_seconds']:5.2f} s  "
                      f"worker CPU {r['worker_cpu_seconds']:6.2f} s  detector CPU {r['detector_cpu_seconds']:6.2f} s")
    mean = {m: sum(r["wall_seconds"] for r in runs if r["mode"] == m) / args.pairs for m in modes}
    print("mean wall: " + ", ".join(f"{m} {s:.2f} s" for m, s in mean.items())
          + f"; {modes[0]} / {modes[-1]} = {mean[modes[0]] / mean[modes[-1]]:.2f}")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("child", "data")},
                                "runs": runs, "mean_wall_seconds": mean}, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()

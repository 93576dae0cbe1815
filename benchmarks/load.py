"""Load: driver peak memory as the universe grows, on the default 8-worker LocalCluster.

    python benchmarks/load.py [--sizes 500,5000] [--years 2]

For each size, generates a universe of short histories (to keep it quick), runs the real driver
(run_scan, all nine detectors, default 8 workers) in a fresh child process and records the
driver's peak RSS and the wall time. Bounded memory means the peak barely moves with the size.
Saves JSON under benchmarks/results/; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from scaling import collect, run_child  # noqa: E402

from harness.synth import write_universe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000")
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for size in (int(s) for s in args.sizes.split(",")):
            data = tmp / f"u{size}"
            write_universe(data, size, args.years, seed=7)
            r = collect(run_child("dask", args.workers, str(data), str(tmp / f"out{size}")))
            rows.append({"symbols": size, "years": args.years, "workers": args.workers,
                         "scan_seconds": r["ended"] - r["began"], "startup_seconds": r["startup"],
                         "driver_peak_rss_mb": r["rss_mb"]})
            print(f"{size} symbols: scan {rows[-1]['scan_seconds']:.1f}s, driver peak RSS {r['rss_mb']:.0f} MB",
                  flush=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": rows}, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()

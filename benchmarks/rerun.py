"""What a researcher's rerun costs against a full run: whole CLI processes (harness.reuse).

    python benchmarks/rerun.py [--data data/bench/1000x20/ohlcv] [--workers 1 2] [--rounds 3]

Each round, for each number of workers: a full run of the nine default detectors into an empty
folder; then, into the same folder, the same run with one variant's parameters changed
(volume_spike_trend's multiple, a new value every round: the rerun scans that detector only); then
the same again with one detector added (a gap entry of its own parameters, gap its baseline: the
rerun scans that one only). Prints each process's wall seconds (start to exit), the ratios rerun /
full per round and of the best of each, and the reruns' run.json timings; saves JSON under
benchmarks/results/. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.config import load_config  # noqa: E402

KINDS = ("full", "changed", "added")


def config_text(kind: str, round_number: int) -> str:
    """The YAML of one kind of run: the default detectors, a variant's parameters changed or not,
    one detector added or not."""
    detectors = list(load_config({}).detectors)
    if kind == "added":
        detectors.append({"name": "gap_wide", "detector": "gap", "params": {"min_gap": 0.05}, "baseline": "gap"})
    multiple = 2.5 + 0.1 * round_number if kind != "full" else 2.0
    return json.dumps({"detectors": detectors, "params": {"volume_spike_trend": {"multiple": multiple}}})


def run(config: Path, data: str, out: Path, workers: int) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.run", "--config", str(config), "--data", data, "--out", str(out),
                    "--workers", str(workers), "-q"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    info = json.loads((out / "run.json").read_text())
    return wall, {"timings": info["timings"], "reused": info["reused"], "driver_peak_rss_mb": info["driver_peak_rss_mb"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "bench" / "1000x20" / "ohlcv"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        for r in range(args.rounds):
            # the order of the worker counts alternates, so that a machine growing slower weighs on both
            for workers in (args.workers if r % 2 == 0 else args.workers[::-1]):
                out = Path(tmp) / f"out-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                seconds, facts = {}, {}
                for kind in KINDS:
                    config = Path(tmp) / f"{kind}.yaml"
                    config.write_text(config_text(kind, r))
                    seconds[kind], facts[kind] = run(config, args.data, out, workers)
                rounds.append({"round": r + 1, "workers": workers, "seconds": seconds, "facts": facts})
                print(f"round {r + 1}, {workers} worker(s): full {seconds['full']:.2f} s, one variant changed "
                      f"{seconds['changed']:.2f} s ({seconds['changed'] / seconds['full']:.3f}), one detector added "
                      f"{seconds['added']:.2f} s ({seconds['added'] / seconds['full']:.3f})", flush=True)
    best = {}
    for workers in args.workers:
        mine = [r["seconds"] for r in rounds if r["workers"] == workers]
        best[workers] = {kind: min(s[kind] for s in mine) for kind in KINDS}
        b = best[workers]
        print(f"best of {len(mine)}, {workers} worker(s): full {b['full']:.2f} s, changed {b['changed']:.2f} s "
              f"(ratio {b['changed'] / b['full']:.3f}), added {b['added']:.2f} s (ratio {b['added'] / b['full']:.3f})")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    saved = results / f"rerun-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps({"data": args.data, "rounds": rounds, "best": best}, indent=1))
    print(f"saved {saved}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What this machine's cores allow: the same work alone and in N processes at once.

    python benchmarks/cores.py [--processes 2] [--rounds 3]

Two kinds of work, each a fixed loop: `numpy`, array arithmetic over 24 MB arrays (what the end of a
run does: market-adjusted returns, the sign test's null over every bar), and `python`, a pure-Python
loop (what detector code mostly costs). For each, the seconds of one process alone, then of
`--processes` processes started together (each its own seconds), alternated over the rounds. A
ratio (together / alone) near 1 means the cores run that work side by side at full speed; a 2-vCPU
VM whose vCPUs share a core, or its memory bandwidth, slows array work down. This bounds what any
parallel end of a run can reach here (BENCHMARKS.md). Saves JSON under benchmarks/results/; asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORK = {
    "numpy": """
import numpy as np, time
rng = np.random.default_rng(0)
n = 3_000_000
close, level = (np.exp(np.cumsum(rng.normal(0, .01, n))) for _ in range(2))
t = time.perf_counter()
for _ in range(12):
    for h in (5, 10, 20, 40):
        x = np.where(np.arange(h, n) < n - 3, (close[h:] / close[:-h]) - (level[h:] / level[:-h]), np.nan)
        (~np.isnan(x)).sum(), (x > 0).sum()
print(time.perf_counter() - t)
""",
    "python": """
import time
t = time.perf_counter()
s = 0
for i in range(12_000_000):
    s += i % 7
print(time.perf_counter() - t)
""",
}


def run_together(code: str, processes: int) -> list[float]:
    """Seconds of each of `processes` copies of `code` started at once."""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    return [float(proc.communicate()[0]) for proc in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "processes": args.processes, "work": {}}
    for kind, code in WORK.items():
        alone, together = [], []
        for _ in range(args.rounds):
            alone += run_together(code, 1)
            together += run_together(code, args.processes)
        ratio = statistics.median(together) / statistics.median(alone)
        report["work"][kind] = {"alone": alone, "together": together, "ratio": ratio}
        print(f"{kind:6s} alone {statistics.median(alone):.2f} s, {args.processes} at once "
              f"{statistics.median(together):.2f} s each: {ratio:.2f}x slower, "
              f"{args.processes / ratio:.2f}x the work per second", flush=True)
    path = Path(args.results) / f"cores-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
